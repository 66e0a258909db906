"""Delivering the reminder outbox: claim, send, retry, sweep.

The database row is the truth about a reminder (DESIGN.md). Its life:

    scheduled ──claim──▶ queued ──send task──▶ sending ──▶ sent
        ▲                  │                      │──4xx / no connection──▶ awaiting_retry ──claim──▶ queued …
        └──lease expired───┘                      │──5xx, or attempts used up──▶ failed
                                                  └──lease expired (worker died)──▶ awaiting_retry
    any pending row ──staff or treatment cancelled──▶ cancelled
    at send time, patient opted out / no consent / no email / treatment cancelled ──▶ skipped

* The dispatcher (Celery beat, every minute) claims due rows in one short
  transaction — ``select_for_update(skip_locked=True)`` so two dispatchers never
  claim the same row — and queues one send task per row after commit, passing ids.
* The send task (``acks_late``) moves the row from queued to sending with a
  conditional update that must change exactly one row, so a duplicated broker
  message sends nothing twice; in the same short transaction it re-checks the
  patient and makes the email's links. It sends outside any transaction, over
  the worker process's reused SMTP connection (``patients.mail_connection``).
* The sweeper gives rows whose lease expired back to the dispatcher: a queued
  row whose message was lost (Redis flushed, worker killed before it started)
  and a sending row whose worker died. The second is the one duplicate window:
  the server may have accepted the message before the worker died. Every email
  carries the reminder's stable ``Message-ID``, so such a copy is recognisable.

Each loop is a "do one batch, return how many" function plus a thin driver.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from clinic.history import UNSUBSCRIBED_BY_PATIENT
from patients.models import Patient, Reminder, Treatment

log = logging.getLogger(__name__)

Status = Reminder.Status
Enqueue = Callable[[list[int]], None]


class SendOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_CLAIMED = "not_claimed"  # not queued (any more), not due yet, or another worker has it


@dataclass(frozen=True)
class DeliveryError:
    permanent: bool
    message: str


def _seconds(name: str) -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, name))


# --- claiming -------------------------------------------------------------------


def claim_due(*, now: dt.datetime, limit: int) -> list[int]:
    """Claim up to ``limit`` due rows (status ``queued``, lease set) and return their ids.

    Rows another transaction has locked are skipped, not waited for, so
    concurrent dispatchers share the work instead of queueing behind each other.
    The rows are claimed with one UPDATE.
    """
    with transaction.atomic():
        ids = list(
            Reminder.objects.filter(status__in=Reminder.READY, due_at__lte=now)
            .order_by("due_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return []
        claimed = Reminder.objects.filter(pk__in=ids, status__in=Reminder.READY).update(
            updated_at=timezone.now(), status=Status.QUEUED,
            queued_at=now,
            lease_until=now + _seconds("AFTERCARE_REMINDER_QUEUE_LEASE_SECONDS"),
        )
        if claimed != len(ids):
            # Cannot happen with row locks (PostgreSQL) or SQLite's single
            # writer; if it ever does, roll back rather than guess which are ours.
            raise RuntimeError(f"Claimed {claimed} of {len(ids)} locked reminders; rolling back")
    return ids


def queue_after_commit(enqueue: Enqueue, ids: list[int]) -> None:
    """Hand ``ids`` to ``enqueue`` once the transaction commits.

    A broker that is down then does not undo what committed, nor fail the request
    or the task that committed it: the error is logged, and the rows, leased to
    the lost messages, are handed out again by the dispatcher when the lease ends.
    """

    def queue_tasks() -> None:  # named: Django's robust on_commit logs a failure with the callback's __qualname__
        enqueue(ids)

    transaction.on_commit(queue_tasks, robust=True)


def enqueue_send_tasks(ids: list[int]) -> None:
    """Queue one Celery send task per id (called after the claiming transaction committed)."""
    from patients.tasks import send_reminder_task

    for reminder_id in ids:
        send_reminder_task.delay(reminder_id)


def dispatch_due_batch(*, now: dt.datetime | None = None, enqueue: Enqueue | None = None) -> int:
    """Claim one batch of due reminders and queue their send tasks after commit; return the batch size.

    If queueing fails (the broker is down), the rows stay queued until their
    lease expires and the sweeper hands them back: nothing is lost.
    """
    now = now or timezone.now()
    with transaction.atomic():
        ids = claim_due(now=now, limit=settings.AFTERCARE_REMINDER_BATCH_SIZE)
        if ids:
            queue_after_commit(enqueue or enqueue_send_tasks, ids)
    return len(ids)


def dispatch_due(*, now: dt.datetime | None = None, enqueue: Enqueue | None = None) -> int:
    """Claim every due reminder, batch by batch, and queue the sends. Returns how many."""
    now = now or timezone.now()
    total = 0
    while count := dispatch_due_batch(now=now, enqueue=enqueue):
        total += count
    return total


# --- sending --------------------------------------------------------------------


def email_block_reason(patient: Patient) -> str:
    """Why no reminder email can go to ``patient`` now, or "" when they can be sent."""
    if patient.opted_out_at is not None:
        return f"The patient unsubscribed on {patient.opted_out_at:%Y-%m-%d %H:%M} UTC."
    if not patient.reminder_consent:
        return "The patient has not consented to (or withdrew consent for) email reminders."
    if not patient.email:
        return "The patient has no email address."
    return ""


def skip_reason(reminder: Reminder) -> str:
    """Why this reminder must not be sent now (checked at send time), or "" to send it."""
    treatment: Treatment = reminder.treatment
    if treatment.status == Treatment.Status.CANCELLED:
        return "The treatment was cancelled."
    if reason := email_block_reason(treatment.patient):
        return reason
    if not reminder.step.sends_reminder:
        return "This step sends no reminder."
    return ""


def retry_delay(attempts: int) -> dt.timedelta:
    """Back-off after ``attempts`` temporary failures: base × 4^(attempts − 1), capped."""
    base = settings.AFTERCARE_REMINDER_RETRY_BASE_SECONDS
    seconds = min(base * 4 ** max(attempts - 1, 0), settings.AFTERCARE_REMINDER_RETRY_MAX_SECONDS)
    return dt.timedelta(seconds=seconds)


def _reply_text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


#: refusals of what Aftercare sends from, not of the patient's address
_OUR_SIDE = (smtplib.SMTPSenderRefused, smtplib.SMTPAuthenticationError, smtplib.SMTPHeloError)


def classify_send_error(error: BaseException) -> DeliveryError:
    """Temporary or permanent, from the SMTP reply: 4xx and connection trouble retry, 5xx fails."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = list(error.recipients.values())
        codes = [code for code, _text in replies]
        text = "; ".join(f"{code} {_reply_text(message)}" for code, message in replies)
        return DeliveryError(permanent=bool(codes) and all(500 <= code < 600 for code in codes), message=text)
    code = getattr(error, "smtp_code", None)
    if isinstance(code, int) and code > 0 and isinstance(error, _OUR_SIDE):
        # Not the patient's address: the clinic's sender or sign-in. Said apart from a refused address
        # (which starts with the code), so that resending is not refused once the mail settings are fixed.
        return DeliveryError(
            permanent=500 <= code < 600,
            message=f"The mail server refused the clinic's sender or sign-in ({code} {_reply_text(error.smtp_error)}); "
                    "check the mail settings (EMAIL_URL, DEFAULT_FROM_EMAIL), then resend.",
        )
    if isinstance(code, int) and code > 0:
        return DeliveryError(permanent=500 <= code < 600, message=f"{code} {_reply_text(error.smtp_error)}")
    if isinstance(error, smtplib.SMTPException | OSError):
        return DeliveryError(permanent=False, message=f"Could not talk to the mail server: {error}")
    return DeliveryError(permanent=False, message=f"Unexpected error while sending: {error!r}")


