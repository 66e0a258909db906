"""Correcting an email the mail server refused says which failed reminders can now be resent, and links to them."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse

from patients.models import Reminder
from patients.treatments import resendable_after_refusal
from tests.factories import PatientFactory, ReminderFactory, TreatmentFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC)
REFUSED = "550 5.1.1 <maja@typo.example>: user unknown"


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def patient(clinic_a):
    with time_machine.travel(NOW - dt.timedelta(days=2), tick=False):
        return PatientFactory(clinic=clinic_a, email="maja@typo.example", given_name="Maja", family_name="Berg")


def failed(patient, error: str, **kwargs) -> Reminder:
    treatment = TreatmentFactory(screening__patient=patient, ended_at=NOW - dt.timedelta(days=1))
    return ReminderFactory(treatment=treatment, due_at=NOW - dt.timedelta(hours=2), status=Reminder.Status.FAILED,
                           last_error=error, last_attempt_at=NOW - dt.timedelta(hours=2), **kwargs)


def save_email(client, patient, email: str):
    data = {"reference": patient.reference, "given_name": patient.given_name, "family_name": patient.family_name,
            "date_of_birth": patient.date_of_birth.isoformat(), "email": email, "phone": "",
            "preferred_language": "en", "time_zone": patient.time_zone, "fitzpatrick_type": "",
            "reminder_consent": "on", "consent_at_0": "2026-01-05", "consent_at_1": "10:30", "consent_source": "paper"}
    return client.post(reverse("admin:patients_patient_change", args=[patient.pk]), data)


def test_the_save_links_to_the_reminders_the_old_address_lost(client, patient, coordinator):
    refused = [failed(patient, REFUSED), failed(patient, "550 No such user")]
    failed(patient, "554 5.7.1 Message rejected as spam")  # the clinic's side: not the address
    client.force_login(coordinator)

    response = save_email(client, patient, "maja@mail.example")

    assert response.status_code == 302
    (warning,) = [str(m) for m in get_messages(response.wsgi_request) if "failed because the old address was refused" in str(m)]
    assert warning.startswith("2 reminders failed because the old address was refused: <a href=")
    url = html.unescape(re.search(r'href="([^"]+)"', warning).group(1))
    assert url.startswith(reverse("admin:patients_reminder_changelist"))
    listed = client.get(url)
    assert listed.status_code == 200
    assert {row.pk for row in listed.context["cl"].result_list} == {row.pk for row in refused}


def test_the_linked_list_resends_them_in_one_action(client, patient, coordinator):
    reminder = failed(patient, REFUSED)
    client.force_login(coordinator)
    save_email(client, patient, "maja@mail.example")
    client.post(reverse("admin:patients_reminder_changelist") + f"?id__in={reminder.pk}",
                {"action": "resend_selected", "_selected_action": [reminder.pk]})
    reminder.refresh_from_db()
    assert reminder.status == Reminder.Status.SCHEDULED


def test_nothing_is_said_when_the_email_did_not_change_or_nothing_was_refused(client, patient, coordinator):
    failed(patient, "554 5.7.1 Message rejected as spam")
    client.force_login(coordinator)
    response = save_email(client, patient, "maja@mail.example")
    assert not [m for m in get_messages(response.wsgi_request) if "failed because the old address was refused" in str(m)]


def test_only_rows_refused_for_an_address_the_patient_no_longer_has(patient):
    reminder = failed(patient, REFUSED)
    assert resendable_after_refusal(patient) == []  # still the refused address
    patient.email = "maja@mail.example"
    patient.save()
    assert resendable_after_refusal(patient) == [reminder]
    patient.reminder_consent = False
    patient.save()
    assert resendable_after_refusal(patient) == []  # no email can reach them at all
