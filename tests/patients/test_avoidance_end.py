"""An avoidance tells the patient until when, on their own clock, and is acknowledged ("Got it"), not done."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from patients.emails import build_reminder_email, reminder_links
from patients.treatments import timeline_for
from tests.factories import PatientFactory, ReminderFactory, StepFactory, TreatmentFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
# 00:30 on Tuesday 5 May in Berlin (the patient), still Monday 4 May in London (the clinic) and in UTC:
# day 5 is Sunday 10 May on the patient's clock, Saturday 9 May on the other two.
ENDED = dt.datetime(2026, 5, 4, 22, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(ENDED + dt.timedelta(hours=1), tick=False):
        yield


def reminder_for(clinic, *, kind="avoidance", language="en"):
    patient = PatientFactory(clinic=clinic, given_name="Maja", preferred_language=language, time_zone="Europe/Berlin")
    treatment = TreatmentFactory(screening__patient=patient, started_at=ENDED - dt.timedelta(hours=1), ended_at=ENDED)
    avoidance = {"avoid_until_day": 5} if kind == "avoidance" else {}
    step = StepFactory(
        version=treatment.protocol_version, kind=kind, title="No retinoids, acids or exfoliation",
        patient_text="Do not use retinol or exfoliating acids.", day=0, local_time=dt.time(18, 0), **avoidance,
    )
    occurs_at = dt.datetime(2026, 5, 5, 16, 0, tzinfo=UTC)  # day 0 at 18:00 in Berlin
    return ReminderFactory(treatment=treatment, step=step, occurs_at=occurs_at, due_at=occurs_at)


def parts(reminder) -> tuple[str, str]:
    message = build_reminder_email(reminder=reminder, links=reminder_links(reminder=reminder))
    [(html, _mimetype)] = message.alternatives
    return message.body, html


def test_the_email_says_until_when_on_the_patients_clock(clinic_a):
    text, html = parts(reminder_for(clinic_a))
    assert "This applies until Sunday 10 May (day 5)." in text
    assert "This applies <strong>until Sunday 10 May (day 5)</strong>." in html


def test_the_german_email_says_it_in_german(clinic_a):
    text, html = parts(reminder_for(clinic_a, language="de"))
    assert "Das gilt bis Sonntag, 10. Mai (Tag 5)." in text
    assert "Das gilt <strong>bis Sonntag, 10. Mai (Tag 5)</strong>." in html


def test_a_step_to_do_names_no_end(clinic_a):
    text, html = parts(reminder_for(clinic_a, kind="home_application"))
    assert "applies until" not in text and "applies" not in html


@pytest.mark.parametrize(("kind", "language", "prompt", "button", "not_said"), [
    ("avoidance", "en", "Got it? Let us know with one tap:", ">Got it</a>", "I did this"),
    ("avoidance", "de", "Verstanden? Sagen Sie uns mit einem Tipp Bescheid:", ">Verstanden</a>", "Erledigt"),
    ("home_application", "en", "Done it? Let us know with one tap:", ">I did this</a>", "Got it"),
    ("home_application", "de", "Erledigt? Sagen Sie uns mit einem Tipp Bescheid:", ">Erledigt</a>", "Verstanden"),
])
def test_the_link_is_worded_for_the_kind_of_step(clinic_a, kind, language, prompt, button, not_said):
    reminder = reminder_for(clinic_a, kind=kind, language=language)
    text, html = parts(reminder)
    assert prompt in text
    assert button in html
    assert not_said not in text and not_said not in html
    assert reminder_links(reminder=reminder).done in text


def test_the_timeline_shows_the_end_of_the_avoidance(client, clinic_a, coordinator):
    reminder = reminder_for(clinic_a)
    [entry] = timeline_for(treatment=reminder.treatment)
    assert entry.avoid_until == dt.date(2026, 5, 10)

    client.force_login(coordinator)
    body = client.get(reverse("admin:patients_treatment_change", args=[reminder.treatment_id])).content.decode()
    assert "until Sunday 10 May 2026 (day 5)" in body


def test_the_patient_confirms_an_avoidance_as_read(client, clinic_a):
    reminder = reminder_for(clinic_a)
    url = reminder_links(reminder=reminder).done.split("127.0.0.1:8000", 1)[1]
    patient_client = Client()

    page = patient_client.get(url)
    assert b"Got it</button>" in page.content and b"I did this" not in page.content
    assert b"until Sunday 10 May (day 5)" in page.content
    thanks = patient_client.post(url, {"csrfmiddlewaretoken": page.context["csrf_token"]})
    assert b"We have noted that you read this step" in thanks.content

    [entry] = timeline_for(treatment=reminder.treatment)
    assert entry.state_label == "Read (patient confirmed)"