# How _record_failure writes a permanent refusal: the server's 5xx reply, with no "gave up" suffix,
# and its enhanced status code (RFC 3463) when the server gives one.
_PERMANENT_REPLY = re.compile(r"(?P<code>5\d\d)\b(?:[ -]+(?P<enhanced>5\.\d{1,3}\.\d{1,3})\b)?")
#: basic replies that refuse a mailbox (RFC 5321: 550 unavailable, 551 not local, 553 name not allowed)
_MAILBOX_CODES = frozenset({"550", "551", "553"})


def refused_permanently(reminder: Reminder) -> bool:
    """The mail server refused ``reminder``'s address for good: a 5xx reply about the mailbox, in ``last_error``.

    Only the address: with enhanced status 5.1.x (addressing: no such user,
    bad domain) or 5.2.1 (mailbox disabled), or without one a 550/551/553.
    A 5.7.x (relaying denied, spam or policy), a 554 or a full mailbox is the
    server refusing the message or the clinic, not the address: resending may
    work once that is fixed.
    """
    if reminder.status != Status.FAILED:
        return False
    reply = _PERMANENT_REPLY.match(reminder.last_error)
    if reply is None:
        return False
    enhanced = reply["enhanced"]
    if enhanced is None:
        return reply["code"] in _MAILBOX_CODES
    return enhanced.startswith("5.1.") or enhanced == "5.2.1"


