"""The numbers on the staff landing page, per clinic the person belongs to."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Q

from clinic.local_days import day_start
from clinic.models import Clinic
from clinic.scoping import clinics_for


@dataclass(frozen=True)
class ClinicDashboard:
    clinic: Clinic
    treatments_today: int
    reminders_due: int
    reminders_failed: int
    outcomes_awaiting: int
    consent_unrecorded: int


def _today_bounds(clinic: Clinic, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(clinic.time_zone)
    today = now.astimezone(zone).date()
    return day_start(today, zone), day_start(today + dt.timedelta(days=1), zone)


def dashboard_for(user: Any, *, now: dt.datetime) -> list[ClinicDashboard]:
    from patients.models import Patient, Reminder, Treatment
    from patients.models.patient import CONSENT_UNRECORDED
    from patients.outcome_status import outcomes_awaiting_count

    boards = []
    for clinic in clinics_for(user).order_by("name"):
        start, end = _today_bounds(clinic, now)
        treatments_today = Treatment.objects.filter(
            clinic=clinic, status=Treatment.Status.RECORDED, ended_at__gte=start, ended_at__lt=end
        ).count()
        reminder_counts = Reminder.objects.filter(treatment__clinic=clinic).aggregate(
            due=Count(
                "pk",
                filter=Q(status__in=[Reminder.Status.SCHEDULED, Reminder.Status.AWAITING_RETRY], due_at__lt=end),
            ),
            failed=Count("pk", filter=Q(status=Reminder.Status.FAILED)),
        )
        boards.append(
            ClinicDashboard(
                clinic=clinic,
                treatments_today=treatments_today,
                reminders_due=reminder_counts["due"],
                reminders_failed=reminder_counts["failed"],
                outcomes_awaiting=outcomes_awaiting_count(clinic=clinic, now=now),
                consent_unrecorded=Patient.objects.filter(CONSENT_UNRECORDED, clinic=clinic).count(),
            )
        )
    return boards
