"""Outcome checks that are due but not yet entered: how many, for the staff dashboard, and which."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, DateTimeField, Exists, ExpressionWrapper, F, IntegerField, OuterRef, Q, QuerySet, Value

from clinic.models import Clinic
from patients.models import OutcomeAssessment, Treatment
from patients.outcomes import step_days
from protocols.models import ProtocolStep, StepKind

# A check missed long ago is a gap in the record, not work for today: the
# dashboard counts checks that fell due within this many days.
AWAITING_WINDOW_DAYS = 90


def outcome_check_days_by_version(version_ids: Iterable[int] | QuerySet | None = None) -> dict[int, set[int]]:
    """Protocol version id → the days of its outcome-check steps (of ``version_ids``, or of all versions)."""
    steps = ProtocolStep.objects.filter(kind=StepKind.OUTCOME_CHECK)
    if version_ids is not None:
        steps = steps.filter(version_id__in=version_ids)
    days: dict[int, set[int]] = defaultdict(set)
    for step in steps.only("version_id", "timing", "day", "offset_value", "offset_unit", "repeat_count", "repeat_every_days"):
        days[step.version_id].update(day for day in step_days(step) if day >= 0)
    return dict(days)


def _awaiting_by_day(
    *, clinics: Iterable[Clinic] | QuerySet[Clinic], now: dt.datetime
) -> tuple[QuerySet[Treatment], dict[int, Q]]:
    """The rule, shared by the count and the list: candidate treatments, and per check day which of them await it.

    A time point is the day of an ``outcome_check`` step of the treatment's
    protocol version; it has passed when ``ended_at + day`` is before ``now``,
    and it is awaited while that was within ``AWAITING_WINDOW_DAYS``. Any
    clinician entry for that day (any arm, any phase) counts as entered; a
    patient's self-report does not. Reads the check days of the versions in use
    (one query); the conditions are left to the caller's single query.
    """
    recent = Treatment.objects.filter(
        clinic__in=clinics, status=Treatment.Status.RECORDED,
        ended_at__gte=now - dt.timedelta(days=AWAITING_WINDOW_DAYS + 730),
    )
    versions_by_day: dict[int, set[int]] = defaultdict(set)
    for version_id, days in outcome_check_days_by_version(recent.values("protocol_version_id")).items():
        for day in days:
            versions_by_day[day].add(version_id)
    conditions = {}
    for day, versions in versions_by_day.items():
        entered = OutcomeAssessment.objects.filter(
            treatment=OuterRef("pk"), time_point_day=day, source=OutcomeAssessment.Source.CLINICIAN
        )
        due_at_most = now - dt.timedelta(days=day)
        conditions[day] = Q(
            protocol_version_id__in=versions,
            ended_at__lte=due_at_most,
            ended_at__gt=due_at_most - dt.timedelta(days=AWAITING_WINDOW_DAYS),
        ) & ~Q(Exists(entered))
    return recent, conditions


def outcomes_awaiting_count(*, clinic: Clinic, now: dt.datetime) -> int:
    """Outcome-check time points of ``clinic``'s recorded treatments that have passed with no clinician assessment.

    The rows are ``outcomes_awaiting``'s. Two queries: the check days of the versions in use, then one aggregate.
    """
    recent, conditions = _awaiting_by_day(clinics=[clinic], now=now)
    if not conditions:
        return 0
    counts = {f"day_{day}": Count("pk", filter=condition) for day, condition in conditions.items()}
    return sum(recent.aggregate(**counts).values())


def outcomes_awaiting(*, clinics: Iterable[Clinic] | QuerySet[Clinic], now: dt.datetime) -> QuerySet:
    """The awaiting outcome checks of ``clinics``, most overdue first: the rows ``outcomes_awaiting_count`` counts.

    Each row is a dict: ``treatment_id``, ``day`` and ``due_at`` (``ended_at`` plus
    ``day`` days). One query per check day, joined into one statement (UNION
    ALL), so counting and slicing it (a paginator) cost one query each whatever
    the number of rows; ``awaiting_checks`` loads a page's treatments.
    """
    recent, conditions = _awaiting_by_day(clinics=clinics, now=now)
    parts = [
        recent.filter(condition).order_by().annotate(
            day=Value(day, output_field=IntegerField()),
            due_at=ExpressionWrapper(F("ended_at") + dt.timedelta(days=day), output_field=DateTimeField()),
        ).values("day", "due_at", treatment_id=F("pk"))
        for day, condition in sorted(conditions.items())
    ]
    if not parts:
        return Treatment.objects.none().values("pk")
    rows = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    return rows.order_by("due_at", "treatment_id", "day")


@dataclass(frozen=True)
class AwaitingCheck:
    """One outcome check that fell due and has no clinician entry."""

    treatment: Treatment
    day: int
    due_at: dt.datetime


def awaiting_checks(rows: Iterable[dict[str, Any]]) -> list[AwaitingCheck]:
    """``outcomes_awaiting`` rows (a page of them) with their treatments, patients and clinics: one query."""
    page = list(rows)
    treatments = Treatment.objects.select_related("patient", "clinic", "protocol_version__protocol").in_bulk(
        {row["treatment_id"] for row in page}
    )
    return [AwaitingCheck(treatment=treatments[row["treatment_id"]], day=row["day"], due_at=row["due_at"]) for row in page]
