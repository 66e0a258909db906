"""The one place that decides which clinics' rows a person may see or change.

A model says how to reach its clinic with ``CLINIC_PATH`` (default
``"clinic"``); models that also hold shared templates (rows with no clinic,
such as the default rule library) set ``SHARED_TEMPLATES = True`` and those
rows are readable by every staff member but changeable by none.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from clinic.models import Clinic, Membership
from clinic.roles import Capability, roles_with


def clinic_path(model: type[models.Model]) -> str:
    return getattr(model, "CLINIC_PATH", "clinic")


def _memberships(user: Any) -> list[tuple[int, str, str]]:
    """(clinic id, role, clinic's time zone) of each active membership of ``user``, read once per user object.

    An admin page asks about several capabilities (view, change, add, …) and
    shows times on the clinic's clock; reading every membership once keeps
    that to one query per request.
    """
    if "_aftercare_memberships" not in user.__dict__:
        user.__dict__["_aftercare_memberships"] = list(
            Membership.objects.filter(user=user, is_active=True)
            .order_by()
            .values_list("clinic_id", "role", "clinic__time_zone")
        )
    return user.__dict__["_aftercare_memberships"]


def _active_roles(user: Any) -> list[tuple[int, str]]:
    return [(clinic_id, role) for clinic_id, role, _zone in _memberships(user)]


def clinic_ids(user: Any, capability: Capability = Capability.VIEW) -> set[int]:
    """Ids of the clinics in which ``user`` holds a role with ``capability``."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return set()
    cache = user.__dict__.setdefault("_aftercare_clinic_ids", {})
    if capability not in cache:
        roles = roles_with(capability)
        cache[capability] = {clinic_id for clinic_id, role in _active_roles(user) if role in roles}
    return cache[capability]


def clinics_for(user: Any, capability: Capability = Capability.VIEW) -> models.QuerySet[Clinic]:
    if getattr(user, "is_superuser", False):
        return Clinic.objects.all()
    return Clinic.objects.filter(pk__in=clinic_ids(user, capability))


def clinic_time_zones(user: Any) -> set[str]:
    """The time zones of the clinics ``user`` works in (every clinic's, for a superuser)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return set()
    if user.is_superuser:
        return set(Clinic.objects.order_by().values_list("time_zone", flat=True).distinct())
    return {zone for _clinic_id, _role, zone in _memberships(user)}


def sees_several_clinics(user: Any, capability: Capability = Capability.VIEW) -> bool:
    """Can ``user`` reach the rows of more than one clinic with ``capability``?

    Someone who works in one clinic only learns nothing from a clinic column or filter.
    """
    if getattr(user, "is_superuser", False):
        return True
    return len(clinic_ids(user, capability)) > 1


def scoped(
    queryset: models.QuerySet, user: Any, capability: Capability = Capability.VIEW
) -> models.QuerySet:
    """Limit ``queryset`` to the rows ``user`` may reach with ``capability``."""
    model = queryset.model
    if model is Clinic:
        return queryset.filter(pk__in=clinics_for(user, capability).values("pk"))
    if getattr(user, "is_superuser", False):
        return queryset
    ids = clinic_ids(user, capability)
    path = clinic_path(model)
    condition = models.Q(**{f"{path}__in": ids})
    if getattr(model, "SHARED_TEMPLATES", False) and capability == Capability.VIEW and ids:
        condition |= models.Q(**{f"{path}__isnull": True})
    return queryset.filter(condition)


def clinic_of(obj: models.Model) -> Clinic | None:
    """Follow ``CLINIC_PATH`` from an instance to its clinic (None for shared templates)."""
    if isinstance(obj, Clinic):
        return obj
    current: Any = obj
    for part in clinic_path(type(obj)).split("__"):
        current = getattr(current, part, None)
        if current is None:
            return None
    return current


def can(user: Any, capability: Capability, clinic: Clinic | int | None) -> bool:
    """May ``user`` use ``capability`` in ``clinic``? Shared templates (None) are read-only."""
    if getattr(user, "is_superuser", False) and getattr(user, "is_active", False):
        return True
    if clinic is None:
        return capability == Capability.VIEW and bool(clinic_ids(user))
    clinic_id = clinic if isinstance(clinic, int) else clinic.pk
    return clinic_id in clinic_ids(user, capability)


def can_anywhere(user: Any, capability: Capability) -> bool:
    if getattr(user, "is_superuser", False) and getattr(user, "is_active", False):
        return True
    return bool(clinic_ids(user, capability))
