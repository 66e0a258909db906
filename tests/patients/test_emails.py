"""Reminder emails: both parts, headers, language, signed links and the follow-up invitation."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from icalendar import Calendar

from patients.emails import build_reminder_email, reminder_links
from patients.links import read_link
from patients.models import PatientLink
from patients.outcomes import time_points_for
from tests.factories import PatientFactory, ReminderFactory, StepFactory, TreatmentFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def reminder_for(clinic, *, kind="instruction", language="en", **step_kwargs):
    patient = PatientFactory(clinic=clinic, given_name="Maja", preferred_language=language, time_zone="Europe/Berlin")
    treatment = TreatmentFactory(screening__patient=patient, ended_at=NOW - dt.timedelta(hours=2))
    step = StepFactory(
        version=treatment.protocol_version, kind=kind, title=step_kwargs.pop("title", "Gentle cleanse tonight"),
        patient_text=step_kwargs.pop("patient_text", "Lukewarm water only & no make-up."), **step_kwargs,
    )
    occurs_at = dt.datetime(2026, 5, 4, 18, 0, tzinfo=UTC)  # 20:00 in Berlin
    return ReminderFactory(treatment=treatment, step=step, occurs_at=occurs_at, due_at=occurs_at)


def build(reminder):
    return build_reminder_email(reminder=reminder, links=reminder_links(reminder=reminder))


def html_of(message) -> str:
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return html


def test_it_writes_text_and_html_with_the_steps_instructions(clinic_a):
    message = build(reminder_for(clinic_a))
    for part in (message.body, html_of(message)):
        assert "Hello Maja" in part
        assert "Gentle cleanse tonight" in part
        assert "20:00" in part  # the patient's wall clock, not UTC
        assert "Harbour Skin Clinic" in part
    assert "Lukewarm water only & no make-up." in message.body
    assert "Lukewarm water only &amp; no make-up." in html_of(message)


def test_it_keeps_health_details_out_of_the_subject(clinic_a):
    message = build(reminder_for(clinic_a))
    assert message.subject == "Harbour Skin Clinic: your aftercare reminder for 4 May"
    assert "cleanse" not in message.subject.lower()


def test_it_sends_as_the_clinic_with_a_stable_message_id_and_one_click_unsubscribe(clinic_a):
    reminder = reminder_for(clinic_a)
    first, second = build(reminder), build(reminder)
    assert first.from_email == "Harbour Skin Clinic <aftercare@localhost>"
    assert first.reply_to == [clinic_a.contact_email]
    assert first.to == [reminder.treatment.patient.email]
    headers = first.message()
    assert headers["Message-ID"] == reminder.message_id == second.message()["Message-ID"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = headers["List-Unsubscribe"].strip("<>")
    token = unsubscribe_url.rstrip("/").rsplit("/", 1)[-1]
    assert read_link(token).purpose == PatientLink.Purpose.UNSUBSCRIBE
    assert unsubscribe_url in first.body and unsubscribe_url in html_of(first)


def test_it_reuses_the_links_of_the_first_attempt(clinic_a):
    reminder = reminder_for(clinic_a)
    first, second = reminder_links(reminder=reminder), reminder_links(reminder=reminder)
    assert first == second
    assert PatientLink.objects.filter(reminder=reminder).count() == 2  # done + unsubscribe


def test_it_links_i_did_this_to_the_reminder(clinic_a):
    reminder = reminder_for(clinic_a)
    links = reminder_links(reminder=reminder)
    link = read_link(links.done.rstrip("/").rsplit("/", 1)[-1])
    assert (link.purpose, link.reminder, link.patient) == ("done", reminder, reminder.treatment.patient)
    assert links.self_report is None


def test_it_adds_a_self_report_link_to_outcome_checks(clinic_a):
    reminder = reminder_for(clinic_a, kind="outcome_check", title="How does your skin look?", day=0)
    message = build(reminder)
    link = PatientLink.objects.get(reminder=reminder, purpose=PatientLink.Purpose.SELF_REPORT)
    assert link.time_point_day == 0
    assert "Report how my skin looks" in html_of(message)
    assert "Report how your skin looks" in message.body


@pytest.mark.parametrize(("language", "report", "done"), [
    ("en", "Report how my skin looks", ("I did this", "Done it?")),
    ("de", "Wie sieht meine Haut aus?", ("Erledigt",)),
])
def test_an_outcome_check_asks_for_the_report_only_not_for_a_tap_that_it_was_done(clinic_a, language, report, done):
    # A tap on "I did this" reported nothing; the check's one action is the report.
    check = build(reminder_for(clinic_a, kind="outcome_check", title="How does your skin look?", day=0,
                               language=language))
    assert report in html_of(check)
    for words in done:
        assert words not in check.body + html_of(check)
    home_step = build(reminder_for(clinic_a, language=language))
    assert done[0] in home_step.body + html_of(home_step)


def test_it_writes_in_the_patients_language_when_a_translation_exists(clinic_a):
    message = build(reminder_for(clinic_a, language="de"))
    assert message.subject == "Harbour Skin Clinic: Ihre Nachsorge-Erinnerung für den 4. Mai"
    assert "Hallo Maja" in message.body
    assert "Montag" in message.body  # the date in German too
    assert "Abmelden" in html_of(message)
    assert message.extra_headers["Content-Language"] == "de"


def test_it_falls_back_to_english_without_a_translation(clinic_a):
    message = build(reminder_for(clinic_a, language="fr"))
    assert "Hello Maja" in message.body
    assert message.extra_headers["Content-Language"] == "en"


def test_it_attaches_a_calendar_invitation_to_follow_up_visits(clinic_a):
    reminder = reminder_for(clinic_a, kind="follow_up_visit", title="Check-in visit")
    message = build(reminder)
    [(name, content, mimetype)] = message.attachments
    assert (name, mimetype) == ("visit.ics", "text/calendar")
    [event] = Calendar.from_ical(content).walk("VEVENT")
    assert event.decoded("dtstart") == reminder.occurs_at
    assert str(event["uid"]) == f"visit-{reminder.pk}@127.0.0.1"
    assert "calendar invitation is attached" in message.body
    assert "I did this" not in html_of(message)


def test_it_attaches_nothing_to_other_reminders(clinic_a):
    assert build(reminder_for(clinic_a)).attachments == []


def test_an_hour_based_check_files_the_self_report_under_the_day_staff_assess(clinic_a):
    """"+36 hours" is the day-1 check even when it falls on the second calendar day after the procedure."""
    patient = PatientFactory(clinic=clinic_a, time_zone="Europe/Berlin")
    ended = dt.datetime(2026, 5, 2, 16, 0, tzinfo=UTC)  # 18:00 in Berlin; +36 h is 06:00 on 4 May, day 2
    treatment = TreatmentFactory(screening__patient=patient, ended_at=ended, started_at=ended - dt.timedelta(hours=1))
    step = StepFactory(version=treatment.protocol_version, kind="outcome_check", timing="offset", offset_value=36,
                       offset_unit="hours", day=None, local_time=None)
    occurs_at = ended + dt.timedelta(hours=36)
    reminder = ReminderFactory(treatment=treatment, step=step, occurs_at=occurs_at, due_at=occurs_at)

    reminder_links(reminder=reminder)

    link = PatientLink.objects.get(reminder=reminder, purpose=PatientLink.Purpose.SELF_REPORT)
    assert link.time_point_day == 1
    assert time_points_for(treatment.protocol_version) == [1]  # what the clinician's form offers


def test_a_repeating_check_files_each_occurrence_under_its_own_day(clinic_a):
    reminder = reminder_for(clinic_a, kind="outcome_check", day=1, repeat_count=3, repeat_every_days=2)
    reminder.occurrence = 2
    reminder.save()
    reminder_links(reminder=reminder)
    assert PatientLink.objects.get(reminder=reminder, purpose=PatientLink.Purpose.SELF_REPORT).time_point_day == 5
