"""Demo outcomes: a plausible healing course, per arm, created once."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine

from patients.demo_outcomes import install_demo_outcomes
from patients.measures import measures_for_treatment
from patients.models import AdverseEvent, OutcomeAssessment, Reminder, TreatmentArm
from tests.factories import ReminderFactory, StepFactory, TreatmentFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


def _treatment(clinic, days_ago, procedure="microneedling"):
    ended = NOW - dt.timedelta(days=days_ago)
    return TreatmentFactory(
        screening__patient__clinic=clinic, screening__protocol_version__protocol__procedure=procedure,
        started_at=ended - dt.timedelta(hours=1), ended_at=ended,
    )


def test_it_records_a_healing_course_for_the_days_that_have_passed_once(clinic_a, clinician):
    treatment = _treatment(clinic_a, 30)
    created = install_demo_outcomes(treatment=treatment, clinician=clinician)
    clinician_days = list(
        OutcomeAssessment.objects.filter(treatment=treatment, source="clinician").values_list("time_point_day", "phase")
    )
    assert sorted(clinician_days) == [(0, "after"), (0, "before"), (1, ""), (3, ""), (7, ""), (14, ""), (28, "")]
    assert OutcomeAssessment.objects.filter(treatment=treatment, source="patient").count() == 1
    assert created == 8
    assert install_demo_outcomes(treatment=treatment, clinician=clinician) == 0
    assert OutcomeAssessment.objects.filter(treatment=treatment).count() == 8


def test_the_course_is_plausible(clinic_a, clinician):
    for procedure in ["microneedling", "fractional_nonablative", "fractional_ablative"]:
        treatment = _treatment(clinic_a, 30, procedure)
        install_demo_outcomes(treatment=treatment, clinician=clinician)
        [measures] = measures_for_treatment(treatment=treatment, now=NOW)
        assert measures.peak_erythema >= 2
        assert measures.first_day_erythema_at_most_1 is not None
        assert measures.days_to_reepithelialisation is not None
        day_28 = OutcomeAssessment.objects.get(treatment=treatment, time_point_day=28, source="clinician")
        assert day_28.erythema <= 2
        assert day_28.gais is not None


def test_it_scores_each_arm_of_a_split_face_treatment(clinic_a, clinician):
    treatment = _treatment(clinic_a, 30, "fractional_ablative")
    TreatmentArm.objects.create(treatment=treatment, label="left")
    TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
    install_demo_outcomes(treatment=treatment, clinician=clinician)
    per_arm = {m.arm_label: m for m in measures_for_treatment(treatment=treatment, now=NOW)}
    assert set(per_arm) == {"left", "right"}
    assert per_arm["left"].days_to_reepithelialisation <= per_arm["right"].days_to_reepithelialisation
    assert not OutcomeAssessment.objects.filter(treatment=treatment, source="clinician", arm__isnull=True).exists()


def test_a_recent_treatment_gets_only_the_days_so_far_and_more_later(clinic_a, clinician):
    treatment = _treatment(clinic_a, 2)
    install_demo_outcomes(treatment=treatment, clinician=clinician)
    assert set(OutcomeAssessment.objects.filter(treatment=treatment).values_list("time_point_day", flat=True)) == {0, 1}
    with time_machine.travel(NOW + dt.timedelta(days=6), tick=False):
        install_demo_outcomes(treatment=treatment, clinician=clinician)
    assert {3, 7} <= set(OutcomeAssessment.objects.filter(treatment=treatment).values_list("time_point_day", flat=True))


def test_it_confirms_most_past_home_steps_and_is_stable_on_rerun(clinic_a, clinician):
    treatment = _treatment(clinic_a, 30)
    serum = StepFactory(version=treatment.protocol_version, kind="home_application")
    for night in range(10):
        when = treatment.ended_at + dt.timedelta(days=night + 1)
        ReminderFactory(treatment=treatment, step=serum, occurrence=night, occurs_at=when, due_at=when, status="sent")
    install_demo_outcomes(treatment=treatment, clinician=clinician)
    done = set(Reminder.objects.filter(done_at__isnull=False).values_list("pk", flat=True))
    assert 0 < len(done) <= 10
    install_demo_outcomes(treatment=treatment, clinician=clinician)
    assert set(Reminder.objects.filter(done_at__isnull=False).values_list("pk", flat=True)) == done


def test_adverse_events_are_created_at_most_once(clinic_a, clinician):
    treatments = [_treatment(clinic_a, 30, "fractional_ablative") for _ in range(15)]
    for treatment in treatments:
        install_demo_outcomes(treatment=treatment, clinician=clinician)
    first = AdverseEvent.objects.count()
    for treatment in treatments:
        install_demo_outcomes(treatment=treatment, clinician=clinician)
    assert AdverseEvent.objects.count() == first
    assert not AdverseEvent.objects.exclude(severity="mild").exists()


class _AlwaysAnEvent:
    """An rng under which the demo always records an adverse event, of the first kind offered."""

    def random(self) -> float:
        return 0.0

    def choice(self, options):
        return options[0]


def test_adverse_event_dates_are_the_clinics_dates_when_utc_is_already_tomorrow(clinic_a, clinician):
    # Regression: the demo compared with the UTC date, the validation with the clinic's, so a seed run
    # between midnight UTC and midnight in New York resolved an event "in the future" and failed.
    from patients.demo_outcomes import _adverse_event

    clinic_a.time_zone = "America/New_York"
    clinic_a.save()
    ended = dt.datetime(2026, 3, 1, 15, 0, tzinfo=ZoneInfo("America/New_York"))  # local day D
    now = dt.datetime(2026, 3, 13, 2, 30, tzinfo=dt.UTC)  # UTC day D+12, still D+11 22:30 in New York
    treatment = TreatmentFactory(
        screening__patient__clinic=clinic_a, screening__protocol_version__protocol__procedure="fractional_ablative",
        started_at=ended - dt.timedelta(hours=1), ended_at=ended,
    )
    _adverse_event(treatment=treatment, clinician=clinician, rng=_AlwaysAnEvent(), procedure="fractional_ablative", now=now)
    event = AdverseEvent.objects.get(treatment=treatment)
    assert event.onset_date == dt.date(2026, 3, 6)
    assert event.resolution_date is None  # day D+12 has not come in New York yet
    _adverse_event(treatment=treatment, clinician=clinician, rng=_AlwaysAnEvent(), procedure="fractional_ablative",
                   now=now + dt.timedelta(hours=3))
    assert AdverseEvent.objects.filter(treatment=treatment).count() == 1


def test_nothing_is_entered_later_than_now(clinic_a, clinician):
    # Day 3 came an hour ago: the clinician's entry (day + 2 h) and the self-report (day + 10 h) would be in the future.
    treatment = _treatment(clinic_a, 3)
    treatment.ended_at = NOW - dt.timedelta(days=3, hours=1)
    treatment.save(update_fields=["ended_at"])
    install_demo_outcomes(treatment=treatment, clinician=clinician)
    entries = OutcomeAssessment.objects.filter(treatment=treatment, time_point_day=3)
    assert {entry.source for entry in entries} == {"clinician", "patient"}
    assert max(entries.values_list("recorded_at", flat=True)) <= NOW


def test_past_reminders_read_as_sent_and_home_steps_as_mostly_done(clinic_a, clinician):
    treatment = _treatment(clinic_a, 6)
    for day in range(1, 6):
        StepFactory(version=treatment.protocol_version, kind="home_application", day=day)
    from patients.treatments import schedule_reminders

    schedule_reminders(treatment=treatment)  # recorded now, six days late: every past step is skipped
    assert set(treatment.reminders.values_list("status", flat=True)) == {"skipped"}
    install_demo_outcomes(treatment=treatment, clinician=clinician)
    sent = treatment.reminders.filter(status="sent")
    assert sent.count() == 5
    assert all(r.sent_at > r.due_at and r.last_error == "" for r in sent)
    assert sent.filter(done_at__isnull=False).exists()


def test_a_running_avoidance_recorded_late_reads_as_sent_at_its_time(clinic_a, clinician):
    treatment = _treatment(clinic_a, 6)
    StepFactory(version=treatment.protocol_version, kind="avoidance", day=0, local_time=dt.time(18, 0), avoid_until_day=28)
    from patients.treatments import schedule_reminders

    schedule_reminders(treatment=treatment)  # six days late, but the avoidance runs until day 28: due at once
    [reminder] = treatment.reminders.all()
    assert (reminder.status, reminder.due_at) == ("scheduled", NOW)
    install_demo_outcomes(treatment=treatment, clinician=clinician)
    reminder.refresh_from_db()
    assert reminder.status == "sent"
    assert reminder.due_at == reminder.occurs_at < reminder.sent_at < NOW
