"""Patients: duplicate detection on create, the API and admin pages, and clinic scoping."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from clinic.models import AuditEvent, Role
from patients.models import Patient
from patients.patient_records import find_duplicates
from tests.factories import MembershipFactory, PatientFactory

pytestmark = pytest.mark.django_db


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def existing(clinic_a):
    return PatientFactory(clinic=clinic_a, given_name="Maya", family_name="Okafor", date_of_birth=dt.date(1991, 3, 14),
                          email="maya@mail.example")


def new_patient(clinic, **overrides) -> dict:
    data = {"clinic": clinic.pk, "given_name": "Maya", "family_name": "Okafor", "date_of_birth": "1991-03-14",
            "email": "", "preferred_language": "en", "reminder_consent": False}
    data.update(overrides)
    return data


# --- the service ---------------------------------------------------------------------------


def test_it_finds_the_same_name_and_birth_date_or_the_same_email_in_the_same_clinic(existing, clinic_a, clinic_b):
    same_name = find_duplicates(clinic=clinic_a, given_name=" maya ", family_name="OKAFOR",
                                date_of_birth=dt.date(1991, 3, 14))
    same_email = find_duplicates(clinic=clinic_a, given_name="M.", family_name="O.", date_of_birth=dt.date(2000, 1, 1),
                                 email="MAYA@mail.example")
    assert same_name == [existing]
    assert same_email == [existing]
    assert find_duplicates(clinic=clinic_a, given_name="Maya", family_name="Okafor",
                           date_of_birth=dt.date(1991, 3, 15)) == []
    assert find_duplicates(clinic=clinic_b, given_name="Maya", family_name="Okafor",
                           date_of_birth=dt.date(1991, 3, 14), email="maya@mail.example") == []


def test_an_empty_email_matches_nobody(clinic_a):
    PatientFactory(clinic=clinic_a, email="")
    assert find_duplicates(clinic=clinic_a, given_name="X", family_name="Y", date_of_birth=dt.date(2000, 1, 1),
                           email="") == []


# --- API ---------------------------------------------------------------------------------------------


def test_the_api_returns_400_with_the_duplicates_id_unless_confirmed(existing, clinic_a, coordinator):
    client = api_for(coordinator)
    response = client.post("/api/v1/patients/", new_patient(clinic_a), format="json")
    assert response.status_code == 400
    assert response.json()["duplicate_of"] == [existing.pk]
    assert Patient.objects.count() == 1
    confirmed = client.post("/api/v1/patients/", new_patient(clinic_a, confirm_duplicate=True), format="json")
    assert confirmed.status_code == 201, confirmed.json()
    assert Patient.objects.count() == 2
    event = AuditEvent.objects.get(action="patient.create")
    assert event.detail == {"confirmed_duplicate": True}


def test_the_api_accepts_confirm_duplicate_as_a_query_parameter(existing, clinic_a, coordinator):
    response = api_for(coordinator).post("/api/v1/patients/?confirm_duplicate=true", new_patient(clinic_a),
                                         format="json")
    assert response.status_code == 201


def test_the_api_creates_a_new_patient_without_asking(clinic_a, coordinator):
    response = api_for(coordinator).post("/api/v1/patients/", new_patient(clinic_a, time_zone="Europe/Paris"),
                                         format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["time_zone"] == "Europe/Paris"
    assert "confirm_duplicate" not in response.json()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"date_of_birth": "14/03/1991"}, "date_of_birth"),
        ({"email": "not-an-email"}, "email"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"fitzpatrick_type": 7}, "fitzpatrick_type"),
        ({"given_name": ""}, "given_name"),
        ({"reminder_consent": True}, "consent_source"),
    ],
)
def test_bad_patient_input_gets_400_with_field_errors(clinic_a, coordinator, overrides, field):
    response = api_for(coordinator).post("/api/v1/patients/", new_patient(clinic_a, **overrides), format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Patient.objects.exists()


def test_no_one_creates_patients_in_a_clinic_they_do_not_edit(clinic_b, coordinator, auditor):
    assert api_for(coordinator).post("/api/v1/patients/", new_patient(clinic_b), format="json").status_code == 400
    assert api_for(auditor).post("/api/v1/patients/", new_patient(clinic_b), format="json").status_code == 403
    assert not Patient.objects.exists()


def test_the_api_shows_only_the_users_clinics_patients(existing, clinic_b, clinician_b):
    theirs = PatientFactory(clinic=clinic_b)
    client = api_for(clinician_b)
    assert [p["id"] for p in client.get("/api/v1/patients/").json()["results"]] == [theirs.pk]
    assert client.get(f"/api/v1/patients/{existing.pk}/").status_code == 404
    assert client.patch(f"/api/v1/patients/{existing.pk}/", {"given_name": "X"}, format="json").status_code == 404
    existing.refresh_from_db()
    assert existing.given_name == "Maya"


def test_a_duplicate_in_another_clinic_is_neither_found_nor_revealed(existing, clinic_b, clinician_b):
    response = api_for(clinician_b).post("/api/v1/patients/", new_patient(clinic_b, email="maya@mail.example"),
                                         format="json")
    assert response.status_code == 201


def test_a_patient_cannot_be_moved_to_another_clinic(existing, clinic_b, clinic_a, coordinator):
    MembershipFactory(user=coordinator, clinic=clinic_b, role=Role.COORDINATOR)
    response = api_for(coordinator).patch(f"/api/v1/patients/{existing.pk}/", {"clinic": clinic_b.pk},
                                          format="json")
    assert response.status_code == 400
    existing.refresh_from_db()
    assert existing.clinic == clinic_a


def test_reading_a_patient_is_logged(existing, auditor):
    assert api_for(auditor).get(f"/api/v1/patients/{existing.pk}/").status_code == 200
    assert AuditEvent.objects.filter(action="patient.view", actor=auditor, object_id=str(existing.pk)).exists()


# --- admin ---------------------------------------------------------------------------------------------------


def admin_form(clinic, **overrides) -> dict:
    data = {"clinic": clinic.pk, "given_name": "Maya", "family_name": "Okafor", "date_of_birth": "1991-03-14",
            "email": "", "phone": "", "preferred_language": "en", "time_zone": "", "fitzpatrick_type": "",
            "consent_source": "", "reference": ""}
    data.update(overrides)
    return data


def test_the_admin_warns_of_a_duplicate_with_a_link_and_creates_it_once_confirmed(client, existing, clinic_a,
                                                                                   coordinator):
    client.force_login(coordinator)
    url = reverse("admin:patients_patient_add")
    response = client.post(url, admin_form(clinic_a))
    assert response.status_code == 200
    page = response.content.decode()
    assert "may already be on record" in page
    assert f'href="{reverse("admin:patients_patient_change", args=[existing.pk])}"' in page
    assert 'name="confirm_duplicate"' in page
    assert Patient.objects.count() == 1
    confirmed = client.post(url, admin_form(clinic_a, confirm_duplicate="on"))
    assert confirmed.status_code == 302
    assert Patient.objects.count() == 2


def test_the_admin_lists_and_opens_only_the_users_clinics_patients(client, existing, clinic_b, clinician_b):
    theirs = PatientFactory(clinic=clinic_b, given_name="Zed", family_name="Other")
    client.force_login(clinician_b)
    listing = client.get(reverse("admin:patients_patient_changelist")).content.decode()
    assert "Zed" in listing
    assert "Okafor" not in listing
    response = client.get(reverse("admin:patients_patient_change", args=[existing.pk]))
    assert response.status_code in (302, 404)  # the admin redirects "does not exist" to the index
    assert "Okafor" not in response.content.decode()
    assert client.get(reverse("admin:patients_patient_change", args=[theirs.pk])).status_code == 200


def test_opening_a_patient_page_is_logged(client, existing, clinician):
    client.force_login(clinician)
    assert client.get(reverse("admin:patients_patient_change", args=[existing.pk])).status_code == 200
    assert AuditEvent.objects.filter(action="patient.view", actor=clinician, object_id=str(existing.pk)).exists()


def test_the_admin_offers_only_clinics_the_user_edits(client, clinic_a, clinic_b, coordinator):
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_add"), admin_form(clinic_b, given_name="New"))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Patient.objects.exists()


def test_the_admin_never_moves_a_patient_to_another_clinic(client, existing, clinic_a, clinic_b, coordinator):
    MembershipFactory(user=coordinator, clinic=clinic_b, role=Role.COORDINATOR)
    client.force_login(coordinator)
    url = reverse("admin:patients_patient_change", args=[existing.pk])
    response = client.post(url, admin_form(clinic_b, email="maya@mail.example", given_name="Maya R."))
    assert response.status_code == 302
    existing.refresh_from_db()
    assert existing.clinic == clinic_a
    assert existing.given_name == "Maya R."
