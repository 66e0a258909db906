"""Resending a reminder starts a new delivery and keeps the one it replaced; a refused address is not tried again."""

from __future__ import annotations

import datetime as dt
import smtplib

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from clinic.models import AuditEvent
from patients import reminders
from patients.models import Reminder
from patients.reminders import SendOutcome
from patients.treatments import resend_reminder
from tests.factories import PatientFactory, ReminderFactory, TreatmentFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
Status = Reminder.Status
REFUSED = smtplib.SMTPRecipientsRefused({"maja@typo.example": (550, b"5.1.1 <maja@typo.example>: user unknown")})


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.AFTERCARE_REMINDER_MAX_ATTEMPTS = 2
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


class FailingConnection:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def send_messages(self, messages: list) -> int:
        raise self.error


@pytest.fixture
def reminder(clinic_a):
    patient = PatientFactory(clinic=clinic_a, email="maja@typo.example", time_zone="Europe/Berlin")
    treatment = TreatmentFactory(screening__patient=patient, ended_at=NOW - dt.timedelta(hours=2))
    return ReminderFactory(treatment=treatment, due_at=NOW - dt.timedelta(minutes=1))


def send(reminder: Reminder, connection: object = None) -> SendOutcome:
    assert reminders.claim_due(now=dt.datetime.now(UTC), limit=1) == [reminder.pk]
    outcome = reminders.send_reminder(reminder_id=reminder.pk, connection=connection)
    reminder.refresh_from_db()
    return outcome


def resend_event(reminder: Reminder) -> AuditEvent:
    return AuditEvent.objects.get(action="reminder.resend", object_id=str(reminder.pk))


def test_it_keeps_when_a_resent_reminder_had_gone_out(reminder, coordinator, frozen):
    assert send(reminder) == SendOutcome.SENT
    sent_at = reminder.sent_at
    frozen.move_to(NOW + dt.timedelta(hours=1))

    resent = resend_reminder(reminder=reminder, by=coordinator)

    assert (resent.status, resent.sent_at, resent.attempts, resent.resend_count) == (Status.SCHEDULED, None, 0, 1)
    assert (resent.previous_status, resent.previous_sent_at, resent.previous_attempts) == (Status.SENT, sent_at, 1)
    assert resend_event(reminder).detail == {
        "treatment": reminder.treatment_id, "resend_count": 1, "previous_status": "sent",
        "previous_sent_at": sent_at.isoformat().replace("+00:00", "Z"), "previous_attempts": 1,
        "previous_last_attempt_at": NOW.isoformat().replace("+00:00", "Z"), "previous_last_error": "",
    }


def test_it_refuses_to_resend_to_the_address_the_server_refused(reminder, coordinator, frozen):
    assert send(reminder, FailingConnection(REFUSED)) == SendOutcome.FAILED
    assert reminder.last_error == "550 5.1.1 <maja@typo.example>: user unknown"
    frozen.move_to(NOW + dt.timedelta(hours=1))

    with pytest.raises(ValidationError) as refused:
        resend_reminder(reminder=reminder, by=coordinator)

    # On the clinic's clock (London), its zone named; the patient's (Berlin) would say 11:30.
    [message] = refused.value.messages
    assert "refused the address maja@typo.example on 2026-05-04 10:30 (clinic's time, Europe/London)" in message
    assert "answering “550 5.1.1 <maja@typo.example>: user unknown”: correct the patient's email first" in message
    reminder.refresh_from_db()
    assert (reminder.status, reminder.resend_count, reminder.last_error[:3]) == (Status.FAILED, 0, "550")
    assert not AuditEvent.objects.filter(action="reminder.resend").exists()


def test_once_the_email_is_corrected_it_resends_and_keeps_the_servers_answer(reminder, coordinator, frozen):
    send(reminder, FailingConnection(REFUSED))
    frozen.move_to(NOW + dt.timedelta(hours=1))
    patient = reminder.treatment.patient
    patient.email = "maja@mail.example"
    patient.save()  # through the model, as the patient's page saves it: the history keeps the old address

    resent = resend_reminder(reminder=reminder, by=coordinator)

    assert (resent.status, resent.last_error, resent.attempts) == (Status.SCHEDULED, "", 0)
    assert (resent.previous_status, resent.previous_attempts, resent.previous_attempt_at) == (Status.FAILED, 1, NOW)
    assert resent.previous_error == "550 5.1.1 <maja@typo.example>: user unknown"
    detail = resend_event(reminder).detail
    assert (detail["previous_status"], detail["previous_last_error"]) == ("failed", resent.previous_error)