def _mark_sending(*, reminder_id: int, now: dt.datetime) -> bool:
    # The one conditional update that makes this worker the only sender of
    # the row: a second task for the same row (a redelivered or re-queued
    # broker message) finds it no longer queued and does nothing.
    changed = Reminder.objects.filter(pk=reminder_id, status=Status.QUEUED, due_at__lte=now).update(
        updated_at=timezone.now(), status=Status.SENDING,
        attempts=F("attempts") + 1,
        last_attempt_at=now,
        lease_until=now + _seconds("AFTERCARE_REMINDER_SEND_LEASE_SECONDS"),
    )
    return changed == 1


def _record_sent(reminder_id: int) -> None:
    # The message went out: record that whatever happened to the row
    # meanwhile (a sweeper that gave up on us must not cause a second send).
    Reminder.objects.filter(pk=reminder_id).exclude(status=Status.SENT).update(
        updated_at=timezone.now(), status=Status.SENT, sent_at=timezone.now(), lease_until=None, last_error=""
    )


def _record_skipped(reminder_id: int, reason: str) -> None:
    Reminder.objects.filter(pk=reminder_id, status=Status.SENDING).update(
        updated_at=timezone.now(), status=Status.SKIPPED, lease_until=None, last_error=reason
    )


def _record_failure(*, reminder: Reminder, error: BaseException, now: dt.datetime) -> SendOutcome:
    problem = classify_send_error(error)
    attempts = reminder.attempts  # loaded after _mark_sending counted this attempt
    out_of_attempts = attempts >= settings.AFTERCARE_REMINDER_MAX_ATTEMPTS
    rows = Reminder.objects.filter(pk=reminder.pk, status=Status.SENDING)
    if problem.permanent or out_of_attempts:
        suffix = "" if problem.permanent else f" (gave up after {attempts} attempts)"
        rows.update(updated_at=timezone.now(), status=Status.FAILED, lease_until=None, last_error=problem.message + suffix)
        log.warning("Reminder %s failed: %s%s", reminder.pk, problem.message, suffix)
        return SendOutcome.FAILED
    rows.update(
        updated_at=timezone.now(), status=Status.AWAITING_RETRY, lease_until=None, last_error=problem.message,
        due_at=now + retry_delay(attempts),
    )
    log.info("Reminder %s will be retried after attempt %s: %s", reminder.pk, attempts, problem.message)
    return SendOutcome.RETRY


# What skip_reason(), the links and the email read, and nothing else: the worker
# reads one row per email, thousands in a burst, and building a five-table
# SELECT of every column costs more than the rest of the query. A field used
# but missing here is loaded with a query of its own, which
# tests/perf_queries/test_reminder_queries.py would see.
_SEND_FIELDS = (
    "id", "treatment_id", "step_id", "occurrence", "occurs_at", "attempts", "resend_count", "created_at",
    "move_count", "moved_at",  # a follow-up visit's invitation (patients.emails.calendar_invite)
    "moved_from",  # a moved visit's email says from when it moved
    "step__kind", "step__title", "step__patient_text", "step__sends_reminder", "step__avoid_until_day",
    # An outcome check's day (patients.emails.time_point_day).
    "step__timing", "step__day", "step__offset_value", "step__offset_unit", "step__repeat_count",
    "step__repeat_every_days",
    "treatment__status", "treatment__ended_at", "treatment__clinic_id", "treatment__patient_id",
    "treatment__clinic__name", "treatment__clinic__sender_name", "treatment__clinic__contact_email",
    "treatment__clinic__time_zone", "treatment__clinic__urgent_phone",
    "treatment__patient__clinic_id", "treatment__patient__given_name", "treatment__patient__email",
    "treatment__patient__preferred_language", "treatment__patient__time_zone",
    "treatment__patient__reminder_consent", "treatment__patient__opted_out_at",
)


