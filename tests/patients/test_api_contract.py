"""What fuzzing the API (tests/fuzz) found in the patients endpoints."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_it_refuses_an_intake_without_answers_instead_of_storing_an_empty_one(clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    api = APIClient()
    api.force_authenticate(clinician)

    response = api.post(f"/api/v1/patients/{patient.pk}/intakes/", {"answered_at": "2026-01-01T09:00:00Z"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"answers": ["This field is required."]}
    assert not patient.intakes.exists()
