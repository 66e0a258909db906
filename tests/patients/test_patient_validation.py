"""A patient's birth date and reminder consent: refused when they make no sense, in the model, the admin and the API."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from clinic.models import AuditEvent
from patients.models import Patient
from tests.factories import ClinicFactory, PatientFactory

pytestmark = pytest.mark.django_db
# 13:00 UTC: already 16 June in Auckland, still 15 June in London.
NOW = dt.datetime(2026, 6, 15, 13, tzinfo=dt.UTC)


def errors_of(patient: Patient) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as raised:
        patient.full_clean()
    return raised.value.message_dict


# --- the model ------------------------------------------------------------------------------------------


def test_it_requires_when_and_how_consent_to_reminders_was_given(clinic_a):
    errors = errors_of(PatientFactory.build(clinic=clinic_a, reminder_consent=True, consent_at=None, consent_source=""))
    assert "Say when the patient consented" in errors["consent_at"][0]
    assert errors["consent_source"] == ["Say how the patient gave consent."]


def test_a_patient_without_consent_needs_neither(clinic_a):
    PatientFactory.build(clinic=clinic_a, reminder_consent=False, consent_at=None, consent_source="").full_clean()


@time_machine.travel(NOW, tick=False)
def test_it_refuses_consent_dated_in_the_future(clinic_a):
    errors = errors_of(PatientFactory.build(clinic=clinic_a, consent_at=NOW + dt.timedelta(days=1)))
    assert errors["consent_at"] == ["Consent cannot be dated in the future."]
    PatientFactory.build(clinic=clinic_a, consent_at=NOW + dt.timedelta(minutes=2)).full_clean()  # a browser's fast clock


@time_machine.travel(NOW, tick=False)
def test_it_refuses_a_date_of_birth_after_the_clinics_today():
    auckland = ClinicFactory(time_zone="Pacific/Auckland")
    london = ClinicFactory(time_zone="Europe/London")
    PatientFactory.build(clinic=auckland, date_of_birth=dt.date(2026, 6, 16)).full_clean()  # born today, there
    errors = errors_of(PatientFactory.build(clinic=london, date_of_birth=dt.date(2026, 6, 16)))
    assert errors["date_of_birth"] == ["The date of birth cannot be after today (2026-06-15)."]
    assert "date_of_birth" in errors_of(PatientFactory.build(clinic=auckland, date_of_birth=dt.date(2090, 1, 1)))


def test_it_refuses_a_date_of_birth_before_1900(clinic_a):
    errors = errors_of(PatientFactory.build(clinic=clinic_a, date_of_birth=dt.date(1899, 12, 31)))
    assert errors["date_of_birth"] == ["The date of birth cannot be before 1900; check the year."]
    PatientFactory.build(clinic=clinic_a, date_of_birth=dt.date(1900, 1, 1)).full_clean()


# --- the admin ---------------------------------------------------------------------------------------------


def admin_form(clinic, **overrides) -> dict:
    data = {"clinic": clinic.pk, "given_name": "Maya", "family_name": "Okafor", "date_of_birth": "1991-03-14",
            "email": "maya@mail.example", "phone": "", "preferred_language": "en", "time_zone": "",
            "fitzpatrick_type": "", "reference": "", "consent_at_0": "", "consent_at_1": "", "consent_source": ""}
    data.update(overrides)
    return data


def field_errors(response, name: str) -> list[str]:
    return list(response.context["adminform"].form.errors.get(name, []))


def test_the_admin_refuses_consent_without_when_and_how_and_saves_nothing(client, clinic_a, coordinator):
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_add"), admin_form(clinic_a, reminder_consent="on"))
    assert response.status_code == 200
    assert "Say when the patient consented" in field_errors(response, "consent_at")[0]
    assert field_errors(response, "consent_source") == ["Say how the patient gave consent."]
    assert not Patient.objects.exists()
    assert not AuditEvent.objects.filter(action="patient.create").exists()


def test_the_admin_records_consent_given_with_when_and_how(client, clinic_a, coordinator):
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_add"), admin_form(
        clinic_a, reminder_consent="on", consent_at_0="2026-01-05", consent_at_1="10:30", consent_source="paper",
    ))
    assert response.status_code == 302
    patient = Patient.objects.get()
    assert patient.reminder_consent and patient.consent_source == "paper" and patient.consent_at is not None


@pytest.mark.parametrize("date_of_birth", ["2090-01-01", "1850-06-01"])
def test_the_admin_refuses_an_impossible_date_of_birth(client, clinic_a, coordinator, date_of_birth):
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_add"), admin_form(clinic_a, date_of_birth=date_of_birth))
    assert response.status_code == 200
    assert field_errors(response, "date_of_birth")
    assert not Patient.objects.exists()


def test_the_admin_refuses_ticking_consent_on_an_existing_patient_without_when_and_how(client, clinic_a, coordinator):
    patient = PatientFactory(clinic=clinic_a, reminder_consent=False, consent_at=None, consent_source="")
    client.force_login(coordinator)
    response = client.post(reverse("admin:patients_patient_change", args=[patient.pk]),
                           admin_form(clinic_a, given_name=patient.given_name, reminder_consent="on"))
    assert response.status_code == 200
    assert field_errors(response, "consent_at")
    patient.refresh_from_db()
    assert not patient.reminder_consent


# --- the API ---------------------------------------------------------------------------------------------------


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def new_patient(clinic, **overrides) -> dict:
    data = {"clinic": clinic.pk, "given_name": "Maya", "family_name": "Okafor", "date_of_birth": "1991-03-14",
            "email": "maya@mail.example", "reminder_consent": False}
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"reminder_consent": True, "consent_source": "online"}, "consent_at"),
        ({"reminder_consent": True, "consent_at": "2026-01-05T10:30:00Z"}, "consent_source"),
        ({"consent_at": "2090-01-01T10:00:00Z"}, "consent_at"),
        ({"date_of_birth": "2090-01-01"}, "date_of_birth"),
        ({"date_of_birth": "1850-06-01"}, "date_of_birth"),
    ],
)
def test_the_api_refuses_what_the_model_refuses(clinic_a, coordinator, overrides, field):
    response = api_for(coordinator).post("/api/v1/patients/", new_patient(clinic_a, **overrides), format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Patient.objects.exists()


def test_the_api_records_consent_given_with_when_and_how(clinic_a, coordinator):
    response = api_for(coordinator).post("/api/v1/patients/", new_patient(
        clinic_a, reminder_consent=True, consent_at="2026-01-05T10:30:00Z", consent_source="online",
    ), format="json")
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    ("change", "field"),
    [({"reminder_consent": True}, "consent_at"), ({"date_of_birth": "2090-01-01"}, "date_of_birth")],
)
def test_an_api_update_is_held_to_the_same_rules(clinic_a, coordinator, change, field):
    patient = PatientFactory(clinic=clinic_a, reminder_consent=False, consent_at=None, consent_source="online")
    response = api_for(coordinator).patch(f"/api/v1/patients/{patient.pk}/", change, format="json")
    assert response.status_code == 400
    assert field in response.json()
    patient.refresh_from_db()
    assert not patient.reminder_consent
    assert patient.date_of_birth == dt.date(1985, 4, 12)


def test_an_api_update_may_withdraw_consent_and_leave_the_rest(clinic_a, coordinator):
    patient = PatientFactory(clinic=clinic_a)
    client = api_for(coordinator)
    assert client.patch(f"/api/v1/patients/{patient.pk}/", {"reminder_consent": False}, format="json").status_code == 200
    assert client.patch(f"/api/v1/patients/{patient.pk}/", {"phone": "+44 20 7946 0000"}, format="json").status_code == 200
