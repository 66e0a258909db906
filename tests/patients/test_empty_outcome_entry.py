"""A clinician's outcome entry records something: at least one score or a note, in the admin and the API alike."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from patients.models import OutcomeAssessment
from patients.outcomes import NOTHING_RECORDED, correct_assessment, current_revision, record_assessment
from tests.factories import TreatmentFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
ADD = reverse("admin:patients_outcomeassessment_add")


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def treatment(clinic_a):
    ended = NOW - dt.timedelta(days=10)
    return TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended)


@pytest.mark.parametrize("scores", [{}, {"notes": "   "}, {"erythema": None, "pain": None, "notes": ""}])
def test_the_service_refuses_an_entry_with_no_score_and_no_note(clinician, treatment, scores):
    with pytest.raises(ValidationError) as refused:
        record_assessment(treatment=treatment, by=clinician, time_point_day=5, scores=scores)
    assert refused.value.messages == [NOTHING_RECORDED]
    assert not OutcomeAssessment.objects.exists()


@pytest.mark.parametrize(
    "scores", [{"notes": "Seen by phone; no photo."}, {"reepithelialisation_complete": False}, {"gais": 0}],
)
def test_one_score_or_a_note_is_enough(clinician, treatment, scores):
    record_assessment(treatment=treatment, by=clinician, time_point_day=5, scores=scores)
    assert OutcomeAssessment.objects.count() == 1


def test_a_correction_cannot_empty_the_entry(clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=5, scores={"erythema": 2})
    with pytest.raises(ValidationError) as refused:
        correct_assessment(assessment=entry, by=clinician, changes={"erythema": None}, reason="Scored by mistake")
    assert refused.value.messages == [NOTHING_RECORDED]
    entry.refresh_from_db()
    assert entry.erythema == 2


def test_the_admin_shows_the_error_and_saves_nothing(client, clinician, treatment):
    client.force_login(clinician)
    response = client.post(ADD, {
        "treatment": str(treatment.pk), "arm": "", "time_point_day": "5", "phase": "", "erythema": "", "oedema": "",
        "reepithelialisation_complete": "unknown", "reepithelialisation_percent": "", "pain": "", "pruritus": "",
        "gais": "", "notes": "", "correction_reason": "",
        "photos-TOTAL_FORMS": "0", "photos-INITIAL_FORMS": "0", "photos-MIN_NUM_FORMS": "0", "photos-MAX_NUM_FORMS": "1000",
    })
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [NOTHING_RECORDED]
    assert not OutcomeAssessment.objects.exists()


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_the_api_answers_400_and_stores_nothing(clinician, treatment):
    response = _api(clinician).post(
        "/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 5, "notes": ""}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": [NOTHING_RECORDED]}
    assert not OutcomeAssessment.objects.exists()


def test_the_api_refuses_a_correction_that_empties_the_entry(clinician, treatment):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=5, scores={"pain": 3})
    response = _api(clinician).patch(f"/api/v1/outcomes/{entry.pk}/", {
        "pain": None, "correction_reason": "Wrong patient", "revision": current_revision(entry),
    }, format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": [NOTHING_RECORDED]}
    entry.refresh_from_db()
    assert entry.pain == 3
