"""Intake answers: validation, never overwriting, re-confirmation with history."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError

from clinic.models import AuditEvent
from patients.intake import IntakeForm, PatientIntakeForm, latest_intake, reconfirm_intake, record_intake, validate_answers
from patients.models import Intake
from protocols.facts import FACTS, FactType
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=ZoneInfo("UTC"))
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def patient(clinic_a):
    return PatientFactory(clinic=clinic_a)


# --- validation --------------------------------------------------------------------------


def test_it_accepts_answers_of_the_right_types_and_drops_unanswered_ones():
    cleaned = validate_answers(
        {"pregnant": False, "isotretinoin_last_dose": "2026-01-02", "fitzpatrick_type": "III", "hsv_history": None,
         "recent_peel_date": ""},
        on=TODAY,
    )
    assert cleaned == {"pregnant": False, "isotretinoin_last_dose": "2026-01-02", "fitzpatrick_type": "III"}


@pytest.mark.parametrize(
    ("answers", "fact", "words"),
    [
        ({"smoker": True}, "smoker", "Unknown fact"),
        ({"pregnant": "yes"}, "pregnant", "true or false"),
        ({"pregnant": 1}, "pregnant", "true or false"),
        ({"isotretinoin_last_dose": "last spring"}, "isotretinoin_last_dose", "YYYY-MM-DD"),
        ({"isotretinoin_last_dose": True}, "isotretinoin_last_dose", "YYYY-MM-DD"),
        ({"isotretinoin_last_dose": "2026-05-05"}, "isotretinoin_last_dose", "future"),
        ({"fitzpatrick_type": "VII"}, "fitzpatrick_type", "one of"),
    ],
)
def test_it_names_the_fact_and_the_problem(answers, fact, words):
    with pytest.raises(ValidationError) as error:
        validate_answers(answers, on=TODAY)
    assert words in error.value.message_dict[fact][0]


def test_it_accepts_a_date_on_the_day_of_answering():
    assert validate_answers({"recent_peel_date": TODAY.isoformat()}, on=TODAY)


def test_it_refuses_answers_that_are_not_an_object():
    with pytest.raises(ValidationError) as error:
        validate_answers(["pregnant"], on=TODAY)
    assert "answers" in error.value.message_dict


# --- recording ----------------------------------------------------------------------------------


def test_a_new_intake_never_overwrites_the_old_one(patient, clinician, frozen):
    first = record_intake(patient=patient, answers={"pregnant": False}, recorded_by=clinician)
    frozen.shift(dt.timedelta(days=3))
    second = record_intake(patient=patient, answers={"pregnant": True}, recorded_by=clinician)
    first.refresh_from_db()
    assert first.answers == {"pregnant": False}
    assert second.answers == {"pregnant": True}
    assert latest_intake(patient) == second
    assert patient.intakes.count() == 2


def test_it_records_who_when_and_logs_it(patient, coordinator):
    intake = record_intake(patient=patient, answers={"hsv_history": True}, recorded_by=coordinator)
    assert intake.recorded_by == coordinator
    assert intake.answered_at == NOW
    assert intake.source == Intake.Source.STAFF
    assert AuditEvent.objects.filter(action="intake.record", object_id=str(intake.pk), actor=coordinator).exists()


def test_it_stores_nothing_when_an_answer_is_bad(patient, clinician):
    with pytest.raises(ValidationError):
        record_intake(patient=patient, answers={"pregnant": True, "recent_filler_date": "2027-01-01"},
                      recorded_by=clinician)
    assert not Intake.objects.exists()


def test_stored_answers_cannot_be_edited_or_deleted(patient, clinician):
    intake = record_intake(patient=patient, answers={"pregnant": False}, recorded_by=clinician)
    intake.answers = {"pregnant": True}
    with pytest.raises(PermissionDenied):
        intake.save()
    with pytest.raises(PermissionDenied):
        intake.delete()
    intake.refresh_from_db()
    assert intake.answers == {"pregnant": False}


def test_reconfirming_sets_who_and_when_and_keeps_history(patient, coordinator, clinician, frozen):
    intake = record_intake(patient=patient, answers={"pregnant": False}, recorded_by=coordinator)
    frozen.shift(dt.timedelta(days=35))
    reconfirm_intake(intake=intake, confirmed_by=clinician)
    intake.refresh_from_db()
    assert intake.confirmed_at == NOW + dt.timedelta(days=35)
    assert intake.confirmed_by == clinician
    assert intake.effective_at == intake.confirmed_at
    assert intake.answers == {"pregnant": False}
    states = list(intake.history.order_by("history_date"))
    assert [s.confirmed_at for s in states] == [None, NOW + dt.timedelta(days=35)]
    assert AuditEvent.objects.filter(action="intake.confirm", actor=clinician).exists()


# --- the generated form -----------------------------------------------------------------------


def test_the_staff_form_has_one_field_per_fact_and_tells_no_from_not_asked():
    form = IntakeForm({"pregnant": "no", "hsv_history": "", "isotretinoin_last_dose": "2026-01-02"}, today=TODAY)
    assert set(form.fields) == {fact.code for fact in FACTS}
    assert form.is_valid(), form.errors
    assert form.answers() == {"pregnant": False, "isotretinoin_last_dose": "2026-01-02"}


def test_the_form_puts_a_future_date_error_on_its_field():
    form = IntakeForm({"recent_tan_date": "2026-06-01"}, today=TODAY)
    assert not form.is_valid()
    assert "future" in form.errors["recent_tan_date"][0]


def test_the_patient_form_needs_every_yes_no_question_answered():
    form = PatientIntakeForm({}, today=TODAY)
    assert not form.is_valid()
    booleans = {fact.code for fact in FACTS if fact.type == FactType.BOOLEAN}
    assert booleans <= set(form.errors)
