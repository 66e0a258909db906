"""The email of a follow-up visit staff moved says plainly that it moved, from when to when, on the patient's
clock (subject, text and HTML, English and German); a resend of it says so again; a visit never moved reads
as before."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from patients import reminders, treatments
from patients.emails import build_reminder_email, reminder_links
from patients.models import Reminder, Treatment
from tests.factories import PatientFactory, ReminderFactory, StepFactory, TreatmentFactory, treatable_patient

pytestmark = pytest.mark.django_db

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
# Monday 4 May 2026, 10:30 in London (the clinic), 11:30 in Berlin (the patient).
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
# The patient rebooked from Tuesday 12 May 09:00 to Thursday 14 May 10:30, both on their (Berlin) clock.
TUESDAY = dt.datetime(2026, 5, 12, 9, 0, tzinfo=BERLIN)
THURSDAY = dt.datetime(2026, 5, 14, 10, 30, tzinfo=BERLIN)


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def visit_for(clinic, *, language: str = "en", zone: str = "Europe/Berlin", occurs_at: dt.datetime = THURSDAY,
              moved_from: dt.datetime | None = TUESDAY) -> Reminder:
    patient = PatientFactory(clinic=clinic, given_name="Maja", preferred_language=language, time_zone=zone)
    treatment = TreatmentFactory(screening__patient=patient, ended_at=NOW - dt.timedelta(hours=2))
    step = StepFactory(version=treatment.protocol_version, kind="follow_up_visit", title="Check-in visit")
    moved = {"moved_at": NOW, "moved_from": moved_from, "move_count": 1, "move_reason": "Patient rebooked by phone"}
    return ReminderFactory(treatment=treatment, step=step, occurs_at=occurs_at, due_at=NOW,
                           **(moved if moved_from else {}))


def parts(reminder: Reminder) -> tuple[str, str, str]:
    message = build_reminder_email(reminder=reminder, links=reminder_links(reminder=reminder))
    [(html, _mimetype)] = message.alternatives
    return message.subject, message.body, html


def test_it_says_the_visit_moved_from_when_to_when(clinic_a):
    subject, text, html = parts(visit_for(clinic_a))

    assert subject == "Harbour Skin Clinic: your follow-up visit has moved to Thursday 14 May, 10:30"
    moved = "Your follow-up visit has moved: it was on Tuesday 12 May at 09:00; it is now on Thursday 14 May at 10:30"
    assert text.split("\n\n")[1] == f"{moved} (your time)."  # the first paragraph after the greeting
    assert "A reminder of your follow-up visit at Harbour Skin Clinic on Thursday 14 May 2026 at 10:30." in text
    assert (
        "<p>Your follow-up visit has moved: it was on Tuesday 12 May at 09:00; it is now on "
        "<strong>Thursday 14 May at 10:30</strong> (your time).</p>"
    ) in html


def test_the_german_email_says_it_in_german(clinic_a):
    subject, text, html = parts(visit_for(clinic_a, language="de"))

    assert subject == "Harbour Skin Clinic: Ihr Kontrolltermin wurde auf Donnerstag, 14. Mai, 10:30 Uhr verschoben"
    assert text.split("\n\n")[1] == (
        "Ihr Kontrolltermin wurde verschoben: Er war am Dienstag, 12. Mai um 09:00 Uhr; "
        "jetzt ist er am Donnerstag, 14. Mai um 10:30 Uhr (Ihre Ortszeit)."
    )
    assert "\n\nWir erinnern Sie an Ihren Kontrolltermin bei Harbour Skin Clinic am Donnerstag, 14. Mai 2026" in text
    assert (
        "<p>Ihr Kontrolltermin wurde verschoben: Er war am Dienstag, 12. Mai um 09:00 Uhr; jetzt ist er am "
        "<strong>Donnerstag, 14. Mai um 10:30 Uhr</strong> (Ihre Ortszeit).</p>"
    ) in html
    assert "<p>Wir erinnern Sie" in html


@pytest.mark.parametrize(("language", "subject", "reminder_line"), [
    ("en", "Harbour Skin Clinic: your aftercare reminder for 14 May",
     "A reminder of your follow-up visit at Harbour Skin Clinic on Thursday 14 May 2026 at 10:30."),
    ("de", "Harbour Skin Clinic: Ihre Nachsorge-Erinnerung für den 14. Mai",
     "wir erinnern Sie an Ihren Kontrolltermin bei Harbour Skin Clinic am Donnerstag, 14. Mai 2026 um 10:30 Uhr."),
])
def test_a_visit_never_moved_reads_as_before(clinic_a, language, subject, reminder_line):
    actual_subject, text, html = parts(visit_for(clinic_a, language=language, moved_from=None))

    assert actual_subject == subject
    assert text.split("\n\n")[1].startswith(reminder_line)
    for part in (text, html):
        assert "moved" not in part and "verschoben" not in part and "Tuesday" not in part and "Dienstag" not in part


def test_the_old_time_is_on_the_patients_clock_across_a_change_of_daylight_saving_time(clinic_a):
    # New York moves its clocks on Sunday 8 March 2026, London (the clinic) only on 29 March: the old time is
    # 09:00 EST (14:00 in London and UTC), the new one 10:30 EDT (14:30 in London and UTC). Read with the new
    # time's offset, the old one would be 10:00; on the clinic's clock, 14:00.
    old = dt.datetime(2026, 3, 6, 9, 0, tzinfo=NEW_YORK)
    new = dt.datetime(2026, 3, 10, 10, 30, tzinfo=NEW_YORK)
    with time_machine.travel(dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC), tick=False):
        subject, text, html = parts(visit_for(clinic_a, zone="America/New_York", occurs_at=new, moved_from=old))

    assert subject == "Harbour Skin Clinic: your follow-up visit has moved to Tuesday 10 March, 10:30"
    moved = "it was on Friday 6 March at 09:00; it is now on "
    assert f"{moved}Tuesday 10 March at 10:30 (your time)." in text
    assert f"{moved}<strong>Tuesday 10 March at 10:30</strong> (your time)." in html


# --- moved with move_visit and sent by the worker ------------------------------------------------------------

# A visit two days after the procedure at its time of day, reminded of a day before.
STEPS = [
    {"title": "Check-in visit", "kind": "follow_up_visit", "timing": "offset", "offset_value": 2,
     "offset_unit": "days", "day": None, "local_time": None, "remind_minutes_before": 24 * 60},
]
ENDED = NOW - dt.timedelta(hours=1)  # 09:30 in London, 10:30 in Berlin


@pytest.fixture
def treatment(clinic_a, clinician) -> Treatment:
    patient, version, screening = treatable_patient(clinic_a, steps=STEPS, time_zone="Europe/Berlin",
                                                    given_name="Maja", preferred_language="en")
    return treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ENDED - dt.timedelta(minutes=45), ended_at=ENDED, areas="face",
    )


def visit(treatment: Treatment) -> Reminder:
    return Reminder.objects.select_related("step", "treatment__patient", "treatment__clinic").get(treatment=treatment)


def send_due(frozen, reminder: Reminder) -> None:
    frozen.move_to(reminder.due_at)
    assert reminders.send_due_inline() == 1


def test_a_visit_sent_moved_and_resent_reads_moved_on_the_patients_clock(treatment, coordinator, frozen):
    send_due(frozen, visit(treatment))  # Wednesday 6 May, 10:30 in Berlin
    assert "has moved" not in mail.outbox[0].body

    # Staff type the new time on the clinic's (London) clock: 10:00 there is 11:00 for the patient.
    moved = treatments.move_visit(reminder=visit(treatment), occurs_at=dt.datetime(2026, 5, 7, 10, 0, tzinfo=LONDON),
                                  reason="Patient rebooked by phone", by=coordinator)
    send_due(frozen, moved)
    resent = treatments.resend_reminder(reminder=visit(treatment), by=coordinator)
    send_due(frozen, resent)

    said = "Your follow-up visit has moved: it was on Wednesday 6 May at 10:30; it is now on Thursday 7 May at 11:00"
    for message in mail.outbox[1:]:
        assert message.subject == "Harbour Skin Clinic: your follow-up visit has moved to Thursday 7 May, 11:00"
        assert f"{said} (your time)." in message.body
    assert len(mail.outbox) == 3


def test_sending_a_moved_visit_costs_no_more_queries(treatment, coordinator, frozen):
    # The worker reads the reminder with one SELECT of _SEND_FIELDS: the old time must be among them.
    moved = treatments.move_visit(reminder=visit(treatment), occurs_at=dt.datetime(2026, 5, 7, 10, 0, tzinfo=LONDON),
                                  reason="Patient rebooked by phone", by=coordinator)
    frozen.move_to(moved.due_at)
    [reminder_id] = reminders.claim_due(now=moved.due_at, limit=1)

    with CaptureQueriesContext(connection) as queries:
        assert reminders.send_reminder(reminder_id=reminder_id) == reminders.SendOutcome.SENT

    statements = [query["sql"].split()[0] for query in queries.captured_queries]
    assert [s for s in statements if s not in ("SAVEPOINT", "RELEASE")] == ["UPDATE", "SELECT", "INSERT", "UPDATE"]
    assert "has moved" in mail.outbox[0].body
