"""“My account”: every signed-in staff member changes their own name and email address (clinic.accounts)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import BaseUserManager
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from clinic.accounts import ACCOUNT_FIELDS, address_taken, save_account
from clinic.models import Membership


def address_taken_message(email: str) -> str:
    return (f"Another account already has the address {email}. Alerts and invitations find a person by their "
            "address, so each must be one person's own: use another.")


class UniqueAddressForm(forms.ModelForm):
    """An account's form whose address, if it has one, no other account has (in any capitals)."""

    def clean_email(self) -> str:
        email = BaseUserManager.normalize_email(self.cleaned_data.get("email") or "")
        if email and address_taken(email, person=self.instance):
            raise forms.ValidationError(address_taken_message(email))
        return email


class AccountForm(UniqueAddressForm):
    """A person's name and address; nothing else of the account, whatever is posted."""

    class Meta:
        model = get_user_model()
        fields = list(ACCOUNT_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "email" in self.fields:  # absent where the admin shows it read-only
            self.fields["email"].required = True
            self.fields["email"].help_text = "Alerts to clinicians and invitations are sent here."


def my_account(request: HttpRequest) -> HttpResponse:
    """The signed-in person's own name and address (``admin:my_account``; the admin site checks who may open it)."""
    person = request.user
    form = AccountForm(request.POST or None, instance=get_user_model()(pk=person.pk, **_values(person)))
    if request.method == "POST" and form.is_valid():
        changed = save_account(person=person, by=person, values=_values(form.cleaned_data), request=request)
        messages.success(request, "Your account is saved." if changed else "Nothing changed.")
        return HttpResponseRedirect(reverse("admin:my_account"))
    work = Membership.objects.filter(user=person, is_active=True).select_related("clinic").order_by("clinic__name")
    context = {
        **admin.site.each_context(request),
        "title": "My account",
        "form": form,
        "username": person.get_username(),
        "memberships": work,
    }
    return TemplateResponse(request, "admin/my_account.html", context, status=400 if form.is_bound else 200)


def _values(source: Any) -> dict[str, str]:
    get = source.get if isinstance(source, dict) else lambda name: getattr(source, name)
    return {name: get(name) or "" for name in ACCOUNT_FIELDS}