def send_reminder(*, reminder_id: int, now: dt.datetime | None = None, connection: Any = None) -> SendOutcome:
    """Send one queued reminder: re-check it, mark it sending, send outside any transaction, record the result.

    Does nothing (``NOT_CLAIMED``) unless the row is queued and due. Opt-out,
    consent, email address and treatment cancellation are checked here, at
    send time, not only when the row was scheduled.
    """
    from patients.emails import build_reminder_email, reminder_links
    from patients.mail_connection import send_on_process_connection

    now = now or timezone.now()
    # Claim, re-check and make the links in one transaction (one commit before the send, not two);
    # if the database fails here, nothing is committed and the row stays queued
    # until the sweeper hands it back.
    with transaction.atomic():
        if not _mark_sending(reminder_id=reminder_id, now=now):
            return SendOutcome.NOT_CLAIMED
        reminder = (
            Reminder.objects.select_related("step", "treatment__clinic", "treatment__patient")
            .only(*_SEND_FIELDS)
            .get(pk=reminder_id)
        )
        reminder.treatment.patient.clinic = reminder.treatment.clinic  # the same clinic: joined once, not twice
        reason = skip_reason(reminder)
        if reason:
            _record_skipped(reminder_id, reason)
            return SendOutcome.SKIPPED
        # The first attempt has no links to reuse (a retry's attempt count is above one).
        links = reminder_links(reminder=reminder, now=now, first_attempt=reminder.attempts == 1)
    try:
        message = build_reminder_email(reminder=reminder, links=links)
        if connection is None:
            send_on_process_connection(message)
        else:
            message.connection = connection
            message.send(fail_silently=False)
    except Exception as error:  # noqa: BLE001 - every failure is recorded on the row and retried or failed
        if classify_send_error(error).message.startswith("Unexpected"):
            log.exception("Reminder %s could not be sent", reminder_id)
        return _record_failure(reminder=reminder, error=error, now=now)
    _record_sent(reminder_id)
    return SendOutcome.SENT


def send_next_due(*, now: dt.datetime | None = None, connection: Any = None) -> bool:
    """Claim and send the single most overdue reminder in this process. False when none is due."""
    now = now or timezone.now()
    ids = claim_due(now=now, limit=1)
    if not ids:
        return False
    send_reminder(reminder_id=ids[0], now=now, connection=connection)
    return True


def send_due_inline(*, now: dt.datetime | None = None) -> int:
    """The dispatcher without Celery: sweep, then send every due reminder here, one by one."""
    sweep_expired_leases(now=now)
    count = 0
    while send_next_due(now=now):
        count += 1
    return count


# --- sweeping -------------------------------------------------------------------


def sweep_expired_leases(*, now: dt.datetime | None = None) -> int:
    """Hand rows whose lease expired back to the dispatcher; return how many.

    queued → scheduled (or awaiting_retry after earlier attempts): the broker
    message was lost or never started. sending → awaiting_retry: the worker
    died mid-send and the message may or may not have gone out (the duplicate
    window); with no attempts left it is failed instead of retried forever.
    """
    now = now or timezone.now()
    expired = Reminder.objects.filter(lease_until__lt=now)
    swept = expired.filter(status=Status.QUEUED, attempts=0).update(
        updated_at=now, status=Status.SCHEDULED, lease_until=None
    )
    swept += expired.filter(status=Status.QUEUED, attempts__gt=0).update(
        updated_at=timezone.now(), status=Status.AWAITING_RETRY, lease_until=None
    )
    lost_worker = "The worker stopped before confirming the send; it is sent again (the copy keeps the Message-ID)."
    swept += expired.filter(status=Status.SENDING, attempts__lt=settings.AFTERCARE_REMINDER_MAX_ATTEMPTS).update(
        updated_at=timezone.now(), status=Status.AWAITING_RETRY, lease_until=None, last_error=lost_worker
    )
    swept += expired.filter(status=Status.SENDING, attempts__gte=settings.AFTERCARE_REMINDER_MAX_ATTEMPTS).update(
        updated_at=now, status=Status.FAILED, lease_until=None,
        last_error="The worker stopped during the last allowed attempt.",
    )
    if swept:
        log.warning("Swept %s reminders whose lease expired", swept)
    return swept


# --- the patient's own changes ----------------------------------------------------


def unsubscribe(*, patient: Patient, now: dt.datetime | None = None) -> bool:
    """Opt the patient out of reminder emails. True if this call did it, False if already opted out.

    Pending reminders stay in the outbox and are skipped at send time, so the
    timeline still shows what would have been sent.
    """
    with transaction.atomic():
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        if locked.opted_out_at is not None:
            return False
        locked.opted_out_at = now or timezone.now()
        locked._change_reason = UNSUBSCRIBED_BY_PATIENT  # the history page names the patient
        locked.save(update_fields=["opted_out_at"])  # a save, not update(), so the history keeps it
    patient.opted_out_at = locked.opted_out_at
    return True

