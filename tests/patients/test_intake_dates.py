"""Intake dates before the patient was born are typing mistakes: refused for staff, the API and the patient."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from patients.intake import BEFORE_BIRTH, IntakeForm, PatientIntakeForm, record_intake, validate_answers
from patients.links import create_link, url_for
from patients.models import Intake, PatientLink
from protocols.facts import FACTS, FactType
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC)
TODAY = NOW.date()
BORN = dt.date(1985, 4, 12)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def patient(clinic_a):
    return PatientFactory(clinic=clinic_a, date_of_birth=BORN)


def answers(**overrides: str) -> dict[str, str]:
    data = {fact.code: ("no" if fact.type == FactType.BOOLEAN else "") for fact in FACTS}
    data.update(overrides)
    return data


def test_it_refuses_a_date_before_the_date_of_birth():
    with pytest.raises(ValidationError) as raised:
        validate_answers({"isotretinoin_last_dose": "1850-01-01"}, on=TODAY, born=BORN)
    (message,) = raised.value.message_dict["isotretinoin_last_dose"]
    assert message.endswith("— the answer cannot be before the patient's date of birth (1985-04-12).")


def test_the_day_of_birth_itself_and_any_date_without_a_birth_date_are_accepted():
    assert validate_answers({"isotretinoin_last_dose": "1985-04-12"}, on=TODAY, born=BORN)
    assert validate_answers({"isotretinoin_last_dose": "1850-01-01"}, on=TODAY)


def test_recording_an_intake_checks_the_patients_date_of_birth(patient, clinician):
    with pytest.raises(ValidationError) as raised:
        record_intake(patient=patient, answers={"recent_tan_date": "1984-12-31"}, recorded_by=clinician)
    assert "recent_tan_date" in raised.value.message_dict
    assert not Intake.objects.exists()


def test_the_staff_form_names_the_question_and_the_date_of_birth():
    form = IntakeForm({"isotretinoin_last_dose": "1850-01-01"}, today=TODAY, born=BORN)
    assert not form.is_valid()
    assert "cannot be before the patient's date of birth (1985-04-12)" in form.errors["isotretinoin_last_dose"][0]


def test_the_staff_page_refuses_it_and_saves_nothing(client, patient, coordinator):
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_intake_add", args=[patient.pk]),
                           {"isotretinoin_last_dose": "1850-01-01"})
    assert response.status_code == 400
    assert "the answer cannot be before the patient&#x27;s date of birth (1985-04-12)" in response.content.decode()
    assert not Intake.objects.exists()


def test_the_patient_reads_it_in_their_own_words(client, patient):
    form = PatientIntakeForm(answers(isotretinoin_last_dose="1850-01-01"), today=TODAY, born=BORN)
    assert not form.is_valid()
    assert form.errors["isotretinoin_last_dose"] == [BEFORE_BIRTH]

    path = url_for(create_link(patient=patient, purpose=PatientLink.Purpose.INTAKE)).split("testserver")[-1]
    response = client.post(path[path.index("/p/"):], answers(isotretinoin_last_dose="1850-01-01"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "The date can&#x27;t be before you were born." in page
    assert "date of birth (1985-04-12)" not in page  # the staff wording
    assert not Intake.objects.exists()
