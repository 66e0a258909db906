"""A real Celery worker on real Redis, sending to a real SMTP server: killed, flushed, opted out.

The test process plays beat (sweep + dispatch twice a second); the worker is a
subprocess reading the same test database. Each scenario prints its figures.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import redis
from django.db.models import Count

from patients import reminders
from patients.models import Reminder
from tests.reliability.harness import due_reminders, redis_enqueue, reminder_of_message, report, run_beat, settled

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Status = Reminder.Status


def deliveries(smtp_server) -> dict[int, list[str]]:
    """Reminder id → Message-IDs of every accepted copy, the reminder told by the email's own link."""
    by_reminder: dict[int, list[str]] = defaultdict(list)
    for received in smtp_server.handler.accepted:
        by_reminder[reminder_of_message(received)].append(received.message_id)
    return by_reminder


def beat_until_settled(worker, broker_url, *, timeout: float, restart: bool = False) -> float:
    def keep_a_worker_running() -> None:
        if restart and not worker.alive:
            worker.start()

    try:
        return run_beat(until=settled, enqueue=redis_enqueue(broker_url), timeout=timeout, between=keep_a_worker_running)
    except TimeoutError as error:
        counts = dict(Reminder.objects.values_list("status").annotate(n=Count("pk")))
        pytest.fail(f"{error}; rows by status {counts}\n{worker.log_tail()}")


def test_it_loses_nothing_when_the_worker_is_killed_mid_run(worker, smtp_server, broker_url, clinic_a):
    total, kill_at = 200, (30, 70, 110, 150)
    ids = due_reminders(clinic=clinic_a, count=total)
    kills: list[int] = []

    def kill_in_the_duplicate_window(accepted: int) -> None:
        # Called after the server took the message and before the worker hears "250".
        if len(kills) < len(kill_at) and accepted >= kill_at[len(kills)]:
            kills.append(accepted)
            worker.kill()

    smtp_server.handler.delay = 0.01
    smtp_server.handler.on_accept = kill_in_the_duplicate_window
    worker.start()
    seconds = beat_until_settled(worker, broker_url, timeout=240, restart=True)

    delivered = deliveries(smtp_server)
    rows = {row.pk: row for row in Reminder.objects.filter(pk__in=ids)}
    lost = [pk for pk in ids if pk not in delivered]
    copies = sum(len(message_ids) for message_ids in delivered.values())
    duplicates = copies - len(delivered)
    sharing = sum(len(m) - 1 for pk, m in delivered.items() if len(m) > 1 and set(m) == {rows[pk].message_id})
    report(
        "worker SIGKILLed mid-run", reminders=total, kills=len(kills), worker_starts=worker.starts,
        emails_accepted=copies, sent=len(delivered), lost=len(lost), duplicates=duplicates,
        duplicates_sharing_message_id=sharing, seconds=round(seconds, 1),
    )
    assert len(kills) == len(kill_at)
    assert lost == []
    assert {row.status for row in rows.values()} == {Status.SENT}
    assert all(set(message_ids) == {rows[pk].message_id} for pk, message_ids in delivered.items())
    assert sharing == duplicates
    # Each kill lands in the window, so each leaves at least one copy; at most one per busy pool process.
    assert len(kill_at) <= duplicates <= 2 * len(kill_at)


def test_it_loses_nothing_when_redis_loses_the_queued_messages(worker, smtp_server, broker_url, clinic_a):
    total = 50
    ids = due_reminders(clinic=clinic_a, count=total)
    assert reminders.dispatch_due(enqueue=redis_enqueue(broker_url)) == total
    broker = redis.Redis.from_url(broker_url)
    in_redis = broker.llen("celery")
    broker.flushdb()  # as a Redis restart without persistence would
    assert Reminder.objects.filter(pk__in=ids, status=Status.QUEUED).count() == total

    worker.start()
    seconds = beat_until_settled(worker, broker_url, timeout=120)

    delivered = deliveries(smtp_server)
    lost = [pk for pk in ids if pk not in delivered]
    duplicates = sum(len(m) for m in delivered.values()) - len(delivered)
    report(
        "Redis flushed while queued", reminders=total, messages_flushed=in_redis, sent=len(delivered),
        lost=len(lost), duplicates=duplicates, seconds=round(seconds, 1),
    )
    assert in_redis == total
    assert lost == []
    assert duplicates == 0  # nothing had been sent before the flush
    assert set(Reminder.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Status.SENT}


def test_it_sends_nothing_to_a_patient_who_opted_out_after_scheduling(worker, smtp_server, broker_url, clinic_a):
    staying = due_reminders(clinic=clinic_a, count=5, patient_kwargs={"email": "stays@mail.example"})
    leaving = due_reminders(clinic=clinic_a, count=5, patient_kwargs={"email": "leaves@mail.example"})
    # Scheduled and already handed to the broker...
    assert reminders.dispatch_due(enqueue=redis_enqueue(broker_url)) == 10
    # ...when the patient unsubscribes.
    assert reminders.unsubscribe(patient=Reminder.objects.get(pk=leaving[0]).treatment.patient)

    worker.start()
    beat_until_settled(worker, broker_url, timeout=120)

    recipients = [received.recipient for received in smtp_server.handler.accepted]
    skipped = Reminder.objects.filter(pk__in=leaving, status=Status.SKIPPED).count()
    report(
        "opt-out between scheduling and sending", sent_to_opted_out=recipients.count("leaves@mail.example"),
        skipped=skipped, sent_to_others=recipients.count("stays@mail.example"),
    )
    assert "leaves@mail.example" not in recipients
    assert skipped == 5
    assert recipients.count("stays@mail.example") == 5
    assert set(Reminder.objects.filter(pk__in=staying).values_list("status", flat=True)) == {Status.SENT}


def _database_sessions() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_the_worker_keeps_its_database_and_smtp_connections_between_tasks(worker, smtp_server, broker_url, clinic_a):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("counts the database server's sessions: PostgreSQL only (SQLite has no server connections)")
    total = 60
    ids = due_reminders(clinic=clinic_a, count=total)
    sessions_before = _database_sessions()
    worker.extra_env = {"CONN_MAX_AGE": "60"}
    worker.start()
    beat_until_settled(worker, broker_url, timeout=120)
    worker.stop()  # its database sessions end and are counted
    sessions = _database_sessions() - sessions_before
    smtp_connections = len(smtp_server.handler.connections)
    report("connections reused by the worker", reminders=total, database_sessions=sessions,
           smtp_connections=smtp_connections)
    assert set(Reminder.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Status.SENT}
    # Two pool processes: a connection each (and the odd reconnect), not one per task.
    assert sessions <= 6
    assert smtp_connections <= 4
