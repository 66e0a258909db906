"""Derived healing measures, checked against cases worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from patients.measures import measures_for, measures_for_treatment
from patients.models import AdverseEvent, OutcomeAssessment, Reminder, Treatment, TreatmentArm
from tests.factories import ReminderFactory, StepFactory, TreatmentFactory, UserFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def _treatment(clinic, **kwargs):
    ended = NOW - dt.timedelta(days=20)
    return TreatmentFactory(
        screening__patient__clinic=clinic, started_at=ended - dt.timedelta(hours=1), ended_at=ended, **kwargs
    )


def _score(treatment, day, arm=None, phase="", source="clinician", **scores):
    return OutcomeAssessment.objects.create(
        treatment=treatment, arm=arm, time_point_day=day, phase=phase, source=source, **scores
    )


def _event(treatment, arm=None):
    return AdverseEvent.objects.create(
        treatment=treatment, arm=arm, kind="milia", severity="mild", onset_date=NOW.date(), recorded_by=UserFactory()
    )


def test_it_derives_peak_first_clear_day_and_reepithelialisation_from_clinician_scores(clinic_a):
    treatment = _treatment(clinic_a)
    _score(treatment, 0, phase="before", erythema=0)  # baseline: not part of healing
    _score(treatment, 0, phase="after", erythema=3, oedema=2)
    _score(treatment, 1, erythema=4, reepithelialisation_percent=60)
    _score(treatment, 3, erythema=2, reepithelialisation_percent=80)
    _score(treatment, 3, source="patient", erythema=0)  # the patient's view does not move clinician measures
    _score(treatment, 7, erythema=1, reepithelialisation_complete=True)
    _score(treatment, 14, erythema=0, reepithelialisation_complete=True, gais=2)

    [measures] = measures_for_treatment(treatment=treatment, now=NOW)

    assert measures.peak_erythema == 4
    assert measures.first_day_erythema_at_most_1 == 7
    assert measures.days_to_reepithelialisation == 7
    assert measures.best_gais == 2
    assert measures.arm_id is None


def test_first_clear_day_is_literal_even_if_redness_flares_later(clinic_a):
    treatment = _treatment(clinic_a)
    _score(treatment, 1, erythema=1)
    _score(treatment, 3, erythema=3)
    [measures] = measures_for_treatment(treatment=treatment, now=NOW)
    assert (measures.first_day_erythema_at_most_1, measures.peak_erythema) == (1, 3)


def test_it_leaves_measures_empty_when_nothing_was_scored(clinic_a):
    [measures] = measures_for_treatment(treatment=_treatment(clinic_a), now=NOW)
    assert measures.peak_erythema is None
    assert measures.first_day_erythema_at_most_1 is None
    assert measures.days_to_reepithelialisation is None
    assert measures.adverse_events == 0
    assert measures.adherence is None


def test_it_measures_each_arm_of_a_split_face_treatment(clinic_a):
    treatment = _treatment(clinic_a)
    left = TreatmentArm.objects.create(treatment=treatment, label="left")
    right = TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
    _score(treatment, 1, arm=left, erythema=3)
    _score(treatment, 3, arm=left, erythema=1)
    _score(treatment, 5, arm=left, reepithelialisation_complete=True)
    _score(treatment, 1, arm=right, erythema=4)
    _score(treatment, 3, arm=right, erythema=2)
    _score(treatment, 7, arm=right, erythema=1, reepithelialisation_complete=True)
    _event(treatment, arm=right)
    _event(treatment)  # not tied to a side: it concerns the whole face, so both arms carry it

    by_arm = {m.arm_label: m for m in measures_for_treatment(treatment=treatment, now=NOW)}

    assert set(by_arm) == {"left", "right"}
    left_m, right_m = by_arm["left"], by_arm["right"]
    assert (left_m.peak_erythema, left_m.first_day_erythema_at_most_1, left_m.days_to_reepithelialisation) == (3, 3, 5)
    assert (right_m.peak_erythema, right_m.first_day_erythema_at_most_1, right_m.days_to_reepithelialisation) == (4, 7, 7)
    assert (left_m.adverse_events, right_m.adverse_events) == (1, 2)
    assert (left_m.is_control, right_m.is_control) == (False, True)


def test_adherence_is_home_steps_done_over_home_steps_due_so_far(clinic_a):
    treatment = _treatment(clinic_a)
    serum = StepFactory(version=treatment.protocol_version, kind="home_application", title="Serum nightly")
    check = StepFactory(version=treatment.protocol_version, kind="outcome_check", title="Self-check")
    past = NOW - dt.timedelta(days=2)

    def reminder(occurrence, step=serum, due_at=past, status=Reminder.Status.SENT, done=False):
        return ReminderFactory(
            treatment=treatment, step=step, occurrence=occurrence, occurs_at=due_at, due_at=due_at,
            status=status, done_at=due_at if done else None,
        )

    reminder(0, done=True)
    reminder(1, done=True)
    reminder(2, done=True)
    reminder(3)
    reminder(4, status=Reminder.Status.FAILED)  # due, and the patient did not confirm it
    reminder(5, status=Reminder.Status.CANCELLED)  # not counted: the treatment's plan changed
    reminder(6, status=Reminder.Status.SKIPPED)  # not counted: the patient opted out of emails
    reminder(7, due_at=NOW + dt.timedelta(days=1), status=Reminder.Status.SCHEDULED)  # not due yet
    reminder(0, step=check, done=True)  # not a home step

    [measures] = measures_for_treatment(treatment=treatment, now=NOW)

    assert (measures.home_steps_done, measures.home_steps_due) == (3, 5)
    assert measures.adherence == pytest.approx(0.6)


def test_it_uses_the_same_number_of_queries_for_one_or_many_treatments(clinic_a, django_assert_num_queries):
    def build(n):
        for _ in range(n):
            treatment = _treatment(clinic_a)
            left = TreatmentArm.objects.create(treatment=treatment, label="left")
            TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
            _score(treatment, 1, arm=left, erythema=2)
            _event(treatment, arm=left)

    build(1)
    with django_assert_num_queries(4):
        assert len(measures_for(Treatment.objects.all(), now=NOW)) == 2
    build(9)
    with django_assert_num_queries(4):
        assert len(measures_for(Treatment.objects.all(), now=NOW)) == 20
