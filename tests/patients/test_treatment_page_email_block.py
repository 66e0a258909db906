"""The treatment page says when no reminder email can reach the patient, and offers no resend that would fail."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from patients.models import Reminder
from patients.reminders import unsubscribe
from patients.treatments import record_treatment
from tests.factories import treatable_patient
from tests.patients.conftest import NOW, TWO_EVENING_STEPS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_at_now")]


@pytest.fixture
def treatment(clinic_a, clinician):
    patient, version, screening = treatable_patient(clinic_a, steps=TWO_EVENING_STEPS)
    treatment = record_treatment(patient=patient, protocol_version=version, screening=screening, clinician=clinician,
                                 started_at=NOW - dt.timedelta(hours=1), ended_at=NOW - dt.timedelta(minutes=30),
                                 areas="full face")
    # One reminder already went out, so the page would offer to resend it.
    Reminder.objects.filter(pk=treatment.reminders.order_by("due_at").first().pk).update(
        status=Reminder.Status.SENT, sent_at=NOW, attempts=1)
    return treatment


def _page(client, treatment) -> str:
    return client.get(reverse("admin:patients_treatment_change", args=[treatment.pk])).content.decode()


def test_a_patient_who_can_receive_emails_gets_no_warning_and_a_resend(client, coordinator, treatment):
    client.force_login(coordinator)
    body = _page(client, treatment)
    assert 'id="reminders-blocked"' not in body
    assert ">Resend</button>" in body


def test_after_the_patient_unsubscribed_the_page_says_so_and_offers_no_resend(client, coordinator, treatment):
    unsubscribe(patient=treatment.patient, now=NOW)
    client.force_login(coordinator)
    body = _page(client, treatment)
    assert 'id="reminders-blocked"' in body
    assert "The patient unsubscribed on 2026-05-04 09:30 UTC." in body
    assert ">Resend</button>" not in body
    assert ">Cancel</button>" in body  # pending ones may still be cancelled


@pytest.mark.parametrize(("change", "reason"), [
    ({"reminder_consent": False}, "has not consented"),
    ({"email": ""}, "has no email address"),
])
def test_no_consent_or_no_address_is_said_too(client, coordinator, treatment, change, reason):
    type(treatment.patient).objects.filter(pk=treatment.patient_id).update(**change)
    client.force_login(coordinator)
    assert reason in _page(client, treatment)
