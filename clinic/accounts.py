"""A staff member's name and email address: changed by themselves ("My account") or by their clinic admin.

The address is how the app finds a person: alerts to clinicians go to it and an
invitation joins the account that has it, so no two accounts may share one
(whatever its capitals). The username, the staff and superuser flags and the
permissions stay the operator's to change.

A clinic admin may change a colleague's name and address only where every
clinic the colleague works in is one they manage: an address is the person's in
all their clinics, and another clinic's admin has not agreed to the change.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest

from clinic.audit import record_event
from clinic.models import Membership
from clinic.roles import Capability
from clinic.scoping import clinic_ids

#: what a person (or their clinic admin) may change of an account
ACCOUNT_FIELDS = ("first_name", "last_name", "email")


def address_taken(email: str, *, person: Any) -> bool:
    """Does an account other than ``person``'s have ``email``, in any capitals?"""
    others = get_user_model().objects.exclude(pk=person.pk)
    return others.filter(email__iexact=email).exists()


def _working_clinic_ids(person: Any) -> set[int]:
    return set(Membership.objects.filter(user=person, is_active=True).values_list("clinic_id", flat=True))


def why_not_editable(editor: Any, person: Any) -> str:
    """Why ``editor`` may not change ``person``'s name and address, in a sentence; "" when they may."""
    if editor.is_superuser or editor.pk == person.pk:
        return ""
    name = person.get_username()
    if person.is_superuser:
        return f"{name} is an operator account: only the operator changes it."
    working, managed = _working_clinic_ids(person), clinic_ids(editor, Capability.MANAGE_CLINIC)
    if not working & managed:
        return f"{name} no longer works in a clinic you manage, so you can no longer change their name or address."
    if working - managed:
        return (f"{name} also works in a clinic you do not manage, so you cannot change their name or address "
                "here: they can, on “My account”.")
    return ""


def may_edit(editor: Any, person: Any) -> bool:
    return not why_not_editable(editor, person)


def save_account(*, person: Any, by: Any, values: dict[str, str], request: HttpRequest | None = None) -> list[str]:
    """Save ``values`` (of ``ACCOUNT_FIELDS``) on ``person``'s account and log the change; the names of the fields changed.

    Nothing is written, to the account or the log, when nothing changed.
    """
    with transaction.atomic():
        stored = get_user_model().objects.select_for_update().get(pk=person.pk)
        before = {name: getattr(stored, name) for name in ACCOUNT_FIELDS}
        changed = [name for name in ACCOUNT_FIELDS if name in values and values[name] != before[name]]
        if not changed:
            return []
        for name in changed:
            setattr(stored, name, values[name])
        stored.save(update_fields=changed)
        record_account_change(person=stored, before=before, by=by, request=request)
    for name in changed:
        setattr(person, name, values[name])
    return changed


def record_account_change(*, person: Any, before: dict[str, str], by: Any, request: HttpRequest | None) -> None:
    """An ``account.updated`` entry in the log of each clinic ``person`` works in (one with no clinic if none).

    Each clinic's auditor can then tell where alerts to this person went, and since when.
    """
    changed = [name for name in ACCOUNT_FIELDS if getattr(person, name) != before.get(name, "")]
    if not changed:
        return
    detail: dict[str, Any] = {"changed": changed}
    if "email" in changed:
        detail |= {"old_email": before.get("email", ""), "new_email": person.email}
    if "first_name" in changed or "last_name" in changed:
        detail |= {"old_name": f"{before.get('first_name', '')} {before.get('last_name', '')}".strip(),
                   "new_name": person.get_full_name()}
    for clinic_id in sorted(_working_clinic_ids(person)) or [None]:
        record_event(actor=by, action="account.updated", clinic_id=clinic_id, obj=person, detail=detail, request=request)
