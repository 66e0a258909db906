"""Renewed consent after an unsubscribe: the service, the reminders it lets out again, the admin and the API."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from clinic.models import AuditEvent
from patients import treatments
from patients.consent import renew_consent
from patients.models import Patient
from patients.reminders import send_due_inline, unsubscribe
from tests.factories import PatientFactory, treatable_patient

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC)
OPTED_OUT_AT = NOW - dt.timedelta(days=3)
# Day 1 and day 3 after a procedure ending at NOW - 30 minutes, 10:00 in the clinic's zone (UTC).
STEPS = [{"title": "Serum", "day": 1, "local_time": dt.time(10, 0)},
         {"title": "Check", "day": 3, "local_time": dt.time(10, 0)}]


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def opted_out(clinic_a, frozen) -> Patient:
    patient = PatientFactory(clinic=clinic_a, consent_at=NOW - dt.timedelta(days=30))
    unsubscribe(patient=patient, now=OPTED_OUT_AT)
    return patient


def assert_unchanged(patient: Patient) -> None:
    patient.refresh_from_db()
    assert patient.opted_out_at == OPTED_OUT_AT
    assert not AuditEvent.objects.filter(action="patient.consent_renewed").exists()


# --- the service -------------------------------------------------------------------------


def test_it_clears_the_opt_out_records_the_consent_and_keeps_the_history(opted_out, coordinator):
    renew_consent(patient=opted_out, consent_at=NOW - dt.timedelta(hours=1), consent_source="verbal",
                  recorded_by=coordinator)

    opted_out.refresh_from_db()
    assert opted_out.opted_out_at is None
    assert (opted_out.reminder_consent, opted_out.consent_at, opted_out.consent_source) == (
        True, NOW - dt.timedelta(hours=1), "verbal")
    assert opted_out.may_receive_reminders
    after, before = list(opted_out.history.order_by("-history_id")[:2])
    assert before.opted_out_at == OPTED_OUT_AT and after.opted_out_at is None
    event = AuditEvent.objects.get(action="patient.consent_renewed")
    assert (event.actor, event.clinic, event.object_id) == (coordinator, opted_out.clinic, str(opted_out.pk))
    assert event.detail["consent_source"] == "verbal"
    assert event.detail["opted_out_at"].startswith(OPTED_OUT_AT.date().isoformat())


@pytest.mark.parametrize(
    ("consent_at", "consent_source", "field"),
    [
        (OPTED_OUT_AT - dt.timedelta(minutes=1), "paper", "consent_at"),
        (NOW + dt.timedelta(days=1), "paper", "consent_at"),
        (None, "paper", "consent_at"),
        (NOW, "", "consent_source"),
        (NOW, "fax", "consent_source"),
    ],
)
def test_it_refuses_consent_from_before_the_opt_out_in_the_future_or_without_how(
    opted_out, coordinator, consent_at, consent_source, field
):
    with pytest.raises(ValidationError) as refused:
        renew_consent(patient=opted_out, consent_at=consent_at, consent_source=consent_source, recorded_by=coordinator)
    assert set(refused.value.message_dict) == {field}
    assert_unchanged(opted_out)


def test_it_refuses_a_patient_who_has_not_unsubscribed(clinic_a, coordinator, frozen):
    patient = PatientFactory(clinic=clinic_a, reminder_consent=False, consent_at=None, consent_source="")
    with pytest.raises(ValidationError, match="has not unsubscribed"):
        renew_consent(patient=patient, consent_at=NOW, consent_source="paper", recorded_by=coordinator)
    patient.refresh_from_db()
    assert not patient.reminder_consent


# --- the reminders -------------------------------------------------------------------------


def test_later_reminders_go_out_again_and_those_skipped_meanwhile_stay_skipped_until_resent(clinic_a, clinician, coordinator,
                                                                               settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(NOW, tick=False):
        patient, version, screening = treatable_patient(clinic_a, steps=STEPS)
        treatment = treatments.record_treatment(
            patient=patient, protocol_version=version, screening=screening, clinician=clinician,
            started_at=NOW - dt.timedelta(hours=1), ended_at=NOW - dt.timedelta(minutes=30), areas="face",
        )
        unsubscribe(patient=patient)
    day_1, day_3 = treatment.reminders.order_by("due_at")
    with time_machine.travel(NOW + dt.timedelta(days=1, hours=1), tick=False):
        send_due_inline()
        # Ticking the box again on the patient's form does not undo the unsubscribe ...
        patient.refresh_from_db()
        patient.consent_at = NOW + dt.timedelta(days=1)
        patient.save()
    with time_machine.travel(NOW + dt.timedelta(days=2), tick=False):
        renew_consent(patient=patient, consent_at=NOW + dt.timedelta(days=2), consent_source="paper",
                      recorded_by=coordinator)
    with time_machine.travel(NOW + dt.timedelta(days=3, hours=1), tick=False):
        send_due_inline()

    day_1.refresh_from_db()
    day_3.refresh_from_db()
    assert day_1.status == "skipped" and "unsubscribed" in day_1.last_error
    assert day_3.status == "sent"
    assert [message.to for message in mail.outbox] == [[patient.email]]
    # ... and staff may still resend a skipped one by hand, now that it can reach the patient.
    with time_machine.travel(NOW + dt.timedelta(days=3, hours=2), tick=False):
        assert treatments.resend_reminder(reminder=day_1, by=coordinator).status == "scheduled"


# --- the admin -------------------------------------------------------------------------------


def renew_url(patient: Patient) -> str:
    return reverse("admin:patients_patient_renew_consent", args=[patient.pk])


def test_the_patient_page_offers_renewed_consent_to_staff_who_edit_patients(client, opted_out, coordinator, auditor):
    client.force_login(coordinator)
    page = client.get(reverse("admin:patients_patient_change", args=[opted_out.pk]))
    assert renew_url(opted_out).encode() in page.content
    assert "use &quot;Record renewed consent…&quot;" in page.content.decode()

    client.force_login(auditor)
    page = client.get(reverse("admin:patients_patient_change", args=[opted_out.pk]))
    assert renew_url(opted_out).encode() not in page.content
    assert client.post(renew_url(opted_out), {"consent_at": "2026-05-04T09:00", "consent_source": "paper"}).status_code == 403
    assert_unchanged(opted_out)


def test_the_admin_records_renewed_consent(client, opted_out, coordinator):
    client.force_login(coordinator)
    assert client.get(renew_url(opted_out)).status_code == 200
    response = client.post(renew_url(opted_out), {"consent_at": "2026-05-04T09:00", "consent_source": "online"})
    assert response.status_code == 302
    opted_out.refresh_from_db()
    assert opted_out.opted_out_at is None
    # Typed on the clinic's clock (Europe/London, an hour ahead of UTC in May).
    assert (opted_out.consent_at, opted_out.consent_source) == (NOW.replace(hour=8, minute=0), "online")
    assert AuditEvent.objects.filter(action="patient.consent_renewed", actor=coordinator).exists()


def test_the_admin_refuses_consent_from_before_the_unsubscribe_and_changes_nothing(client, opted_out, coordinator):
    client.force_login(coordinator)
    response = client.post(renew_url(opted_out), {"consent_at": "2026-05-01T10:29", "consent_source": "paper"})
    assert response.status_code == 400
    assert "unsubscribed on 2026-05-01 09:30 UTC" in response.context["form"].errors["consent_at"][0]
    response = client.post(renew_url(opted_out), {"consent_at": "2026-05-04T09:00", "consent_source": ""})
    assert response.status_code == 400
    assert response.context["form"].errors["consent_source"]
    assert_unchanged(opted_out)


# --- the API -------------------------------------------------------------------------------


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def renew_path(patient: Patient) -> str:
    return f"/api/v1/patients/{patient.pk}/renew-consent/"


def test_the_api_records_renewed_consent(opted_out, coordinator):
    response = api_for(coordinator).post(
        renew_path(opted_out), {"consent_at": "2026-05-04T09:00:00Z", "consent_source": "paper"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["opted_out_at"] is None
    assert response.json()["reminder_consent"] is True
    opted_out.refresh_from_db()
    assert opted_out.may_receive_reminders


def test_the_api_answers_bad_renewed_consent_with_field_errors_and_changes_nothing(opted_out, coordinator):
    client = api_for(coordinator)
    response = client.post(renew_path(opted_out), {"consent_source": "fax"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"consent_at", "consent_source"}
    response = client.post(
        renew_path(opted_out), {"consent_at": "2026-04-30T09:00:00Z", "consent_source": "paper"}, format="json"
    )
    assert response.status_code == 400
    assert "unsubscribed on" in response.json()["consent_at"][0]
    assert_unchanged(opted_out)


def test_the_api_refuses_renewed_consent_to_auditors_and_for_patients_still_subscribed(clinic_a, opted_out, coordinator,
                                                                                       auditor):
    body = {"consent_at": "2026-05-04T09:00:00Z", "consent_source": "paper"}
    assert api_for(auditor).post(renew_path(opted_out), body, format="json").status_code == 403
    assert_unchanged(opted_out)
    subscribed = PatientFactory(clinic=clinic_a)
    response = api_for(coordinator).post(renew_path(subscribed), body, format="json")
    assert response.status_code == 400
    assert "has not unsubscribed" in response.json()["non_field_errors"][0]
