"""The numbers on the staff landing page, per clinic the person belongs to."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Q
from django.urls import reverse
from django.utils.http import urlencode

from clinic.local_days import day_start
from clinic.models import Clinic
from clinic.scoping import clinics_for


@dataclass(frozen=True)
class ClinicDashboard:
    clinic: Clinic
    treatments_today: int
    reminders_due: int
    reminders_failed: int
    visits_today: int
    outcomes_awaiting: int
    consent_unrecorded: int
    problems_unreviewed: int
    alerts_undelivered: int
    links: dict[str, str]  # the rows behind a count, by metric


def _links(clinic: Clinic, start: dt.datetime, end: dt.datetime) -> dict[str, str]:
    """Where each count leads: the clinic's own rows, as counted (today on the clinic's clock)."""
    treatments = reverse("admin:patients_treatment_changelist")
    reminders = reverse("admin:patients_reminder_changelist")
    in_clinic = {"treatment__clinic__id__exact": clinic.pk}
    return {
        "treatments_today": f"{treatments}?" + urlencode({
            "clinic__id__exact": clinic.pk, "status__exact": "recorded",
            "ended_at__gte": start.isoformat(), "ended_at__lt": end.isoformat(),
        }),
        "reminders_due": f"{reminders}?" + urlencode({
            **in_clinic, "status__in": "scheduled,awaiting_retry", "due_at__lt": end.isoformat(),
        }),
        "reminders_failed": f"{reminders}?" + urlencode({**in_clinic, "status__exact": "failed"}),
        # The reminder list's filters (patients.admin.visits): visits on the clinic's today, as counted.
        "visits_today": f"{reminders}?" + urlencode({
            **in_clinic, "step_kind": "follow_up_visit", "occurs": "today", "treatment__status__exact": "recorded",
            "status__in": ",".join(VISIT_STATUSES),
        }),
        "outcomes_awaiting": reverse("admin:outcomes_awaiting") + "?" + urlencode({"clinic": clinic.pk}),
        "alerts_undelivered": reverse("admin:patients_staffalert_changelist") + "?" + urlencode(
            {"clinic__id__exact": clinic.pk, "status__exact": "failed"}
        ),
    }


#: A follow-up visit counts whatever became of its reminder (sent, failed, skipped for an opt-out, …),
#: unless staff cancelled the reminder: until visits could be moved, that was how a visit was called off.
VISIT_STATUSES = ("scheduled", "queued", "sending", "sent", "awaiting_retry", "failed", "skipped")


def _today_bounds(clinic: Clinic, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(clinic.time_zone)
    today = now.astimezone(zone).date()
    return day_start(today, zone), day_start(today + dt.timedelta(days=1), zone)


def dashboard_for(user: Any, *, now: dt.datetime) -> list[ClinicDashboard]:
    from patients.models import Patient, Reminder, Treatment
    from patients.models.patient import CONSENT_UNRECORDED
    from patients.outcome_status import outcomes_awaiting_count

    boards = []
    clinics = list(clinics_for(user).order_by("name"))
    problems = _problems_unreviewed(clinics)
    undelivered = _alerts_undelivered(clinics)
    for clinic in clinics:
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
            visits=Count("pk", filter=Q(
                step__kind="follow_up_visit", occurs_at__gte=start, occurs_at__lt=end, status__in=VISIT_STATUSES,
                treatment__status="recorded",
            )),
        )
        boards.append(
            ClinicDashboard(
                clinic=clinic,
                treatments_today=treatments_today,
                reminders_due=reminder_counts["due"],
                reminders_failed=reminder_counts["failed"],
                visits_today=reminder_counts["visits"],
                outcomes_awaiting=outcomes_awaiting_count(clinic=clinic, now=now),
                consent_unrecorded=Patient.objects.filter(CONSENT_UNRECORDED, clinic=clinic).count(),
                problems_unreviewed=problems.get(clinic.pk, 0),
                alerts_undelivered=undelivered.get(clinic.pk, 0),
                links=_links(clinic, start, end),
            )
        )
    return boards


def _problems_unreviewed(clinics: list[Clinic]) -> dict[int, int]:
    """Problems patients flagged that no one has reviewed, per clinic: one query for all the person's clinics."""
    from patients.models import OutcomeAssessment
    from patients.outcomes import flags_unreviewed

    if not clinics:
        return {}
    rows = (
        flags_unreviewed(OutcomeAssessment.objects.filter(treatment__clinic__in=clinics))
        .order_by().values("treatment__clinic").annotate(n=Count("pk"))
    )
    return {row["treatment__clinic"]: row["n"] for row in rows}


def _alerts_undelivered(clinics: list[Clinic]) -> dict[int, int]:
    """Alerts to clinicians that failed, per clinic: one query for all the person's clinics."""
    from patients.models import StaffAlert

    if not clinics:
        return {}
    rows = (
        StaffAlert.objects.filter(clinic__in=clinics, status=StaffAlert.Status.FAILED)
        .order_by().values("clinic").annotate(n=Count("pk"))
    )
    return {row["clinic"]: row["n"] for row in rows}
