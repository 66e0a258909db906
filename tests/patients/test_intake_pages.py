"""Intakes through the API and the admin: list, add, re-confirm, send the link; roles and scoping."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.db.models import F
from django.urls import reverse
from rest_framework.test import APIClient

from clinic.models import AuditEvent
from patients.models import Intake, PatientLink
from tests.factories import IntakeFactory, PatientFactory

pytestmark = pytest.mark.django_db


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def patient(clinic_a):
    return PatientFactory(clinic=clinic_a, given_name="Maya", family_name="Okafor", email="maya@mail.example")


# --- API ----------------------------------------------------------------------------------------


def test_the_api_adds_and_lists_intakes_without_overwriting(patient, coordinator):
    client = api_for(coordinator)
    url = f"/api/v1/patients/{patient.pk}/intakes/"
    assert client.post(url, {"answers": {"pregnant": False}}, format="json").status_code == 201
    response = client.post(url, {"answers": {"pregnant": True, "isotretinoin_last_dose": "2025-12-01"}},
                           format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["recorded_by"] == coordinator.pk
    listed = client.get(url).json()
    assert [i["answers"].get("pregnant") for i in listed] == [True, False]


@pytest.mark.parametrize(
    ("answers", "fact"),
    [({"smoker": True}, "smoker"), ({"pregnant": "maybe"}, "pregnant"),
     ({"recent_peel_date": "2999-01-01"}, "recent_peel_date")],
)
def test_bad_answers_get_400_naming_the_fact_and_store_nothing(patient, clinician, answers, fact):
    response = api_for(clinician).post(f"/api/v1/patients/{patient.pk}/intakes/", {"answers": answers},
                                       format="json")
    assert response.status_code == 400
    assert fact in response.json()["answers"]
    assert not Intake.objects.exists()


def test_an_auditor_reads_intakes_but_cannot_add_one(patient, auditor):
    IntakeFactory(patient=patient)
    client = api_for(auditor)
    assert len(client.get(f"/api/v1/patients/{patient.pk}/intakes/").json()) == 1
    response = client.post(f"/api/v1/patients/{patient.pk}/intakes/", {"answers": {}}, format="json")
    assert response.status_code == 403
    assert Intake.objects.count() == 1


def test_another_clinic_gets_404_for_intakes(patient, clinician_b):
    IntakeFactory(patient=patient)
    client = api_for(clinician_b)
    assert client.get(f"/api/v1/patients/{patient.pk}/intakes/").status_code == 404
    assert client.post(f"/api/v1/patients/{patient.pk}/intakes/", {"answers": {}},
                       format="json").status_code == 404
    assert Intake.objects.count() == 1


# --- admin --------------------------------------------------------------------------------------


def add_url(patient) -> str:
    return reverse("admin:patients_patient_intake_add", args=[patient.pk])


def test_staff_enter_an_intake_in_a_generated_form(client, coordinator, patient):
    client.force_login(coordinator)
    page = client.get(add_url(patient)).content.decode()
    assert "Pregnant?" in page
    assert 'name="isotretinoin_last_dose"' in page
    response = client.post(add_url(patient), {"pregnant": "yes", "hsv_history": "no",
                                              "isotretinoin_last_dose": "2025-11-01"})
    assert response.status_code == 302
    intake = Intake.objects.get()
    assert intake.answers == {"pregnant": True, "hsv_history": False, "isotretinoin_last_dose": "2025-11-01"}
    assert intake.recorded_by == coordinator


def test_the_admin_form_shows_a_clear_error_and_stores_nothing(client, coordinator, patient):
    client.force_login(coordinator)
    response = client.post(add_url(patient), {"recent_filler_date": "2999-01-01"})
    assert response.status_code == 400
    assert "cannot be in the future" in response.content.decode()
    assert not Intake.objects.exists()


def test_the_patient_page_shows_intake_history_and_reconfirming_leaves_history(client, clinician, patient):
    intake = IntakeFactory(patient=patient, answers={"pregnant": False}, recorded_by=clinician)
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_patient_change", args=[patient.pk])).content.decode()
    assert "Intake history" in page
    intake_url = reverse("admin:patients_patient_intake", args=[patient.pk, intake.pk])
    assert intake_url in page
    detail = client.get(intake_url).content.decode()
    assert "Pregnant?" in detail
    assert AuditEvent.objects.filter(action="intake.view", object_id=str(intake.pk)).exists()
    assert client.post(intake_url).status_code == 302
    intake.refresh_from_db()
    assert intake.confirmed_by == clinician
    assert intake.history.count() == 2


def test_send_intake_link_from_the_patient_page_and_the_list_action(client, coordinator, patient, clinic_a):
    no_email = PatientFactory(clinic=clinic_a, email="")
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_send_intake_link", args=[patient.pk]))
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    # A link sent minutes ago is not sent again unasked (test_intake_link_tracking): this one went out earlier.
    PatientLink.objects.update(created_at=F("created_at") - dt.timedelta(minutes=11))
    client.post(reverse("admin:patients_patient_changelist"),
                {"action": "send_intake_links", "_selected_action": [patient.pk, no_email.pk]})
    assert len(mail.outbox) == 2
    assert PatientLink.objects.filter(patient=patient, purpose="intake").count() == 2
    assert not PatientLink.objects.filter(patient=no_email).exists()
    assert client.get(reverse("admin:patients_patient_send_intake_link", args=[patient.pk])).status_code == 405


def test_another_clinic_gets_404_on_intake_pages(client, clinician_b, patient):
    intake = IntakeFactory(patient=patient)
    client.force_login(clinician_b)
    assert client.get(add_url(patient)).status_code == 404
    assert client.post(add_url(patient), {"pregnant": "yes"}).status_code == 404
    assert client.get(reverse("admin:patients_patient_intake", args=[patient.pk, intake.pk])).status_code == 404
    assert client.post(reverse("admin:patients_patient_intake", args=[patient.pk, intake.pk])).status_code == 404
    assert client.post(reverse("admin:patients_patient_send_intake_link", args=[patient.pk])).status_code == 404
    assert Intake.objects.count() == 1
    assert not mail.outbox


def test_an_auditor_cannot_add_or_reconfirm_an_intake(client, auditor, patient):
    intake = IntakeFactory(patient=patient)
    client.force_login(auditor)
    assert client.post(add_url(patient), {"pregnant": "yes"}).status_code == 403
    assert client.post(reverse("admin:patients_patient_intake", args=[patient.pk, intake.pk])).status_code == 403
    intake.refresh_from_db()
    assert intake.confirmed_at is None
