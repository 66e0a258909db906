"""An avoidance still running when a late procedure is recorded is told at once, not skipped as past.

"No retinoids until day 5" at 18:00 on day 0 still matters to a patient whose
procedure ended at 19:44; "cleanse tonight" at 18:00 does not, and keeps the
late-grace rule (AFTERCARE_REMINDER_LATE_GRACE_MINUTES).
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from patients import treatments
from patients.models import Reminder
from tests.factories import treatable_patient

pytestmark = pytest.mark.django_db

UTC = dt.UTC
Status = Reminder.Status
# Tuesday 1 December 2026 in London (UTC in winter, the clinic's and the patient's clock): day 5 is Sunday 6 December.
ENDED = dt.datetime(2026, 12, 1, 19, 44, tzinfo=UTC)
RECORDED = ENDED + dt.timedelta(minutes=6)
STEPS = [
    {"title": "No retinoids, acids or exfoliation", "kind": "avoidance", "day": 0, "local_time": dt.time(18, 0),
     "avoid_until_day": 5},
    {"title": "Cleanse tonight", "kind": "instruction", "day": 0, "local_time": dt.time(18, 0)},
]
AVOIDANCE, CLEANSE = (step["title"] for step in STEPS)


@pytest.fixture
def frozen():
    with time_machine.travel(RECORDED, tick=False) as traveller:
        yield traveller


@pytest.fixture
def plan(clinic_a, frozen):
    return treatable_patient(clinic_a, steps=STEPS, time_zone="Europe/London")


def record(plan, clinician, *, ended_at=ENDED):
    patient, version, screening = plan
    return treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ended_at - dt.timedelta(minutes=45), ended_at=ended_at, areas="full face",
    )


def row(treatment, title: str) -> Reminder:
    return Reminder.objects.get(treatment=treatment, step__title=title)


def test_it_sends_a_running_avoidance_at_once_and_skips_a_step_of_the_evening_already_past(plan, clinician):
    treatment = record(plan, clinician)

    avoidance = row(treatment, AVOIDANCE)
    assert (avoidance.status, avoidance.last_error, avoidance.due_at) == (Status.SCHEDULED, "", RECORDED)
    assert avoidance.occurs_at == dt.datetime(2026, 12, 1, 18, 0, tzinfo=UTC)  # the step keeps its time
    cleanse = row(treatment, CLEANSE)
    assert (cleanse.status, cleanse.last_error) == (Status.SKIPPED, treatments.TOO_LATE)


def test_the_timeline_shows_the_avoidance_due_not_skipped(plan, clinician):
    treatment = record(plan, clinician)

    states = {entry.step.title: entry.state for entry in treatments.timeline_for(treatment=treatment)}

    assert states == {AVOIDANCE: "due", CLEANSE: "skipped"}


def test_it_holds_a_running_avoidance_until_the_quiet_hours_end(plan, clinician, frozen):
    frozen.move_to(dt.datetime(2026, 12, 1, 22, 15, tzinfo=UTC))  # quiet from 21:00 until 08:00

    treatment = record(plan, clinician, ended_at=dt.datetime(2026, 12, 1, 22, 0, tzinfo=UTC))

    avoidance = row(treatment, AVOIDANCE)
    assert (avoidance.status, avoidance.due_at) == (Status.SCHEDULED, dt.datetime(2026, 12, 2, 8, 0, tzinfo=UTC))


@pytest.mark.parametrize(("recorded_at", "status", "due_at"), [
    # Sunday 6 December is day 5: "until Sunday 6 December (day 5)" still holds that day.
    (dt.datetime(2026, 12, 6, 10, 0, tzinfo=UTC), Status.SCHEDULED, dt.datetime(2026, 12, 6, 10, 0, tzinfo=UTC)),
    # Day 5 in the quiet hours: by 08:00 on day 6 it is over.
    (dt.datetime(2026, 12, 6, 22, 0, tzinfo=UTC), Status.SKIPPED, dt.datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
    (dt.datetime(2026, 12, 7, 10, 0, tzinfo=UTC), Status.SKIPPED, dt.datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
])
def test_an_avoidance_is_skipped_once_it_is_over(plan, clinician, frozen, recorded_at, status, due_at):
    frozen.move_to(recorded_at)  # the procedure recorded days late

    treatment = record(plan, clinician)

    avoidance = row(treatment, AVOIDANCE)
    assert (avoidance.status, avoidance.due_at) == (status, due_at)
    assert avoidance.last_error == ("" if status == Status.SCHEDULED else treatments.TOO_LATE)


def test_a_reschedule_brings_back_a_running_avoidance_skipped_as_past(plan, clinician):
    treatment = record(plan, clinician, ended_at=ENDED - dt.timedelta(minutes=30))
    # As a row stored before avoidances were told late: skipped as too late.
    Reminder.objects.filter(pk=row(treatment, AVOIDANCE).pk).update(status=Status.SKIPPED, last_error=treatments.TOO_LATE)

    result = treatments.reschedule_treatment(
        treatment=treatment, started_at=ENDED - dt.timedelta(minutes=45), ended_at=ENDED, by=clinician
    )

    avoidance = row(treatment, AVOIDANCE)
    assert (avoidance.status, avoidance.last_error, avoidance.due_at) == (Status.SCHEDULED, "", RECORDED)
    assert row(treatment, CLEANSE).status == Status.SKIPPED
    assert result == treatments.Recomputed(scheduled=1, revived=1, past=1)  # "Cleanse tonight" is still past
