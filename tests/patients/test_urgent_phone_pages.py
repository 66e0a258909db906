"""Where a patient is told to call the clinic, the clinic's urgent number is a tap away; without one, the words stay."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.cache import cache
from django.urls import reverse

from patients.emails import build_reminder_email, reminder_links
from patients.links import create_link, token_for
from patients.models import PatientLink
from tests.factories import PatientFactory, ReminderFactory, StepFactory, TreatmentFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 18, 0, tzinfo=dt.UTC)
GOOD = {"erythema": "2", "pain": "3", "pruritus": "1", "applied_as_instructed": "yes", "notes": ""}
NUMBER = "+44 (0)20 7946-0000"
LINK = '<a href="tel:+442079460000">+44 (0)20 7946-0000</a>'


@pytest.fixture(autouse=True)
def setup(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()  # the per-address rate limit of link pages
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def url(clinic_a):
    ended = NOW - dt.timedelta(days=3, hours=6)
    treatment = TreatmentFactory(
        screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended,
    )
    link = create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=3)
    return reverse("patients:link", kwargs={"token": token_for(link)})


def with_number(clinic):
    clinic.urgent_phone = NUMBER
    clinic.save()


def test_the_self_report_page_gives_the_number_to_call_as_a_link(client, clinic_a, url):
    with_number(clinic_a)
    body = client.get(url).content.decode()
    assert f"call Harbour Skin Clinic now on {LINK}; don't wait for a reply." in body.replace("&#x27;", "'")


def test_without_a_number_the_self_report_page_says_what_it_said_and_links_nothing(client, url):
    body = client.get(url).content.decode().replace("&#x27;", "'")
    assert "call Harbour Skin Clinic now; don't wait for a reply." in body
    assert "tel:" not in body


def test_the_thank_you_page_after_a_flagged_problem_gives_the_number(client, clinic_a, url):
    with_number(clinic_a)
    body = client.post(url, {**GOOD, "problem_flagged": "on"}, follow=True).content.decode()
    assert f"call Harbour Skin Clinic now on {LINK}." in body


def test_without_a_number_the_thank_you_page_links_nothing(client, url):
    body = client.post(url, {**GOOD, "problem_flagged": "on"}, follow=True).content.decode()
    assert "call Harbour Skin Clinic now." in body
    assert "tel:" not in body


def reminder_email(clinic, language="en"):
    patient = PatientFactory(clinic=clinic, given_name="Maja", preferred_language=language, time_zone="Europe/Berlin")
    treatment = TreatmentFactory(screening__patient=patient, ended_at=NOW - dt.timedelta(hours=2))
    step = StepFactory(version=treatment.protocol_version, kind="instruction", title="Gentle cleanse tonight")
    occurs_at = NOW + dt.timedelta(hours=1)
    reminder = ReminderFactory(treatment=treatment, step=step, occurs_at=occurs_at, due_at=occurs_at)
    message = build_reminder_email(reminder=reminder, links=reminder_links(reminder=reminder))
    [(html, _)] = message.alternatives
    return message.body, html


def test_the_reminder_email_gives_the_number_in_text_and_as_a_link(clinic_a):
    with_number(clinic_a)
    text, html = reminder_email(clinic_a)
    assert ("If it is urgent (spreading redness, pus, fever or severe pain), call Harbour Skin Clinic now: "
            f"{NUMBER}\n") in text
    assert f"call Harbour Skin Clinic now on {LINK}." in html


def test_the_german_reminder_email_gives_the_number_in_german(clinic_a):
    with_number(clinic_a)
    text, html = reminder_email(clinic_a, language="de")
    urgent = ("In dringenden Fällen (sich ausbreitende Rötung, Eiter, Fieber oder starke Schmerzen) rufen Sie "
              "Harbour Skin Clinic sofort an: ")
    assert f"{urgent}{NUMBER}\n" in text
    assert f"{urgent}{LINK}." in html.replace("&auml;", "ä")


@pytest.mark.parametrize("language", ["en", "de"])
def test_without_a_number_the_reminder_email_says_nothing_about_calling(clinic_a, language):
    text, html = reminder_email(clinic_a, language=language)
    for part in (text, html):
        assert "desk@harbour.example" in part
        assert "tel:" not in part and "urgent" not in part and "dringend" not in part


def test_the_self_report_pages_give_the_number_once(client, clinic_a, url):
    with_number(clinic_a)
    assert client.get(url).content.decode().count(LINK) == 1
    assert client.post(url, {**GOOD, "problem_flagged": "on"}, follow=True).content.decode().count(LINK) == 1


def test_an_expired_link_still_gives_the_number_to_call(client, clinic_a, url):
    # A patient with a complication on day 10 may open an old link: the way to the clinic stays on the page.
    with_number(clinic_a)
    with time_machine.travel(NOW + dt.timedelta(days=60), tick=False):
        response = client.get(url)
    assert response.status_code == 410
    assert (f"Urgent after your procedure — spreading redness, pus, fever or severe pain? Call Harbour Skin Clinic "
            f"now on {LINK}.") in response.content.decode()


def test_the_unsubscribe_page_gives_the_number_to_call(client, clinic_a):
    with_number(clinic_a)
    reminder = ReminderFactory(treatment__screening__patient__clinic=clinic_a)
    body = client.get(reminder_links(reminder=reminder).unsubscribe.split("127.0.0.1:8000", 1)[1]).content.decode()
    assert "Stop reminder emails?" in body
    assert LINK in body


def test_without_a_number_no_page_offers_one(client, clinic_a):
    reminder = ReminderFactory(treatment__screening__patient__clinic=clinic_a)
    body = client.get(reminder_links(reminder=reminder).unsubscribe.split("127.0.0.1:8000", 1)[1]).content.decode()
    assert "Urgent after your procedure" not in body and "tel:" not in body
