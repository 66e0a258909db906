"""The admin's screening pages when the intake left questions on "Not asked": not clear, and they say which."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse
from django.utils import timezone

from patients.models import Intake, Screening
from protocols import defaults
from protocols.facts import FACTS, FactType
from tests.factories import PatientFactory, clinic_date

pytestmark = pytest.mark.django_db


@pytest.fixture
def ablative(clinic_a):
    defaults.install_default_rules()
    return defaults.install_example_protocols(clinic=clinic_a)["fractional_ablative"]


@pytest.fixture
def patient(clinic_a):
    return PatientFactory(clinic=clinic_a, given_name="Maya", family_name="Okafor", fitzpatrick_type=None)


def screen_and_show(client, patient, version) -> tuple[Screening, str]:
    response = client.post(reverse("admin:patients_patient_screen", args=[patient.pk]),
                           {"protocol_version": version.pk, "planned_for": clinic_date(timezone.now(), patient)})
    assert response.status_code == 302
    screening = Screening.objects.latest("pk")
    page = client.get(response["Location"]).content.decode()
    return screening, html.unescape(page)


def test_an_intake_left_on_not_asked_shows_the_unanswered_questions_and_no_treatment_link(
    client, clinician, patient, ablative
):
    client.force_login(clinician)
    # A new patient, an intake saved with every question on "Not asked", screened for ablative CO₂.
    not_asked = {fact.code: "" for fact in FACTS}  # what the browser sends: radios on "Not asked", dates empty
    saved = client.post(reverse("admin:patients_patient_intake_add", args=[patient.pk]), not_asked)
    assert saved.status_code == 302
    assert Intake.objects.get(patient=patient).answers == {}
    screening, page = screen_and_show(client, patient, ablative)
    assert screening.outcome == "needs_override"
    assert 'class="outcome outcome-needs_override"' in page
    assert "No contraindication found." not in page
    asked = [fact.question for fact in FACTS if fact.type in (FactType.BOOLEAN, FactType.CHOICE)]
    assert "Not answered on the intake: " + "; ".join(asked) in page
    assert "Mitigation: Ask the patient and record the intake again, or override with what they said." in page
    assert 'class="finding finding-relative"' in page
    assert "Rule unanswered" in page
    assert 'value="Record override"' in page
    assert 'id="record-treatment"' not in page

    # The clinician asks and overrides with what the patient said: now a treatment may be recorded.
    reason = "Asked in person: no to every question, skin type II, never took isotretinoin."
    assert client.post(reverse("admin:patients_patient_screening", args=[patient.pk, screening.pk]),
                       {"reason": reason}).status_code == 302
    page = client.get(reverse("admin:patients_patient_screening", args=[patient.pk, screening.pk])).content.decode()
    assert 'id="record-treatment"' in page


def test_an_intake_answering_every_question_screens_clear(client, clinician, patient, ablative):
    client.force_login(clinician)
    answers = {fact.code: "no" for fact in FACTS if fact.type == FactType.BOOLEAN} | {"fitzpatrick_type": "II"}
    assert client.post(reverse("admin:patients_patient_intake_add", args=[patient.pk]), answers).status_code == 302
    screening, page = screen_and_show(client, patient, ablative)
    assert screening.outcome == "clear"
    assert "No contraindication found." in page
    assert 'id="record-treatment"' in page
