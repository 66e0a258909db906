"""An outcome's notes hold at most 5,000 characters, from staff (admin, API) and patients alike.

100 kB of notes (a pasted document) were stored. Longer notes get a clear error and nothing is saved; the
patient's page says the limit in their words.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from patients.links import create_link, token_for
from patients.models import OutcomeAssessment, PatientLink
from patients.outcomes import NOTES_MAX_LENGTH, correct_assessment, record_assessment, record_self_report
from tests.factories import TreatmentFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 18, 0, tzinfo=dt.UTC)
PASTED = ("Redness spreading along the jaw, warm to the touch. " * 2000).strip()  # about 100 kB
WHOLE_PAGE = ("Redness spreading along the jaw, warm to the touch. " * 100)[:4999] + "."
REFUSAL = f"Keep the notes to 5000 characters (they have {len(PASTED)})."


@pytest.fixture(autouse=True)
def frozen():
    cache.clear()  # the per-address rate limit of link pages
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def treatment(clinic_a):
    ended = NOW - dt.timedelta(days=3, hours=6)
    return TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended)


def test_the_limit_is_5000_characters_and_notes_that_long_are_kept_whole(treatment, clinician):
    assert NOTES_MAX_LENGTH == 5000
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"notes": WHOLE_PAGE})
    assert OutcomeAssessment.objects.get(pk=entry.pk).notes == WHOLE_PAGE


def test_the_service_refuses_100_kb_of_notes_and_stores_nothing(treatment, clinician):
    with pytest.raises(ValidationError) as refused:
        record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 1, "notes": PASTED})
    assert refused.value.message_dict == {"notes": [REFUSAL]}
    assert not OutcomeAssessment.objects.exists()


def test_a_correction_to_100_kb_of_notes_is_refused_and_the_entry_stays(treatment, clinician):
    entry = record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 1})
    with pytest.raises(ValidationError) as refused:
        correct_assessment(assessment=entry, by=clinician, changes={"notes": PASTED}, reason="Added the patient's call")
    assert refused.value.message_dict == {"notes": [REFUSAL]}
    assert OutcomeAssessment.objects.get(pk=entry.pk).notes == ""


def test_the_api_refuses_100_kb_of_notes_with_400_on_notes(treatment, clinician):
    api = APIClient()
    api.force_authenticate(clinician)
    response = api.post("/api/v1/outcomes/", {"treatment": treatment.pk, "time_point_day": 3, "erythema": 1,
                                              "notes": PASTED}, format="json")
    assert response.status_code == 400
    assert response.json()["notes"] == [REFUSAL]
    assert not OutcomeAssessment.objects.exists()


def test_the_admin_refuses_100_kb_of_notes_on_the_notes_field(client, clinician, treatment):
    client.force_login(clinician)
    response = client.post(reverse("admin:patients_outcomeassessment_add"), {
        "treatment": str(treatment.pk), "arm": "", "time_point_day": "3", "phase": "", "erythema": "1", "oedema": "",
        "reepithelialisation_complete": "unknown", "reepithelialisation_percent": "", "pain": "", "pruritus": "",
        "gais": "", "notes": PASTED, "correction_reason": "",
        "photos-TOTAL_FORMS": "0", "photos-INITIAL_FORMS": "0", "photos-MIN_NUM_FORMS": "0",
        "photos-MAX_NUM_FORMS": "1000",
    })
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["notes"] == [REFUSAL]
    assert not OutcomeAssessment.objects.exists()


@pytest.fixture
def link(treatment):
    return create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=3)


def test_the_patients_page_says_the_limit_and_refuses_more_in_their_words(client, link):
    url = reverse("patients:link", kwargs={"token": token_for(link)})
    page = client.get(url).content.decode()
    assert "Up to 5,000 characters (about a page)." in page
    assert 'maxlength="5000"' in page
    answers = {"erythema": "2", "pain": "3", "pruritus": "1", "applied_as_instructed": "yes", "notes": PASTED}
    response = client.post(url, answers)
    assert response.status_code == 400
    body = response.content.decode()
    assert (f"This is too long to send: please shorten it to 5,000 characters or fewer (yours has {len(PASTED)}). "
            "If there is more to say, call the clinic.") in body
    assert not OutcomeAssessment.objects.exists()
    assert client.post(url, {**answers, "notes": WHOLE_PAGE}).status_code == 302
    assert OutcomeAssessment.objects.get().notes == WHOLE_PAGE


def test_a_self_report_sent_around_the_page_is_refused_too(link):
    with pytest.raises(ValidationError) as refused:
        record_self_report(link=link, answers={"erythema": 2, "notes": PASTED})
    assert refused.value.message_dict == {"notes": [REFUSAL]}
    assert not OutcomeAssessment.objects.exists()
