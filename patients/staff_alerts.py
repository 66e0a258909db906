"""Alerts to a clinic's clinicians: an adverse event of moderate severity or worse, a problem a patient flagged.

They go through an outbox, as reminders do (DESIGN.md), because a lost alert is a
patient nobody looked at:

    pending ──send task──▶ sending ──▶ sent
       ▲                      │──4xx / no connection──▶ pending (later, with back-off)
       │                      │──refused (5xx) for every address, attempts used up, nobody to email──▶ failed
       └──lease expired───────┘ (the broker message was lost or the worker died)

* The alert row is written in the same transaction as what it is about, so no
  event is saved without its alert and no alert goes out about a rolled-back one.
  A send task is queued after commit; the dispatcher (beat, every minute) queues
  it again when its lease expired, so a broker that was down loses nothing.
* One email per clinician (colleagues' addresses are not shared in To:). The
  addresses the server accepted are kept on the row: a retry emails only the
  others, and "who was told, when" stays on the record.
* A ``failed`` alert is on the dashboard until someone sends it again (after
  adding a clinician's address or mending the mail settings).
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F, Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from clinic.audit import record_event
from clinic.models import Membership, Role
from clinic.roles import Capability
from clinic.scoping import can
from patients.models import AdverseEvent, OutcomeAssessment, StaffAlert
from patients.reminders import SendOutcome, classify_send_error, queue_after_commit, retry_delay

log = logging.getLogger(__name__)
Status = StaffAlert.Status

NOBODY_TO_EMAIL = (
    "No active clinician of the clinic has an email address, so nobody could be told. "
    "Add one (a clinician adds theirs on “My account”, or a clinic admin on the colleague's page), "
    "then send the alert again."
)


def _seconds(name: str) -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, name))


# --- raising ------------------------------------------------------------------------------


#: Adverse events of these severities alert the clinicians.
NOTIFY_SEVERITIES = frozenset(
    {AdverseEvent.Severity.MODERATE, AdverseEvent.Severity.SEVERE, AdverseEvent.Severity.LIFE_THREATENING}
)


def alert_adverse_event(event: AdverseEvent, *, now: dt.datetime | None = None) -> StaffAlert:
    """Write the alert about ``event`` (call inside the transaction that saves it); it is sent after commit.

    An earlier alert about it that was not delivered goes out again instead of a second one
    (it keeps who had it, so nobody is emailed twice, and leaves the dashboard once sent).
    """
    failed = event.alerts.filter(status=Status.FAILED).order_by("-pk").first()
    if failed is not None:
        return _reopen(failed, now=now or timezone.now())
    return _raise(StaffAlert(clinic_id=event.treatment.clinic_id, kind=StaffAlert.Kind.ADVERSE_EVENT,
                             adverse_event=event), now=now)


def alert_problem_flag(assessment: OutcomeAssessment, *, now: dt.datetime | None = None) -> StaffAlert:
    """Write the alert about a problem the patient flagged in ``assessment``; it is sent after commit."""
    failed = assessment.alerts.filter(status=Status.FAILED).order_by("-pk").first()
    if failed is not None:
        return _reopen(failed, now=now or timezone.now())
    return _raise(StaffAlert(clinic_id=assessment.treatment.clinic_id, kind=StaffAlert.Kind.PROBLEM_FLAG,
                             assessment=assessment), now=now)


def _raise(alert: StaffAlert, *, now: dt.datetime | None) -> StaffAlert:
    now = now or timezone.now()
    alert.created_at = alert.due_at = now
    # Leased to the task queued below; if that message is lost, the dispatcher queues it again after the lease.
    alert.lease_until = now + _seconds("AFTERCARE_REMINDER_QUEUE_LEASE_SECONDS")
    alert.save()
    queue_after_commit(enqueue, [alert.pk])
    return alert


def _reopen(alert: StaffAlert, *, now: dt.datetime) -> StaffAlert:
    """A failed alert, pending again with fresh attempts; those who had it are kept and not emailed again."""
    alert.status, alert.attempts, alert.due_at, alert.last_error = Status.PENDING, 0, now, ""
    alert.lease_until = now + _seconds("AFTERCARE_REMINDER_QUEUE_LEASE_SECONDS")
    alert.save(update_fields=["status", "attempts", "due_at", "last_error", "lease_until"])
    queue_after_commit(enqueue, [alert.pk])
    return alert


def adverse_event_alert_open(event: AdverseEvent) -> bool:
    """Whether an alert about ``event`` is waiting or sending (a second one would email the same news twice)."""
    return event.alerts.filter(status__in=[Status.PENDING, Status.SENDING]).exists()


def cancel_for_downgraded(event: AdverseEvent) -> int:
    """An event corrected below moderate before its alert went out: the alert is no longer needed (not sent)."""
    return event.alerts.filter(status__in=[Status.PENDING, Status.FAILED]).update(
        status=Status.CANCELLED, lease_until=None,
        last_error=f"Not sent: the event was corrected to {event.get_severity_display().lower()} before it went out.",
    )


def enqueue(ids: list[int]) -> None:
    """Queue one send task per alert id (after the transaction that wrote or claimed them committed)."""
    from patients.tasks import send_staff_alert_task

    for alert_id in ids:
        send_staff_alert_task.delay(alert_id)


# --- dispatching -----------------------------------------------------------------------------


def dispatch_due(*, now: dt.datetime | None = None, enqueue_ids: Any = None) -> int:
    """Hand back alerts whose worker died, then queue every alert that is due and not leased. Returns how many."""
    now = now or timezone.now()
    sweep_expired_leases(now=now)
    with transaction.atomic():
        ids = list(
            StaffAlert.objects.filter(status=Status.PENDING, due_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by("due_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[: settings.AFTERCARE_REMINDER_BATCH_SIZE]
        )
        if ids:
            StaffAlert.objects.filter(pk__in=ids).update(
                lease_until=now + _seconds("AFTERCARE_REMINDER_QUEUE_LEASE_SECONDS")
            )
            queue_after_commit(enqueue_ids or enqueue, ids)
    return len(ids)


def sweep_expired_leases(*, now: dt.datetime | None = None) -> int:
    """An alert still "sending" past its lease: the worker died. It is sent again to whoever did not get it."""
    now = now or timezone.now()
    expired = StaffAlert.objects.filter(status=Status.SENDING, lease_until__lt=now)
    lost = "The worker stopped before confirming the send; it is sent again (the copy keeps the Message-ID)."
    swept = expired.filter(attempts__lt=settings.AFTERCARE_REMINDER_MAX_ATTEMPTS).update(
        status=Status.PENDING, lease_until=None, due_at=now, last_error=lost
    )
    swept += expired.filter(attempts__gte=settings.AFTERCARE_REMINDER_MAX_ATTEMPTS).update(
        status=Status.FAILED, lease_until=None, last_error="The worker stopped during the last allowed attempt."
    )
    if swept:
        log.warning("Swept %s alerts to clinicians whose worker stopped", swept)
    return swept


def send_due_inline(*, now: dt.datetime | None = None) -> int:
    """The dispatcher without Celery (``manage.py send_due_reminders``): sweep, then send every due alert here.

    Alerts leased to a task that may still be in the broker are sent too: whichever comes
    second finds the alert no longer pending and sends nothing.
    """
    now = now or timezone.now()
    sweep_expired_leases(now=now)
    due = StaffAlert.objects.filter(status=Status.PENDING, due_at__lte=now).order_by("due_at")
    ids = list(due.values_list("pk", flat=True)[: settings.AFTERCARE_REMINDER_BATCH_SIZE])
    # Each on its own clock: a long pass must not date the last alert, nor its lease, from the first.
    return sum(1 for pk in ids if send_alert(alert_id=pk) != SendOutcome.NOT_CLAIMED)


# --- sending ---------------------------------------------------------------------------------


def clinician_emails(clinic_id: int) -> list[str]:
    """Addresses of the clinic's active clinicians."""
    return sorted(
        set(
            Membership.objects.filter(clinic_id=clinic_id, role=Role.CLINICIAN, is_active=True, user__is_active=True)
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )


def send_alert(*, alert_id: int, now: dt.datetime | None = None) -> SendOutcome:
    """Email one pending alert to each clinician who has not had it yet; record who got it, or why not.

    Does nothing (``NOT_CLAIMED``) unless the alert is pending and due: a duplicated
    task message sends nothing twice. Every write after the claim names this attempt,
    so a worker whose lease was handed to another (it was too slow) changes nothing.
    """
    now = now or timezone.now()
    claimed = StaffAlert.objects.filter(pk=alert_id, status=Status.PENDING, due_at__lte=now).update(
        status=Status.SENDING, attempts=F("attempts") + 1,
        lease_until=now + _seconds("AFTERCARE_REMINDER_SEND_LEASE_SECONDS"),
    )
    if claimed != 1:
        return SendOutcome.NOT_CLAIMED
    alert = StaffAlert.objects.select_related(
        "clinic", "adverse_event__treatment__patient", "adverse_event__arm", "assessment__treatment__patient",
    ).get(pk=alert_id)
    mine = StaffAlert.objects.filter(pk=alert.pk, status=Status.SENDING, attempts=alert.attempts)
    moot = _no_longer_needed(alert)
    if moot:
        return _finish(mine, alert, status=Status.CANCELLED, error=moot, now=now)
    connection = None
    refused: list[str] = []
    try:
        already = {address.lower() for address in alert.sent_to}
        recipients = [address for address in clinician_emails(alert.clinic_id) if address.lower() not in already]
        if not recipients and not alert.sent_to:
            return _finish(mine, alert, status=Status.FAILED, error=NOBODY_TO_EMAIL, now=now)
        subject, text, html = _render(alert)
        connection = get_connection()
        connection.open()  # one SMTP conversation for every clinician of this alert
        for address in recipients:
            message = EmailMultiAlternatives(subject=subject, body=text, to=[address],
                                             headers={"Message-ID": alert.message_id(address)}, connection=connection)
            message.attach_alternative(html, "text/html")
            try:
                message.send(fail_silently=False)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as error:
                # This address's own refusal (at RCPT, or at DATA: one message per clinician). The clinic's
                # sender or sign-in refused, or the connection lost, stops the whole attempt instead.
                problem = classify_send_error(error)
                if not problem.permanent:
                    raise
                refused.append(f"{address}: {problem.message}")  # this address needs a person; the others go on
                continue
            alert.sent_to = [*alert.sent_to, address]
            # Written at once: if the worker dies at the next address, a retry does not email this one again.
            if not mine.update(sent_to=alert.sent_to):
                return SendOutcome.NOT_CLAIMED  # the lease went to another attempt, which carries on
            _mark_notified(alert, now=now)
    except Exception as error:  # noqa: BLE001 - every failure is recorded on the row and retried or failed
        problem = classify_send_error(error)
        if problem.message.startswith("Unexpected"):
            log.exception("Alert %s could not be sent", alert.pk)
        if problem.permanent:  # the clinic's sender or sign-in refused, or the whole message: mend, then send again
            return _finish(mine, alert, status=Status.FAILED, now=now, error=problem.message)
        if alert.attempts >= settings.AFTERCARE_REMINDER_MAX_ATTEMPTS:
            return _finish(mine, alert, status=Status.FAILED, now=now,
                           error=f"{problem.message} (gave up after {alert.attempts} attempts)")
        mine.update(status=Status.PENDING, lease_until=None, last_error=problem.message,
                    due_at=now + retry_delay(alert.attempts))
        return SendOutcome.RETRY
    finally:
        if connection is not None:
            connection.close()
    if refused:
        # Those who got it are kept; the refused addresses need mending by a person, not a retry.
        return _finish(mine, alert, status=Status.FAILED, now=now, error="The mail server refused " + "; ".join(refused))
    return _finish(mine, alert, status=Status.SENT, now=now, error="")


def _no_longer_needed(alert: StaffAlert) -> str:
    """Why the alert need not go out any more, or "": what it is about changed since it was raised."""
    if alert.adverse_event_id is not None:
        event = alert.adverse_event
        if event.severity not in NOTIFY_SEVERITIES:
            return f"Not sent: the event was corrected to {event.get_severity_display().lower()} before it went out."
        return ""
    report = alert.assessment
    if not report.problem_flagged:
        return "Not sent: the patient took the problem back before it went out."
    if report.flag_reviewed_at is not None:
        return "Not sent: a colleague reviewed the problem before it went out."
    return ""


def _finish(mine: Any, alert: StaffAlert, *, status: str, error: str, now: dt.datetime) -> SendOutcome:
    sent_at = now if status == Status.SENT else None
    if not mine.update(status=status, lease_until=None, last_error=error, sent_at=sent_at):
        return SendOutcome.NOT_CLAIMED
    if status == Status.FAILED:
        log.warning("Alert %s to the clinicians of clinic %s not delivered: %s", alert.pk, alert.clinic_id, error)
        return SendOutcome.FAILED
    return SendOutcome.SKIPPED if status == Status.CANCELLED else SendOutcome.SENT


def _mark_notified(alert: StaffAlert, *, now: dt.datetime) -> None:
    if alert.adverse_event_id is not None:
        AdverseEvent.objects.filter(pk=alert.adverse_event_id, notified_at__isnull=True).update(notified_at=now)


def _render(alert: StaffAlert) -> tuple[str, str, str]:
    """Subject, text and HTML: what happened and where to look, with minimal health data (no names)."""
    if alert.kind == StaffAlert.Kind.ADVERSE_EVENT:
        event = alert.adverse_event
        template = "adverse_event"
        context = {
            "event": event, "clinic": alert.clinic, "treatment": event.treatment,
            "admin_url": settings.SITE_URL + reverse("admin:patients_adverseevent_change", args=[event.pk]),
        }
    else:
        assessment = alert.assessment
        template = "adverse_event_flagged_by_patient"
        context = {
            "assessment": assessment, "clinic": alert.clinic, "treatment": assessment.treatment,
            # The treatment's page shows the patient's reports in context, with "Mark reviewed".
            "admin_url": settings.SITE_URL
            + reverse("admin:patients_treatment_change", args=[assessment.treatment_id]) + "#patient-reports",
        }
    subject = " ".join(render_to_string(f"emails/{template}_subject.txt", context).split())
    return subject, render_to_string(f"emails/{template}.txt", context), render_to_string(f"emails/{template}.html", context)


# --- by hand -----------------------------------------------------------------------------------


def may_send_again(user: Any, clinic_id: int) -> bool:
    """Clinicians, and the clinic's admins who mend the addresses, may send an undelivered alert again."""
    return can(user, Capability.LOG_OUTCOMES, clinic_id) or can(user, Capability.MANAGE_CLINIC, clinic_id)


def send_again(*, alert: StaffAlert, by: Any, request: HttpRequest | None = None,
               now: dt.datetime | None = None) -> StaffAlert:
    """A failed alert goes out again to every clinician who has not had it (after an address was added or mended).

    PermissionDenied unless ``by`` is a clinician or clinic admin of the alert's clinic;
    ValidationError unless it failed and is still needed.
    """
    if not may_send_again(by, alert.clinic_id):
        raise PermissionDenied("Only clinicians and clinic admins of this clinic may send its alerts again.")
    now = now or timezone.now()
    with transaction.atomic():
        # of=("self",): PostgreSQL locks no row of the nullable side of an outer join (the event, the report).
        locked = (StaffAlert.objects.select_for_update(of=("self",)).select_related("adverse_event", "assessment")
                  .get(pk=alert.pk))
        if locked.status != Status.FAILED:
            raise ValidationError(f"This alert is {locked.get_status_display().lower()}; only one not delivered "
                                  "can be sent again.")
        moot = _no_longer_needed(locked)
        if moot:
            raise ValidationError(moot.replace("Not sent:", "It is no longer needed:", 1))
        previous_error = locked.last_error
        _reopen(locked, now=now)
        record_event(actor=by, action="staff_alert.send_again", clinic=locked.clinic, obj=locked, request=request,
                     detail={"previous_error": previous_error, "already_sent_to": len(locked.sent_to)})
    return locked


def alert_again_about(*, event: AdverseEvent, by: Any, request: HttpRequest | None = None) -> StaffAlert | None:
    """A new alert about ``event`` when no clinician has been told of it and none is on its way; else None."""
    if not can(by, Capability.LOG_OUTCOMES, event.treatment.clinic_id):
        raise PermissionDenied("Only clinical staff of this clinic may alert its clinicians.")
    with transaction.atomic():
        locked = AdverseEvent.objects.select_for_update().select_related("treatment").get(pk=event.pk)
        if locked.notified_at is not None or adverse_event_alert_open(locked):
            return None
        alert = alert_adverse_event(locked)
        record_event(actor=by, action="staff_alert.raise", clinic=alert.clinic, obj=alert, request=request,
                     detail={"adverse_event": locked.pk})
    return alert
