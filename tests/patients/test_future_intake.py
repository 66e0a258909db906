"""An intake dated in the future (a mistyped year) is refused: the newest intake is the one screening reads."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from patients.intake import latest_intake
from patients.models import Intake, Screening
from tests.factories import IntakeFactory, PatientFactory
from tests.patients import test_screening_api
from tests.patients.test_screening_api import api_for, clinic_today

pytestmark = pytest.mark.django_db
version = test_screening_api.version  # the published version with the pregnancy rule, a fixture


def test_the_api_refuses_an_intake_answered_in_the_future_and_stores_nothing(clinic_a, coordinator):
    patient = PatientFactory(clinic=clinic_a)
    response = api_for(coordinator).post(f"/api/v1/patients/{patient.pk}/intakes/", {
        "answers": {"pregnant": False}, "answered_at": "2030-01-01T00:00:00+00:00",
    }, format="json")
    assert response.status_code == 400
    assert response.json()["answered_at"] == [
        "2030-01-01 00:00 is in the future: give when the patient answered (now, or earlier for answers given on paper)."
    ]
    assert not Intake.objects.exists()


def test_a_future_intake_saved_before_does_not_hide_the_newer_answers_from_screening(clinic_a, version, clinician):
    patient = PatientFactory(clinic=clinic_a)
    IntakeFactory(patient=patient, answers={"pregnant": False}, answered_at=timezone.now() + dt.timedelta(days=3000))
    today = IntakeFactory(patient=patient, answers={"pregnant": True})
    assert latest_intake(patient) == today

    response = api_for(clinician).post(f"/api/v1/patients/{patient.pk}/screenings/", {
        "protocol_version": version.pk, "planned_for": clinic_today(patient),
    }, format="json")

    assert response.status_code == 201, response.json()
    assert Screening.objects.get().outcome == Screening.Outcome.BLOCKED  # the pregnancy answer is read
