"""A clinic's settings changed: one ``clinic.settings_changed`` entry per save, each changed setting old → new.

The settings decide what patients are told and when (the urgent phone, the
sender, the time zone and quiet hours reminders follow, how old an intake may
be for screening), so an auditor reads in the log who changed which, and from
what. Requiring two-factor sign-in has its own entry
(``clinic.two_factor_changed``, ``clinic.two_factor.record_rule_change``).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from clinic.audit import record_event
from clinic.models import Clinic

SETTINGS_ACTION = "clinic.settings_changed"
#: What a clinic admin sets on the clinic's page, but require_two_factor
SETTINGS = (
    "name", "slug", "contact_email", "urgent_phone", "sender_name", "time_zone", "quiet_hours_start",
    "quiet_hours_end", "intake_max_age_days",
)


def stored_settings(clinic: Clinic) -> dict[str, Any]:
    """The settings of ``clinic`` as the database holds them, read before a save changes them."""
    return Clinic.objects.filter(pk=clinic.pk).values(*SETTINGS).get()


def record_settings_change(
    *, clinic: Clinic, before: dict[str, Any], by: Any, request: HttpRequest | None = None
) -> list[str]:
    """Log the settings of ``clinic``, just saved, that differ from ``before``; return their names (none: no entry)."""
    changed = [name for name in SETTINGS if getattr(clinic, name) != before[name]]
    if changed:
        detail: dict[str, Any] = {"changed": changed}
        detail |= {name: {"old": before[name], "new": getattr(clinic, name)} for name in changed}
        record_event(actor=by, action=SETTINGS_ACTION, clinic=clinic, obj=clinic, detail=detail, request=request)
    return changed
