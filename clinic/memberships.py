"""A clinic keeps an active clinic admin: the role that manages its staff, settings and recalls.

Without one nobody in the clinic can make anyone admin again, lift a recall or
correct its clock; only the operator could. So demoting, deactivating or moving
the last active clinic admin's membership is refused, in the clinic's
membership inline and in the membership admin alike: make someone else clinic
admin first (both may be done in one save of the clinic's page).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError

from clinic.models import Clinic, Membership, Role


def last_admin_message(clinic: Clinic) -> str:
    return (
        f"{clinic} would have no active clinic admin left, and nobody there could then manage its staff, "
        "settings or lot recalls. Make someone else clinic admin first."
    )


def is_active_admin(role: str | None, is_active: bool | None) -> bool:
    return role == Role.CLINIC_ADMIN and bool(is_active)


def check_keeps_an_admin(clinic: Clinic, *, leaving: Iterable[int] = (), joining: int = 0) -> None:
    """ValidationError unless ``clinic`` keeps an active clinic admin.

    ``leaving`` are memberships that stop being one, ``joining`` how many
    become one in the same save. The clinic's admin memberships are locked
    until the transaction ends, so that two admins demoting each other at once
    cannot both succeed (the admin's change views are one transaction each).
    """
    admins = set(
        Membership.objects.select_for_update()
        .filter(clinic=clinic, role=Role.CLINIC_ADMIN, is_active=True)
        .values_list("pk", flat=True)
    )
    if admins and not (admins - set(leaving)) and not joining:
        raise ValidationError(last_admin_message(clinic))
