"""An avoidance still running when a late procedure is recorded is told at once, not skipped as past.

"No retinoids until day 5" at 18:00 on day 0 still matters to a patient whose
procedure ended at 19:44; "cleanse tonight" at 18:00 does not, and keeps the
late-grace rule (AFTERCARE_REMINDER_LATE_GRACE_MINUTES). Of a repeating
avoidance's past occurrences only the latest is told: the earlier ones would say
the same at the same moment.
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


# "Avoid sun" each evening of days 0–4, until day 10, and "no retinoids" told once: the procedure ended on
# Tuesday 1 December at 10:00 and was recorded on Friday 4 December at 12:00.
REPEATING = [
    {"title": "Avoid sun", "kind": "avoidance", "day": 0, "local_time": dt.time(18, 0), "repeat_count": 5,
     "repeat_every_days": 1, "avoid_until_day": 10},
    {"title": "No retinoids", "kind": "avoidance", "day": 0, "local_time": dt.time(18, 0), "avoid_until_day": 5},
]
LATE_END = dt.datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
LATE_RECORDED = dt.datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def evening(day: int, *, hour: int = 18) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, 0, tzinfo=UTC)


@pytest.fixture
def recorded_late(clinic_a, clinician, frozen):
    plan = treatable_patient(clinic_a, steps=REPEATING, time_zone="Europe/London")  # screened the day before
    frozen.move_to(LATE_RECORDED)
    return record(plan, clinician, ended_at=LATE_END)


def avoid_sun(treatment) -> list[tuple[str, str, dt.datetime]]:
    rows = Reminder.objects.filter(treatment=treatment, step__title="Avoid sun").order_by("occurrence")
    return [(row.status, row.last_error, row.due_at) for row in rows]


def test_a_repeating_avoidance_recorded_late_is_told_once_by_its_latest_past_occurrence(recorded_late):
    replaced = (Status.SKIPPED, treatments.REPLACED_BY_LATER)
    assert avoid_sun(recorded_late) == [
        (*replaced, evening(1)),
        (*replaced, evening(2)),
        (Status.SCHEDULED, "", LATE_RECORDED),  # 18:00 yesterday: the latest evening already past, told now
        (Status.SCHEDULED, "", evening(4)),  # this evening's and tomorrow's keep their times
        (Status.SCHEDULED, "", evening(5)),
    ]
    due_now = Reminder.objects.filter(treatment=recorded_late, due_at__lte=LATE_RECORDED, status=Status.SCHEDULED)
    assert sorted(due_now.values_list("step__title", flat=True)) == ["Avoid sun", "No retinoids"]


def test_an_avoidance_told_once_is_still_told_at_once(recorded_late):
    retinoids = row(recorded_late, "No retinoids")
    assert (retinoids.status, retinoids.last_error, retinoids.due_at) == (Status.SCHEDULED, "", LATE_RECORDED)


def test_the_timeline_says_why_the_earlier_evenings_were_not_sent(recorded_late):
    entries = [entry for entry in treatments.timeline_for(treatment=recorded_late) if entry.step.title == "Avoid sun"]

    assert [entry.state for entry in entries] == ["skipped", "skipped", "due", "upcoming", "upcoming"]
    assert entries[0].reminder.last_error.startswith("Replaced by a later reminder of the same avoidance")


def test_a_time_zone_change_brings_back_only_the_latest_past_occurrence(recorded_late, clinician):
    # As a treatment recorded before the rule was stored it: every past evening due at once.
    Reminder.objects.filter(treatment=recorded_late, status=Status.SKIPPED).update(
        status=Status.SCHEDULED, last_error="", due_at=LATE_RECORDED
    )
    patient = recorded_late.patient
    patient.time_zone = "America/New_York"  # 18:00 there is 23:00 UTC; 12:00 UTC is 07:00, in the quiet hours
    patient.save()

    result = treatments.recompute_for_new_time_zone(patient=patient, previous_zone="Europe/London", by=clinician)

    replaced = (Status.SKIPPED, treatments.REPLACED_BY_LATER)
    after_quiet_hours = dt.datetime(2026, 12, 4, 13, 0, tzinfo=UTC)  # 08:00 in New York
    assert avoid_sun(recorded_late) == [
        (*replaced, evening(1, hour=23)),
        (*replaced, evening(2, hour=23)),
        (Status.SCHEDULED, "", after_quiet_hours),
        (Status.SCHEDULED, "", evening(4, hour=23)),
        (Status.SCHEDULED, "", evening(5, hour=23)),
    ]
    assert result == treatments.Recomputed(scheduled=4, past=2)  # with "No retinoids", also held until 08:00


def test_a_recompute_skips_earlier_evenings_still_waiting_at_their_own_times(recorded_late):
    # Scheduled at their own times and never sent (no dispatcher ran): left so, they would go out beside the latest.
    for occurrence in (0, 1):
        Reminder.objects.filter(treatment=recorded_late, step__title="Avoid sun", occurrence=occurrence).update(
            status=Status.SCHEDULED, last_error="", due_at=evening(occurrence + 1)
        )

    result = treatments.recompute_open_reminders(treatment=recorded_late, now=LATE_RECORDED)

    assert [status for status, _, _ in avoid_sun(recorded_late)] == [Status.SKIPPED, Status.SKIPPED] + [Status.SCHEDULED] * 3
    assert result == treatments.Recomputed(past=2)
