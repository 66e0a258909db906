"""Clinicians record and correct outcome scores; the rules hold whatever the caller."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError

from clinic.models import Role
from patients.models import OutcomeAssessment, TreatmentArm
from patients.outcomes import (
    ChangedSinceOpened,
    correct_assessment,
    current_revision,
    record_assessment,
    step_days,
    time_points_for,
)
from tests.factories import StepFactory, TreatmentFactory, VersionFactory, staff

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # Staff factories set a password; the production hasher makes each one take seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def treatment(clinic_a):
    ended = NOW - dt.timedelta(days=10)
    return TreatmentFactory(
        screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended
    )


def test_it_records_scores_with_who_and_when(treatment, clinician):
    entry = record_assessment(
        treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2, "oedema": 1, "pain": 3}
    )
    entry.refresh_from_db()
    assert (entry.erythema, entry.oedema, entry.pain) == (2, 1, 3)
    assert entry.source == OutcomeAssessment.Source.CLINICIAN
    assert entry.recorded_by == clinician
    assert entry.recorded_at == NOW
    assert entry.history.get().history_user == clinician


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("erythema", 5, "Erythema (CEA) is scored 0 (clear) to 4 (severe); 5 is out of range."),
        ("oedema", -1, "Oedema is scored 0 (none) to 4 (severe); -1 is out of range."),
        ("pain", 11, "Pain is rated 0 (no pain) to 10 (worst imaginable); 11 is out of range."),
        ("pruritus", 12, "Itching is rated 0 (none) to 10 (worst imaginable); 12 is out of range."),
        ("gais", 4, "GAIS is -1 (worse) to 3 (very much improved); 4 is out of range."),
        ("reepithelialisation_percent", 101, "percentage of the area, 0 to 100; 101 is out of range."),
        ("erythema", "2", "is not a whole number"),
        ("erythema", True, "is not a whole number"),
    ],
)
def test_it_refuses_a_score_out_of_its_scale_and_stores_nothing(treatment, clinician, field, value, words):
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={field: value})
    assert words in raised.value.message_dict[field][0]
    assert not OutcomeAssessment.objects.exists()


def test_it_names_every_bad_field_at_once(treatment, clinician):
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 9, "pain": 40})
    assert set(raised.value.message_dict) == {"erythema", "pain"}


def test_it_refuses_percent_below_100_when_reepithelialisation_is_complete(treatment, clinician):
    with pytest.raises(ValidationError) as raised:
        record_assessment(
            treatment=treatment, by=clinician, time_point_day=7,
            scores={"reepithelialisation_complete": True, "reepithelialisation_percent": 80},
        )
    assert "100 %" in raised.value.message_dict["reepithelialisation_percent"][0]


def test_it_counts_100_percent_as_complete(treatment, clinician):
    entry = record_assessment(
        treatment=treatment, by=clinician, time_point_day=7, scores={"reepithelialisation_percent": 100}
    )
    assert entry.reepithelialisation_complete is True


def test_it_refuses_gais_on_day_0_and_phase_on_later_days(treatment, clinician):
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=0, phase="after", scores={"gais": 2})
    assert "gais" in raised.value.message_dict
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=3, phase="before", scores={"erythema": 1})
    assert "day 0" in raised.value.message_dict["phase"][0]


def test_it_refuses_a_day_that_has_not_come_yet(treatment, clinician):
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=28, scores={"erythema": 0})
    assert "has not come yet" in raised.value.message_dict["time_point_day"][0]


def test_it_refuses_a_second_entry_for_the_same_time_point(treatment, clinician):
    record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2})
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 1})
    assert "already recorded; correct that entry instead" in raised.value.message_dict["time_point_day"][0]
    assert OutcomeAssessment.objects.get().erythema == 2


def test_it_keeps_before_and_after_on_day_0_apart(treatment, clinician):
    record_assessment(treatment=treatment, by=clinician, time_point_day=0, phase="before", scores={"erythema": 0})
    record_assessment(treatment=treatment, by=clinician, time_point_day=0, phase="after", scores={"erythema": 3})
    assert OutcomeAssessment.objects.count() == 2


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.AUDITOR, Role.CLINIC_ADMIN])
def test_it_lets_only_clinicians_enter_scores(treatment, clinic_a, role):
    user = staff(role, clinic_a)
    with pytest.raises(PermissionDenied):
        record_assessment(treatment=treatment, by=user, time_point_day=3, scores={"erythema": 2})
    assert not OutcomeAssessment.objects.exists()


def test_it_refuses_a_clinician_of_another_clinic(treatment, clinician_b):
    with pytest.raises(PermissionDenied):
        record_assessment(treatment=treatment, by=clinician_b, time_point_day=3, scores={"erythema": 2})


def test_it_needs_an_arm_on_a_split_face_treatment(treatment, clinician):
    left = TreatmentArm.objects.create(treatment=treatment, label="left")
    TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2})
    assert "which arm" in raised.value.message_dict["arm"][0]
    record_assessment(treatment=treatment, by=clinician, time_point_day=3, arm=left, scores={"erythema": 2})
    assert OutcomeAssessment.objects.get().arm == left


def test_it_refuses_an_arm_of_another_treatment(treatment, clinician, clinic_a):
    other = TreatmentFactory(screening__patient__clinic=clinic_a, ended_at=treatment.ended_at, started_at=treatment.started_at)
    foreign_arm = TreatmentArm.objects.create(treatment=other, label="left")
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=3, arm=foreign_arm, scores={"erythema": 2})
    assert "another treatment" in raised.value.message_dict["arm"][0]


def test_it_refuses_outcomes_for_a_cancelled_treatment(treatment, clinician):
    treatment.status = treatment.Status.CANCELLED
    treatment.save()
    with pytest.raises(ValidationError) as raised:
        record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2})
    assert "cancelled" in raised.value.message_dict["treatment"][0]


def test_a_correction_edits_the_entry_and_history_keeps_the_original(treatment, clinician, clinic_a):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3, "pain": 4})
    colleague = staff(Role.CLINICIAN, clinic_a)
    correct_assessment(assessment=entry, by=colleague, changes={"erythema": 2}, reason="Scored the wrong photo")
    entry.refresh_from_db()
    assert entry.erythema == 2
    assert entry.pain == 4
    assert entry.recorded_by == clinician  # who first entered it stays
    latest, original = entry.history.order_by("-history_id")
    assert (original.erythema, original.history_user) == (3, clinician)
    assert (latest.erythema, latest.history_user, latest.history_change_reason) == (2, colleague, "Scored the wrong photo")


def test_a_correction_needs_a_reason(treatment, clinician):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    with pytest.raises(ValidationError) as raised:
        correct_assessment(assessment=entry, by=clinician, changes={"erythema": 2}, reason="  ")
    assert "correction_reason" in raised.value.message_dict
    entry.refresh_from_db()
    assert entry.erythema == 3
    assert entry.history.count() == 1


def test_a_correction_out_of_range_changes_nothing(treatment, clinician):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    with pytest.raises(ValidationError):
        correct_assessment(assessment=entry, by=clinician, changes={"erythema": 7}, reason="Typed the wrong score")
    entry.refresh_from_db()
    assert entry.erythema == 3


def test_a_correction_by_a_coordinator_is_refused(treatment, clinician, coordinator):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    with pytest.raises(PermissionDenied):
        correct_assessment(assessment=entry, by=coordinator, changes={"erythema": 2}, reason="Typed the wrong score")


def test_a_correction_onto_a_recorded_time_point_is_refused(treatment, clinician):
    record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 3})
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=7, scores={"erythema": 1})
    with pytest.raises(ValidationError):
        correct_assessment(assessment=entry, by=clinician, changes={"time_point_day": 3}, reason="Entered on the wrong day")
    entry.refresh_from_db()
    assert entry.time_point_day == 7


def test_a_correction_based_on_an_older_revision_is_refused_and_names_who_changed_it(treatment, clinician, clinic_a):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2, "pain": 3})
    opened = current_revision(entry)
    colleague = staff(Role.CLINICIAN, clinic_a, first_name="Ada", last_name="Okafor")
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        correct_assessment(assessment=entry, by=colleague, changes={"erythema": 4}, reason="Photo shows severe", based_on=opened)
    stale = OutcomeAssessment.objects.get(pk=entry.pk)
    with pytest.raises(ChangedSinceOpened) as raised:
        correct_assessment(assessment=stale, by=clinician, changes={"erythema": 2, "pain": 6}, reason="Pain was 6, not 3",
                           based_on=opened)
    assert raised.value.message == (
        "Ada Okafor changed this record on 20 Mar 2026 at 12:05 after you opened it (reason given: Photo shows severe). "
        "Nothing was saved: reload it to see that change, then make yours again."
    )
    entry.refresh_from_db()
    assert (entry.erythema, entry.pain, entry.history.count()) == (4, 3, 2)


def test_a_correction_on_the_current_revision_is_saved_and_counts_one_more(treatment, clinician):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2})
    opened = current_revision(entry)
    correct_assessment(assessment=entry, by=clinician, changes={"erythema": 3}, reason="Recounted the papules", based_on=opened)
    assert (opened, current_revision(entry)) == (1, 2)
    with pytest.raises(ChangedSinceOpened):  # the same form sent a second time
        correct_assessment(assessment=entry, by=clinician, changes={"erythema": 1}, reason="Scored too early", based_on=opened)
    with pytest.raises(ChangedSinceOpened, match="has not had that many revisions"):
        correct_assessment(assessment=entry, by=clinician, changes={"erythema": 1}, reason="Scored too early", based_on=3)
    entry.refresh_from_db()
    assert entry.erythema == 3


def test_clinicians_cannot_correct_a_patient_report(treatment, clinician):
    entry = OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, source="patient", erythema=2)
    with pytest.raises(PermissionDenied):
        correct_assessment(assessment=entry, by=clinician, changes={"erythema": 1}, reason="Patient disagreed with score")


def test_time_points_come_from_the_protocols_outcome_checks(clinic_a):
    version = VersionFactory(protocol__clinic=clinic_a)
    StepFactory(version=version, kind="outcome_check", timing="local_time", day=3)
    StepFactory(version=version, kind="outcome_check", timing="offset", offset_value=7, offset_unit="days", day=None)
    StepFactory(version=version, kind="home_application", timing="local_time", day=1)
    assert time_points_for(version) == [3, 7]
    assert time_points_for(VersionFactory(protocol__clinic=clinic_a)) == [0, 1, 3, 7, 14, 28]


def test_step_days_count_repeats_and_negative_offsets(clinic_a):
    nightly = StepFactory.build(timing="local_time", day=1, repeat_count=3, repeat_every_days=2)
    before = StepFactory.build(timing="offset", offset_value=-30, offset_unit="minutes", day=None)
    assert step_days(nightly) == [1, 3, 5]
    assert step_days(before) == [-1]
