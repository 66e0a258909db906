"""The outbox: claim, send (re-checked at send time), retry with back-off, fail, sweep."""

from __future__ import annotations

import datetime as dt
import smtplib
from io import StringIO

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from patients import reminders
from patients.models import Patient, Reminder, Treatment
from patients.reminders import SendOutcome
from patients.tasks import send_reminder_task
from tests.factories import ReminderFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
Status = Reminder.Status


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.AFTERCARE_REMINDER_MAX_ATTEMPTS = 3
    settings.AFTERCARE_REMINDER_RETRY_BASE_SECONDS = 60
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def due(**kwargs) -> Reminder:
    return ReminderFactory(due_at=kwargs.pop("due_at", NOW - dt.timedelta(minutes=1)), **kwargs)


def queued(**kwargs) -> Reminder:
    reminder = due(**kwargs)
    assert reminders.claim_due(now=NOW, limit=1) == [reminder.pk]
    return reminder


class FailingConnection:
    """Stands in for the SMTP backend: raises what a mail server's reply turns into."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def send_messages(self, messages: list) -> int:
        raise self.error


# --- claiming -------------------------------------------------------------------------------


def test_it_claims_only_due_rows_once_and_queues_their_sends_after_commit(django_capture_on_commit_callbacks):
    ready = [due(), due(status=Status.AWAITING_RETRY, attempts=1)]
    due(due_at=NOW + dt.timedelta(minutes=1))  # not yet
    due(status=Status.SENT)
    due(status=Status.CANCELLED)
    queued_ids: list[int] = []
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert reminders.dispatch_due(now=NOW, enqueue=queued_ids.extend) == 2
    assert len(callbacks) == 1
    assert sorted(queued_ids) == sorted(r.pk for r in ready)
    for reminder in ready:
        reminder.refresh_from_db()
        assert reminder.status == Status.QUEUED
        assert reminder.lease_until == NOW + dt.timedelta(minutes=15)
    assert reminders.dispatch_due(now=NOW, enqueue=queued_ids.extend) == 0


def test_it_claims_a_batch_with_a_single_update(settings):
    settings.AFTERCARE_REMINDER_BATCH_SIZE = 50
    for _ in range(5):
        due()
    with CaptureQueriesContext(connection) as queries:
        assert len(reminders.claim_due(now=NOW, limit=50)) == 5
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1


def test_it_queues_nothing_when_the_claim_is_rolled_back(django_capture_on_commit_callbacks):
    due()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert reminders.dispatch_due_batch(now=NOW, enqueue=lambda ids: None) == 1
    assert len(callbacks) == 1  # queued only on commit, never inside the transaction


# --- sending --------------------------------------------------------------------------------


def test_it_sends_a_queued_reminder_once_with_its_message_id():
    reminder = queued()
    assert reminders.send_reminder(reminder_id=reminder.pk) == SendOutcome.SENT
    # A redelivered broker message for the same row sends nothing.
    assert reminders.send_reminder(reminder_id=reminder.pk) == SendOutcome.NOT_CLAIMED
    assert len(mail.outbox) == 1
    reminder.refresh_from_db()
    assert (reminder.status, reminder.attempts, reminder.sent_at, reminder.lease_until) == (Status.SENT, 1, NOW, None)
    assert mail.outbox[0].extra_headers["Message-ID"] == reminder.message_id


def test_it_never_sends_before_the_due_time():
    reminder = ReminderFactory(due_at=NOW + dt.timedelta(hours=1))
    Reminder.objects.filter(pk=reminder.pk).update(status=Status.QUEUED)  # e.g. a row queued by mistake
    assert reminders.send_reminder(reminder_id=reminder.pk) == SendOutcome.NOT_CLAIMED
    assert mail.outbox == []


def test_it_sends_nothing_for_a_row_that_is_not_queued():
    reminder = due()  # scheduled, never claimed
    assert reminders.send_reminder(reminder_id=reminder.pk) == SendOutcome.NOT_CLAIMED
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"opted_out_at": NOW - dt.timedelta(minutes=5)}, "unsubscribed"),
        ({"reminder_consent": False}, "consent"),
        ({"email": ""}, "no email address"),
    ],
)
def test_it_checks_the_patient_at_send_time_and_skips(change, reason):
    reminder = queued()
    Patient.objects.filter(pk=reminder.treatment.patient_id).update(**change)
    assert reminders.send_reminder(reminder_id=reminder.pk) == SendOutcome.SKIPPED
    reminder.refresh_from_db()
    assert reminder.status == Status.SKIPPED
    assert reason in reminder.last_error
    assert mail.outbox == []


def test_it_skips_a_reminder_of_a_treatment_cancelled_after_it_was_queued():
    reminder = queued()
    Treatment.objects.filter(pk=reminder.treatment_id).update(status=Treatment.Status.CANCELLED)
    assert reminders.send_reminder(reminder_id=reminder.pk) == SendOutcome.SKIPPED
    assert mail.outbox == []


@pytest.mark.parametrize(
    "error",
    [
        smtplib.SMTPDataError(451, b"4.3.0 Try again later"),
        smtplib.SMTPRecipientsRefused({"a@b.example": (450, b"mailbox busy")}),
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_it_retries_a_temporary_failure_with_back_off(error):
    reminder = queued()
    outcome = reminders.send_reminder(reminder_id=reminder.pk, connection=FailingConnection(error))
    assert outcome == SendOutcome.RETRY
    reminder.refresh_from_db()
    assert (reminder.status, reminder.attempts) == (Status.AWAITING_RETRY, 1)
    assert reminder.due_at == NOW + dt.timedelta(seconds=60)
    assert reminder.last_error


def test_it_fails_on_a_permanent_refusal_and_keeps_the_servers_answer():
    reminder = queued()
    error = smtplib.SMTPDataError(550, b"5.1.1 No such user here")
    assert reminders.send_reminder(reminder_id=reminder.pk, connection=FailingConnection(error)) == SendOutcome.FAILED
    reminder.refresh_from_db()
    assert reminder.status == Status.FAILED
    assert reminder.last_error == "550 5.1.1 No such user here"


def test_it_backs_off_longer_each_time_and_gives_up_after_the_last_attempt(frozen):
    reminder = due()
    waits = []
    failing = FailingConnection(smtplib.SMTPDataError(421, b"service not available"))
    for _attempt in range(3):
        now = dt.datetime.now(UTC)
        assert reminders.claim_due(now=now, limit=1) == [reminder.pk]
        reminders.send_reminder(reminder_id=reminder.pk, connection=failing)
        reminder.refresh_from_db()
        waits.append(reminder.due_at - now)
        frozen.move_to(reminder.due_at)
    assert waits[:2] == [dt.timedelta(minutes=1), dt.timedelta(minutes=4)]
    assert (reminder.status, reminder.attempts) == (Status.FAILED, 3)
    assert "gave up after 3 attempts" in reminder.last_error


def test_a_retry_carries_the_links_of_the_first_attempt_and_the_first_attempt_reads_none(frozen):
    from patients.models.link import PatientLink

    reminder = queued()
    with CaptureQueriesContext(connection) as first_attempt:
        reminders.send_reminder(reminder_id=reminder.pk,
                                connection=FailingConnection(smtplib.SMTPDataError(451, b"4.3.0 Try again later")))
    link_queries = [query["sql"] for query in first_attempt.captured_queries if "patients_patientlink" in query["sql"]]
    assert len(link_queries) == 1 and link_queries[0].startswith("INSERT")
    made = set(PatientLink.objects.filter(reminder=reminder).values_list("pk", flat=True))
    reminder.refresh_from_db()
    frozen.move_to(reminder.due_at)
    assert reminders.claim_due(now=reminder.due_at, limit=1) == [reminder.pk]
    assert reminders.send_reminder(reminder_id=reminder.pk) == SendOutcome.SENT
    assert set(PatientLink.objects.filter(reminder=reminder).values_list("pk", flat=True)) == made
    assert len(mail.outbox) == 1


def test_it_picks_the_back_off_from_the_attempt_count_with_a_cap(settings):
    settings.AFTERCARE_REMINDER_RETRY_MAX_SECONDS = 600
    assert [reminders.retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 240, 600, 600]


# --- sweeping ----------------------------------------------------------------------------------


def test_it_sweeps_expired_leases_back_to_the_dispatcher():
    lost_message = due(status=Status.QUEUED, lease_until=NOW - dt.timedelta(seconds=1))
    lost_retry = due(status=Status.QUEUED, attempts=1, lease_until=NOW - dt.timedelta(seconds=1))
    dead_worker = due(status=Status.SENDING, attempts=1, lease_until=NOW - dt.timedelta(seconds=1))
    last_try = due(status=Status.SENDING, attempts=3, lease_until=NOW - dt.timedelta(seconds=1))
    alive = due(status=Status.SENDING, attempts=1, lease_until=NOW + dt.timedelta(minutes=1))
    assert reminders.sweep_expired_leases(now=NOW) == 4
    expected = {
        lost_message: Status.SCHEDULED, lost_retry: Status.AWAITING_RETRY, dead_worker: Status.AWAITING_RETRY,
        last_try: Status.FAILED, alive: Status.SENDING,
    }
    for reminder, status in expected.items():
        reminder.refresh_from_db()
        assert reminder.status == status, reminder
    assert "Message-ID" in dead_worker.last_error


def test_it_resends_after_a_worker_died_mid_send_with_the_same_message_id(frozen, settings):
    reminder = queued()
    # The worker marked it sending, then died before recording anything.
    assert reminders._mark_sending(reminder_id=reminder.pk, now=NOW)
    frozen.move_to(NOW + dt.timedelta(seconds=settings.AFTERCARE_REMINDER_SEND_LEASE_SECONDS + 1))
    assert reminders.sweep_expired_leases() == 1
    assert reminders.send_next_due() is True
    reminder.refresh_from_db()
    assert (reminder.status, reminder.attempts) == (Status.SENT, 2)
    assert mail.outbox[0].extra_headers["Message-ID"] == reminder.message_id


# --- drivers ----------------------------------------------------------------------------------------


def test_it_sends_everything_due_without_celery():
    for _ in range(3):
        due()
    due(due_at=NOW + dt.timedelta(days=1))
    out = StringIO()
    call_command("send_due_reminders", stdout=out)
    assert "Handled 3 due reminders and 0 alerts to clinicians." in out.getvalue()
    assert len(mail.outbox) == 3
    assert Reminder.objects.filter(status=Status.SENT).count() == 3


def test_it_loops_for_the_given_number_of_passes():
    due()
    out = StringIO()
    call_command("send_due_reminders", "--loop", "--interval", "0", "--passes", "2", stdout=out)
    assert len(mail.outbox) == 1


def test_it_runs_the_send_task_as_a_thin_late_acknowledged_wrapper():
    reminder = queued()
    assert send_reminder_task.acks_late is True
    assert send_reminder_task.reject_on_worker_lost is True
    assert send_reminder_task.run(reminder.pk) == "sent"
    assert len(mail.outbox) == 1
