"""The page an invitation's link opens: the new staff member chooses their password, once.

Django's password-reset confirmation does the work: the token is checked,
moved out of the address into the session (so it never leaks in a Referer),
and the password must pass ``AUTH_PASSWORD_VALIDATORS``. Setting it spends the
link, since the token is derived from the password. A link that is wrong,
expired, spent, or names no account (or a switched-off one) gets the same
page, so the page tells nobody which accounts exist.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import logout
from django.contrib.auth.views import PasswordResetConfirmView
from django.db import transaction
from django.http import HttpResponse
from django.urls import reverse

from clinic.audit import record_event
from clinic.invitations import invitation_tokens
from clinic.models import Membership


class ChoosePasswordView(PasswordResetConfirmView):
    token_generator = invitation_tokens
    template_name = "admin/staff_invitation/set_password.html"
    title = "Choose your password"

    def get_user(self, uidb64: str) -> Any:
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None

    def get_success_url(self) -> str:
        return reverse("admin:login")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = {**admin.site.each_context(self.request), **super().get_context_data(**kwargs)}
        if context["validlink"]:
            context["username"] = self.user.get_username()
        else:
            context["title"] = "This link does not work"
        return context

    def form_valid(self, form: Any) -> HttpResponse:
        with transaction.atomic():
            response = super().form_valid(form)  # saves the password, which spends the link
            user = form.user
            clinics = Membership.objects.filter(user=user, is_active=True).order_by("clinic_id")
            for clinic_id in clinics.values_list("clinic_id", flat=True):
                record_event(actor=user, action="staff.password_set", clinic_id=clinic_id, obj=user,
                             request=self.request)
        if self.request.user.is_authenticated:
            # Someone else was signed in in this browser: the new member signs in next, as themselves.
            logout(self.request)
        messages.success(self.request, f"Your password is set. Sign in with your username, {user.get_username()}.")
        return response