def test_a_temporary_failure_that_ran_out_of_attempts_may_be_resent_to_the_same_address(reminder, coordinator, frozen):
    busy = FailingConnection(smtplib.SMTPDataError(451, b"4.3.0 Try again later"))
    send(reminder, busy)
    frozen.move_to(reminder.due_at)
    send(reminder, busy)
    assert reminder.status == Status.FAILED and "gave up after 2 attempts" in reminder.last_error

    resent = resend_reminder(reminder=reminder, by=coordinator)

    assert (resent.status, resent.previous_attempts) == (Status.SCHEDULED, 2)


def test_the_new_delivery_counts_its_attempts_from_zero_and_the_old_one_stays(reminder, coordinator, frozen):
    busy = FailingConnection(smtplib.SMTPDataError(451, b"4.3.0 Try again later"))
    send(reminder, busy)
    frozen.move_to(reminder.due_at)
    send(reminder, busy)
    resend_reminder(reminder=reminder, by=coordinator)

    # One temporary failure of the new delivery is a retry, not the third of two allowed attempts.
    assert send(reminder, busy) == SendOutcome.RETRY
    assert (reminder.status, reminder.attempts) == (Status.AWAITING_RETRY, 1)
    frozen.move_to(reminder.due_at)
    assert send(reminder) == SendOutcome.SENT
    assert (reminder.status, reminder.attempts, reminder.resend_count) == (Status.SENT, 2, 1)
    assert (reminder.previous_status, reminder.previous_attempts) == (Status.FAILED, 2)
    assert "gave up after 2 attempts" in reminder.previous_error


# --- the treatment page ---------------------------------------------------------------------------------


def page(client, user, reminder: Reminder) -> str:
    client.force_login(user)
    return client.get(reverse("admin:patients_treatment_change", args=[reminder.treatment_id])).content.decode()


def test_the_page_says_a_reminder_was_resent_and_how_it_had_ended(client, reminder, coordinator, frozen):
    send(reminder)
    frozen.move_to(NOW + dt.timedelta(hours=1))
    resend_reminder(reminder=reminder, by=coordinator)

    body = page(client, coordinator, reminder)

    assert "resent 1×; before the last resend: sent 2026-05-04 11:30, 1 attempt" in body  # the patient's clock


def test_the_page_offers_no_resend_to_a_refused_address_until_it_is_corrected(client, reminder, coordinator, frozen):
    send(reminder, FailingConnection(REFUSED))
    frozen.move_to(NOW + dt.timedelta(hours=1))

    body = page(client, coordinator, reminder)
    assert "The address was refused:" in body
    assert ">Resend</button>" not in body

    patient = reminder.treatment.patient
    patient.email = "maja@mail.example"
    patient.save()
    body = page(client, coordinator, reminder)
    assert "The address was refused:" not in body
    assert ">Resend</button>" in body


@pytest.mark.parametrize("error", [
    smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"),
    smtplib.SMTPSenderRefused(550, b"5.7.1 Sender address rejected", "care@clinic.example"),
])
def test_a_refused_sender_or_sign_in_is_not_the_patients_address_and_may_be_resent(reminder, coordinator, error):
    assert send(reminder, FailingConnection(error)) == SendOutcome.FAILED
    assert reminder.last_error.startswith("The mail server refused the clinic's sender or sign-in (5")

    resent = resend_reminder(reminder=reminder, by=coordinator)  # once the mail settings are fixed

    assert resent.status == Status.SCHEDULED


@pytest.mark.parametrize(("reply", "address_refused"), [
    ("550 5.1.1 <maja@typo.example>: user unknown", True),
    ("550 5.1.10 Recipient address rejected: domain not found", True),
    ("550 5.2.1 Mailbox disabled", True),
    ("550 No such user here", True),  # no enhanced status: 550 refuses the mailbox
    ("553 mailbox name not allowed", True),
    ("550 5.7.1 Relaying denied", False),  # the clinic's relay, not the address
    ("554 5.7.1 Message rejected as spam", False),
    ("554 Transaction failed", False),
    ("552 5.2.2 Mailbox full", False),
    ("Could not talk to the mail server: timed out (gave up after 2 attempts)", False),
])
def test_only_a_refused_mailbox_blocks_a_resend_to_the_same_address(reminder, reply, address_refused):
    Reminder.objects.filter(pk=reminder.pk).update(status=Status.FAILED, last_error=reply)
    reminder.refresh_from_db()

    assert reminders.refused_permanently(reminder) is address_refused


def test_a_relay_refusal_may_be_resent_once_the_relay_is_fixed(reminder, coordinator):
    relay = smtplib.SMTPRecipientsRefused({"maja@typo.example": (550, b"5.7.1 Relaying denied")})
    assert send(reminder, FailingConnection(relay)) == SendOutcome.FAILED

    assert resend_reminder(reminder=reminder, by=coordinator).status == Status.SCHEDULED
