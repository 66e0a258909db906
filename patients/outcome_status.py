"""How many outcome checks are due but not yet entered, for the staff dashboard."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

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


def outcomes_awaiting_count(*, clinic: Clinic, now: dt.datetime) -> int:
    """Outcome-check time points of recorded treatments that have passed with no clinician assessment.

    A time point is the day of an ``outcome_check`` step of the treatment's
    protocol version; it has passed when ``ended_at + day`` is before ``now``.
    Any clinician entry for that day (any arm, any phase) counts as entered.
    Two queries: the check days of the versions in use, then one aggregate.
    """
    recent = Treatment.objects.filter(
        clinic=clinic, status=Treatment.Status.RECORDED, ended_at__gte=now - dt.timedelta(days=AWAITING_WINDOW_DAYS + 730)
    )
    versions_by_day: dict[int, set[int]] = defaultdict(set)
    for version_id, days in outcome_check_days_by_version(recent.values("protocol_version_id")).items():
        for day in days:
            versions_by_day[day].add(version_id)
    if not versions_by_day:
        return 0
    counts = {}
    for day, versions in versions_by_day.items():
        entered = OutcomeAssessment.objects.filter(
            treatment=OuterRef("pk"), time_point_day=day, source=OutcomeAssessment.Source.CLINICIAN
        )
        due_at_most = now - dt.timedelta(days=day)
        counts[f"day_{day}"] = Count(
            "pk",
            filter=Q(
                protocol_version_id__in=versions,
                ended_at__lte=due_at_most,
                ended_at__gt=due_at_most - dt.timedelta(days=AWAITING_WINDOW_DAYS),
            )
            & ~Q(Exists(entered)),
        )
    return sum(recent.aggregate(**counts).values())
