"""Demo outcomes: a plausible healing course for a demo treatment, so the review pages show real charts.

Deterministic (seeded by the treatment's id) and idempotent: running it again
creates nothing that exists, and only adds time points that have since
passed.  Scores go through ``patients.outcomes`` like any clinician's, so the
demo obeys the same rules as real entries.  Never used on real patients.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from patients.models import AdverseEvent, OutcomeAssessment, Reminder, Treatment, TreatmentArm
from patients.outcomes import DEFAULT_TIME_POINTS, record_adverse_event, record_assessment, time_points_for
from patients.treatments import TOO_LATE
from protocols.models import Procedure, StepKind

# Typical course per procedure (DOMAIN.md): day → (erythema, oedema, percent re-epithelialised).
COURSES: dict[str, dict[int, tuple[int, int, int]]] = {
    Procedure.MICRONEEDLING: {0: (3, 2, 90), 1: (2, 1, 100), 3: (1, 0, 100), 7: (0, 0, 100), 14: (0, 0, 100), 28: (0, 0, 100)},
    Procedure.FRACTIONAL_NONABLATIVE: {
        0: (3, 3, 80), 1: (3, 2, 95), 3: (2, 1, 100), 7: (1, 0, 100), 14: (0, 0, 100), 28: (0, 0, 100),
    },
    Procedure.FRACTIONAL_ABLATIVE: {
        0: (4, 3, 0), 1: (4, 3, 30), 3: (3, 2, 70), 5: (3, 1, 90), 7: (2, 1, 100), 14: (1, 0, 100), 28: (1, 0, 100),
    },
}


def _course_at(procedure: str, day: int) -> tuple[int, int, int]:
    course = COURSES.get(procedure, COURSES[Procedure.MICRONEEDLING])
    earlier = [d for d in course if d <= day]
    return course[max(earlier)] if earlier else course[min(course)]


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _scores(*, procedure: str, day: int, rng: random.Random, exosome: bool) -> dict[str, Any]:
    erythema, oedema, percent = _course_at(procedure, day)
    # Some spread between patients; the exosome side tends to settle a little sooner.
    erythema += rng.choice((-1, 0, 0, 0, 1))
    if exosome and 1 <= day <= 7 and rng.random() < 0.6:
        erythema -= 1
    if exosome and percent < 100:
        percent = min(100, percent + 15)
    scores: dict[str, Any] = {
        "erythema": _clamp(erythema, 0, 4),
        "oedema": _clamp(oedema + rng.choice((-1, 0, 0, 1)), 0, 4),
        "reepithelialisation_percent": percent,
        "reepithelialisation_complete": percent == 100,
        "pain": _clamp(2 * oedema + rng.choice((-1, 0, 1)), 0, 10) if day <= 7 else 0,
        "pruritus": _clamp(rng.choice((0, 1, 2, 3)) if 3 <= day <= 7 else 0, 0, 10),
    }
    if day >= 14:
        scores["gais"] = rng.choice((1, 2, 2, 3) if exosome else (1, 1, 2, 2))
    return scores


def _time_points(treatment: Treatment, now: dt.datetime) -> list[int]:
    days = set(DEFAULT_TIME_POINTS) | set(time_points_for(treatment.protocol_version))
    return sorted(day for day in days if treatment.ended_at + dt.timedelta(days=day) <= now)


def _record_missing(
    *, treatment: Treatment, clinician: Any, arm: TreatmentArm | None, day: int, phase: str, scores: dict[str, Any],
    now: dt.datetime,
) -> int:
    exists = OutcomeAssessment.objects.filter(
        treatment=treatment, arm=arm, time_point_day=day, phase=phase, source=OutcomeAssessment.Source.CLINICIAN
    ).exists()
    if exists:
        return 0
    # A couple of hours into the day, but never later than now: nothing is entered in the future.
    when = min(treatment.ended_at + dt.timedelta(days=day, hours=0 if day == 0 else 2), now)
    record_assessment(treatment=treatment, by=clinician, time_point_day=day, arm=arm, phase=phase, scores=scores, now=when)
    return 1


def install_demo_outcomes(*, treatment: Treatment, clinician: Any) -> int:
    """Add the clinician scores (per arm if the treatment has arms), a patient self-report, perhaps a mild
    adverse event, and confirmations of home steps for the time points that have passed. Returns how many
    assessments were created."""
    if treatment.status != Treatment.Status.RECORDED:
        return 0
    now = timezone.now()
    procedure = treatment.protocol_version.protocol.procedure
    rng = random.Random(treatment.pk)  # noqa: S311 - demo data, not security
    arms: list[TreatmentArm | None] = list(treatment.arms.order_by("label")) or [None]
    created = 0
    # Skin that has calmed down does not flare again in the demo: scores never rise after day 0.
    ceiling: dict[int | None, dict[str, int]] = {}
    with transaction.atomic():
        for day in _time_points(treatment, now):
            for arm in arms:
                exosome = arm is None or not arm.is_control
                scores = _scores(procedure=procedure, day=day, rng=rng, exosome=exosome)
                limits = ceiling.setdefault(arm.pk if arm else None, {"erythema": 4, "oedema": 4})
                for name in limits:
                    scores[name] = limits[name] = min(scores[name], limits[name])
                if day == 0:
                    before = {"erythema": 0, "oedema": 0}
                    created += _record_missing(
                        treatment=treatment, clinician=clinician, arm=arm, day=0, phase="before", scores=before,
                        now=now,
                    )
                    scores.pop("reepithelialisation_complete")
                    scores.pop("reepithelialisation_percent")
                created += _record_missing(
                    treatment=treatment, clinician=clinician, arm=arm, day=day, phase="after" if day == 0 else "",
                    scores=scores, now=now,
                )
        # Separate streams, so the choices below stay the same however many time points have passed.
        created += _self_report(treatment=treatment, rng=random.Random(f"{treatment.pk}:report"), now=now)  # noqa: S311
        _adverse_event(
            treatment=treatment, clinician=clinician, rng=random.Random(f"{treatment.pk}:event"), procedure=procedure, now=now  # noqa: S311
        )
        _as_if_sent(treatment=treatment, now=now)
        _confirm_home_steps(treatment=treatment, now=now)
    return created


def _as_if_sent(*, treatment: Treatment, now: dt.datetime) -> None:
    """The demo's treatments are recorded days after they happened, so their past reminders were stored as
    skipped (too late). A clinic that had used Aftercare all along would have sent them: show them sent,
    a minute after they fell due, to a patient who may receive them."""
    if not treatment.patient.may_receive_reminders:
        return
    past = Reminder.objects.filter(
        treatment=treatment, status=Reminder.Status.SKIPPED, last_error=TOO_LATE, due_at__lte=now
    )
    past.update(
        status=Reminder.Status.SENT, attempts=1, last_attempt_at=F("due_at"),
        sent_at=F("due_at") + dt.timedelta(minutes=1), last_error="",
    )
    # An avoidance still running when it was recorded is due at once instead (``patients.treatments``): it too
    # would have gone out at its step's time.
    running = Reminder.objects.filter(
        treatment=treatment, status=Reminder.Status.SCHEDULED, step__kind=StepKind.AVOIDANCE,
        occurs_at__lt=F("due_at"), due_at__lte=now,
    )
    running.update(
        status=Reminder.Status.SENT, attempts=1, due_at=F("occurs_at"), last_attempt_at=F("occurs_at"),
        sent_at=F("occurs_at") + dt.timedelta(minutes=1), last_error="",
    )


def _self_report(*, treatment: Treatment, rng: random.Random, now: dt.datetime) -> int:
    day = 3
    if treatment.ended_at + dt.timedelta(days=day) > now:
        return 0
    _report, created = OutcomeAssessment.objects.get_or_create(
        treatment=treatment, time_point_day=day, source=OutcomeAssessment.Source.PATIENT,
        defaults={
            "erythema": _clamp(_course_at(treatment.protocol_version.protocol.procedure, day)[0] + rng.choice((-1, 0)), 0, 4),
            "pain": rng.choice((0, 1, 2)), "pruritus": rng.choice((1, 2, 3)),
            "applied_as_instructed": rng.random() < 0.85,
            "recorded_at": min(treatment.ended_at + dt.timedelta(days=day, hours=10), now),
        },
    )
    return int(created)


def _adverse_event(*, treatment: Treatment, clinician: Any, rng: random.Random, procedure: str, now: dt.datetime) -> None:
    chance = 0.2 if procedure == Procedure.FRACTIONAL_ABLATIVE else 0.1
    if rng.random() >= chance:
        return
    kind = rng.choice((AdverseEvent.Kind.MILIA, AdverseEvent.Kind.ACNEIFORM, AdverseEvent.Kind.PROLONGED_ERYTHEMA))
    # Dates as the clinic sees them, the same way record_adverse_event checks them.
    today = now.astimezone(ZoneInfo(treatment.clinic.time_zone)).date()
    onset = treatment.procedure_date() + dt.timedelta(days=5)
    if onset > today or AdverseEvent.objects.filter(treatment=treatment, kind=kind, onset_date=onset).exists():
        return
    arm = treatment.arms.filter(is_control=True).first()
    record_adverse_event(
        treatment=treatment, by=clinician, kind=kind, severity=AdverseEvent.Severity.MILD, onset_date=onset, arm=arm,
        resolution_date=onset + dt.timedelta(days=7) if onset + dt.timedelta(days=7) <= today else None,
        action_taken="Reassured; reviewed at the next visit.", now=now,
    )


def _confirm_home_steps(*, treatment: Treatment, now: dt.datetime) -> None:
    due = Reminder.objects.filter(
        treatment=treatment, step__kind=StepKind.HOME_APPLICATION, occurs_at__lte=now, done_at__isnull=True
    ).exclude(status__in=(Reminder.Status.CANCELLED, Reminder.Status.SKIPPED))
    for reminder_id, occurs_at in due.values_list("pk", "occurs_at"):
        # Decided per reminder, so a re-run makes the same choice for the same row.
        if random.Random(reminder_id).random() < 0.8:  # noqa: S311 - demo data
            Reminder.objects.filter(pk=reminder_id).update(done_at=occurs_at + dt.timedelta(minutes=40))
