"""Derived healing measures per treatment and per arm.

A *unit* is what healing is measured on: the whole treated area of a
treatment without arms, or one arm of a split-face treatment.  For each unit:

* **peak erythema** — the highest clinician CEA score after the procedure;
* **first day erythema ≤ 1** — the first day after the procedure with a
  clinician CEA of 0 or 1 (literal: a later flare does not move it);
* **days to complete re-epithelialisation** — the first day a clinician
  recorded re-epithelialisation as complete;
* **adverse events** — events recorded on the unit's arm, plus events not tied
  to an arm (they concern the whole face, so both sides carry them);
* **adherence to home steps** — reminders of ``home_application`` steps the
  patient marked done, over those due so far.  Cancelled and skipped reminders
  are not counted: the patient had no way to confirm them.  Home steps are the
  same for both sides, so every arm of a treatment shares one adherence.

Only clinician scores count; the day-0 "before" (baseline) entry does not.
Everything is computed by a fixed number of grouped queries however many
treatments are measured.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, Max, Min, Q, QuerySet

from patients.models import AdverseEvent, OutcomeAssessment, Reminder, Treatment
from protocols.models import StepKind

EXCLUDED_REMINDER_STATUSES = (Reminder.Status.CANCELLED, Reminder.Status.SKIPPED)


@dataclass(frozen=True)
class HealingMeasures:
    treatment_id: int
    protocol_id: int
    protocol_version_id: int
    arm_id: int | None
    arm_label: str
    is_control: bool
    peak_erythema: int | None
    first_day_erythema_at_most_1: int | None
    days_to_reepithelialisation: int | None
    best_gais: int | None
    adverse_events: int
    home_steps_done: int
    home_steps_due: int

    @property
    def adherence(self) -> float | None:
        """Share of due home steps marked done, or None when none were due yet."""
        return self.home_steps_done / self.home_steps_due if self.home_steps_due else None


def clinician_scores(treatments: QuerySet[Treatment]) -> QuerySet[OutcomeAssessment]:
    """Clinician assessments of ``treatments`` after the procedure (the baseline excluded)."""
    return OutcomeAssessment.objects.filter(
        treatment__in=treatments.values("pk"), source=OutcomeAssessment.Source.CLINICIAN
    ).exclude(phase=OutcomeAssessment.Phase.BEFORE)


def _score_aggregates(treatments: QuerySet[Treatment]) -> dict[tuple[int, int | None], dict]:
    rows = (
        clinician_scores(treatments)
        .values("treatment_id", "arm_id")
        .annotate(
            peak=Max("erythema"),
            first_clear=Min("time_point_day", filter=Q(erythema__lte=1)),
            reepithelialised=Min("time_point_day", filter=Q(reepithelialisation_complete=True)),
            best_gais=Max("gais"),
        )
        .order_by()
    )
    return {(row["treatment_id"], row["arm_id"]): row for row in rows}


def _adverse_event_counts(treatments: QuerySet[Treatment]) -> dict[tuple[int, int | None], int]:
    rows = (
        AdverseEvent.objects.filter(treatment__in=treatments.values("pk"))
        .values("treatment_id", "arm_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {(row["treatment_id"], row["arm_id"]): row["n"] for row in rows}


def home_step_reminders(treatments: QuerySet[Treatment], *, now: dt.datetime) -> QuerySet[Reminder]:
    """Reminders of at-home steps of ``treatments`` that were due by ``now`` and could be confirmed."""
    return Reminder.objects.filter(
        treatment__in=treatments.values("pk"), step__kind=StepKind.HOME_APPLICATION, due_at__lte=now
    ).exclude(status__in=EXCLUDED_REMINDER_STATUSES)


def _adherence_counts(treatments: QuerySet[Treatment], *, now: dt.datetime) -> dict[int, tuple[int, int]]:
    rows = (
        home_step_reminders(treatments, now=now)
        .values("treatment_id")
        .annotate(due=Count("pk"), done=Count("pk", filter=Q(done_at__isnull=False)))
        .order_by()
    )
    return {row["treatment_id"]: (row["done"], row["due"]) for row in rows}


def measures_for(treatments: QuerySet[Treatment], *, now: dt.datetime) -> list[HealingMeasures]:
    """Derived measures for every unit (treatment, or arm of a split-face treatment) of ``treatments``.

    Four queries, whatever the number of treatments.
    """
    units = treatments.values(
        "pk", "protocol_version_id", "protocol_version__protocol_id", "arms__id", "arms__label", "arms__is_control"
    ).order_by("pk", "arms__label")
    scores = _score_aggregates(treatments)
    events = _adverse_event_counts(treatments)
    adherence = _adherence_counts(treatments, now=now)
    measures = []
    for unit in units:
        treatment_id, arm_id = unit["pk"], unit["arms__id"]
        score = scores.get((treatment_id, arm_id), {})
        done, due = adherence.get(treatment_id, (0, 0))
        whole_face_events = events.get((treatment_id, None), 0) if arm_id is not None else 0
        measures.append(
            HealingMeasures(
                treatment_id=treatment_id,
                protocol_id=unit["protocol_version__protocol_id"],
                protocol_version_id=unit["protocol_version_id"],
                arm_id=arm_id,
                arm_label=unit["arms__label"] or "",
                is_control=bool(unit["arms__is_control"]),
                peak_erythema=score.get("peak"),
                first_day_erythema_at_most_1=score.get("first_clear"),
                days_to_reepithelialisation=score.get("reepithelialised"),
                best_gais=score.get("best_gais"),
                adverse_events=events.get((treatment_id, arm_id), 0) + whole_face_events,
                home_steps_done=done,
                home_steps_due=due,
            )
        )
    return measures


def measures_for_treatment(*, treatment: Treatment, now: dt.datetime) -> list[HealingMeasures]:
    """Derived measures of one treatment: one entry, or one per arm."""
    return measures_for(Treatment.objects.filter(pk=treatment.pk), now=now)


def by_treatment(measures: list[HealingMeasures]) -> dict[int, list[HealingMeasures]]:
    grouped: dict[int, list[HealingMeasures]] = defaultdict(list)
    for measure in measures:
        grouped[measure.treatment_id].append(measure)
    return dict(grouped)
