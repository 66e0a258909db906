"""The patient pages behind reminder links: "I did this" and one-click unsubscribe."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from clinic.models import AuditEvent
from patients import reminders
from patients.emails import reminder_links
from patients.models import Reminder
from patients.reminders import SendOutcome
from tests.factories import ReminderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reminder(clinic_a):
    return ReminderFactory(treatment__screening__patient__clinic=clinic_a)


def path_of(url: str) -> str:
    return url.split("127.0.0.1:8000", 1)[1]


def test_it_asks_before_recording_a_step_as_done_and_records_it_once(reminder):
    url = path_of(reminder_links(reminder=reminder).done)
    client = Client()
    page = client.get(url)
    assert page.status_code == 200
    assert b"Yes, I did this" in page.content
    reminder.refresh_from_db()
    assert reminder.done_at is None  # a GET (a mail scanner, a preview) changes nothing
    assert client.post(url, {"csrfmiddlewaretoken": page.context["csrf_token"]}).status_code == 200
    reminder.refresh_from_db()
    done_at = reminder.done_at
    assert done_at is not None
    again = client.post(url, {"csrfmiddlewaretoken": page.context["csrf_token"]})
    assert b"Already noted" in again.content
    reminder.refresh_from_db()
    assert reminder.done_at == done_at


def test_it_protects_the_done_form_against_cross_site_posts(reminder):
    url = path_of(reminder_links(reminder=reminder).done)
    response = Client(enforce_csrf_checks=True).post(url)
    assert response.status_code == 403
    reminder.refresh_from_db()
    assert reminder.done_at is None


def test_it_unsubscribes_with_a_one_click_post_from_the_mail_client(reminder, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    url = path_of(reminder_links(reminder=reminder).unsubscribe)
    client = Client(enforce_csrf_checks=True)  # a mail client has no CSRF cookie or token
    assert b"Stop reminder emails?" in client.get(url).content
    patient = reminder.treatment.patient
    patient.refresh_from_db()
    assert patient.opted_out_at is None
    response = client.post(url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert b"You are unsubscribed" in response.content
    patient.refresh_from_db()
    assert patient.opted_out_at is not None
    event = AuditEvent.objects.get(action="patient.unsubscribe")
    assert event.detail["via"] == "one-click"
    assert b"already unsubscribed" in client.get(url).content
    # The pending reminder is checked at send time and skipped.
    Reminder.objects.filter(pk=reminder.pk).update(due_at=reminder.due_at - dt.timedelta(minutes=1))
    reminders.claim_due(now=reminder.due_at, limit=1)
    assert reminders.send_reminder(reminder_id=reminder.pk) == SendOutcome.SKIPPED


def test_it_shows_a_friendly_page_for_a_tampered_link(reminder):
    url = path_of(reminder_links(reminder=reminder).unsubscribe)
    response = Client().post(url[:-3] + "xx/", "List-Unsubscribe=One-Click",
                             content_type="application/x-www-form-urlencoded")
    assert response.status_code == 410
    assert b"Nothing has been changed" in response.content
    reminder.treatment.patient.refresh_from_db()
    assert reminder.treatment.patient.opted_out_at is None


def test_it_shows_the_step_time_on_the_patients_clock(clinic_a):
    reminder = ReminderFactory(
        treatment__screening__patient__clinic=clinic_a, treatment__screening__patient__time_zone="Europe/Berlin",
        occurs_at=dt.datetime(2026, 11, 22, 19, 0, tzinfo=dt.UTC),
    )
    page = Client().get(path_of(reminder_links(reminder=reminder).done))
    assert "Sunday 22 November, 20:00" in page.content.decode()
