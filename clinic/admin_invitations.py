"""Inviting staff from the admin: the "Invite a staff member" page and the "Send the invitation again" action.

Both are on the membership admin and open to clinic admins only, for the
clinics they manage (the operator: every clinic). The work is done by
``clinic.invitations``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from clinic.ids import row_id
from clinic.invitations import Invitation, awaits_password, invite_staff, resend_invitation
from clinic.models import Role
from clinic.roles import Capability
from clinic.scoping import can_anywhere, clinics_for, scoped
from clinic.words import counted, verb


class InviteForm(forms.Form):
    clinic = forms.ModelChoiceField(queryset=None, empty_label=None)
    given_name = forms.CharField(max_length=150)
    family_name = forms.CharField(max_length=150)
    email = forms.EmailField(
        max_length=254, help_text="They sign in with this address as their username. If it already has an Aftercare "
                                  "account, that account is added to the clinic and keeps its name and password.",
    )
    # No role is picked for the admin: a forgotten choice must not make a new colleague a clinic admin.
    role = forms.ChoiceField(choices=[("", "— choose a role —"), *Role.choices])

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the clinics this person manages are offered, and only those are accepted.
        self.fields["clinic"].queryset = clinics_for(user, Capability.MANAGE_CLINIC).order_by("name")


def _add_service_errors(form: forms.Form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for name, errors in error.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, error)


def invited_message(invitation: Invitation) -> tuple[int, str]:
    """What the admin is told after an invitation: (message level, text).

    The same whether the address had an account, and in what state: that is
    another clinic's or the operator's business (see ``clinic.invitations``).
    """
    membership = invitation.membership
    done = f"Invitation sent to {invitation.address} as {membership.get_role_display().lower()} at {membership.clinic}."
    if invitation.email_failed:
        return messages.WARNING, (f"{invitation.address} is now {membership.get_role_display().lower()} at "
                                  f"{membership.clinic}. The email could not be sent; try again later with "
                                  "\"Send the invitation again\" on the staff list.")
    return messages.SUCCESS, done


class StaffInvitationAdminMixin:
    """For the membership admin: the invitation page (``admin:clinic_membership_invite``) and the resend action."""

    actions = ["resend_invitations"]

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path("invite/", wrap(self.invite_view), name="clinic_membership_invite"),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def invite_view(self, request: HttpRequest) -> HttpResponse:
        if not can_anywhere(request.user, Capability.MANAGE_CLINIC):
            raise PermissionDenied("Only a clinic admin may invite staff.")
        form = InviteForm(request.POST or None, user=request.user, initial=self._initial(request))
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                invitation = invite_staff(
                    clinic=data["clinic"], email=data["email"], given_name=data["given_name"],
                    family_name=data["family_name"], role=data["role"], invited_by=request.user, request=request,
                )
            except ValidationError as error:
                _add_service_errors(form, error)
            else:
                level, text = invited_message(invitation)
                messages.add_message(request, level, text)
                return HttpResponseRedirect(reverse("admin:clinic_membership_changelist"))
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": self.model._meta,  # type: ignore[attr-defined]
            "title": "Invite a staff member",
            "form": form,
        }
        return TemplateResponse(request, "admin/clinic/membership/invite.html", context,
                                status=400 if form.is_bound else 200)

    def _initial(self, request: HttpRequest) -> dict[str, Any]:
        # ?clinic=<id> from the clinic's page preselects it, if it is one of the clinics offered.
        managed = clinics_for(request.user, Capability.MANAGE_CLINIC)
        wanted = row_id(request.GET.get("clinic"))
        if wanted is not None and managed.filter(pk=wanted).exists():
            return {"clinic": wanted}
        only = list(managed.values_list("pk", flat=True)[:2])
        return {"clinic": only[0]} if len(only) == 1 else {}

    def has_resend_invitation_permission(self, request: HttpRequest) -> bool:
        return can_anywhere(request.user, Capability.MANAGE_CLINIC)

    @admin.action(description="Send the invitation again (to those who have not chosen a password)",
                  permissions=["resend_invitation"])
    def resend_invitations(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        chosen = scoped(queryset, request.user, Capability.MANAGE_CLINIC).select_related("user", "clinic")
        sent = failed = skipped = 0
        for membership in chosen:
            if not awaits_password(membership):
                skipped += 1
                continue
            if resend_invitation(membership=membership, sent_by=request.user, request=request):
                sent += 1
            else:
                failed += 1
        skipped += queryset.count() - len(chosen)
        if sent:
            messages.success(request, f"Invitation sent again to {counted(sent, 'person', 'people')}; "
                                      "their earlier links no longer work.")
        if failed:
            messages.error(request, f"The email to {counted(failed, 'person', 'people')} could not be sent; try again later.")
        if skipped:
            messages.warning(request, f"{counted(skipped, 'selected membership')} {verb(skipped, 'has', 'have')} "
                                      "no invitation to send: the person has "
                                      "chosen a password already, the membership or account is switched off, or "
                                      "the clinic is not one you manage.")
