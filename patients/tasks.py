"""Celery tasks: thin wrappers that take ids and call ``patients.reminders`` and ``patients.staff_alerts``.

No reminder or alert is ever scheduled with an ETA or countdown: the outbox row holds
the due time and the dispatcher, run every minute by beat, queues the send
only when it is due (DESIGN.md).
"""

from __future__ import annotations

from celery import shared_task

from patients import reminders, staff_alerts


@shared_task(name="patients.send_reminder", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def send_reminder_task(reminder_id: int) -> str:
    # acks_late: the message is acknowledged only after the task ran, so a
    # worker killed mid-task does not swallow it; the row's conditional update
    # makes a redelivered copy harmless.
    return reminders.send_reminder(reminder_id=reminder_id).value


@shared_task(name="patients.dispatch_due_reminders", ignore_result=True)
def dispatch_due_reminders_task() -> int:
    return reminders.dispatch_due()


@shared_task(name="patients.sweep_reminder_leases", ignore_result=True)
def sweep_reminder_leases_task() -> int:
    return reminders.sweep_expired_leases()


@shared_task(name="patients.send_staff_alert", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def send_staff_alert_task(alert_id: int) -> str:
    # As a reminder's: acknowledged after it ran; the row's conditional update makes a redelivered copy harmless.
    return staff_alerts.send_alert(alert_id=alert_id).value


@shared_task(name="patients.dispatch_staff_alerts", ignore_result=True)
def dispatch_staff_alerts_task() -> int:
    return staff_alerts.dispatch_due()
