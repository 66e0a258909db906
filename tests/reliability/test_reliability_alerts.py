"""An alert to clinicians through a real Celery worker on real Redis to a real SMTP server.

Its broker message is lost (Redis flushed) after the event committed; one
clinician's server says "try later" once, another address is gone for good.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
import redis
from django.utils import timezone

from clinic.celery import app as celery_app
from clinic.models import Role
from patients import staff_alerts
from patients.models import AdverseEvent, StaffAlert
from patients.outcomes import record_adverse_event
from patients.tasks import send_staff_alert_task
from tests.factories import TreatmentFactory, staff
from tests.reliability.harness import report

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def redis_enqueue(broker_url: str):
    def enqueue(ids: list[int]) -> None:
        with celery_app.connection_for_write(broker_url) as conn:
            for alert_id in ids:
                send_staff_alert_task.apply_async((alert_id,), connection=conn)

    return enqueue


def test_an_alert_whose_message_redis_lost_reaches_every_clinician_once(
    worker, smtp_server, broker_url, clinic_a, monkeypatch
):
    clinician = staff(Role.CLINICIAN, clinic_a, email="a-clinician@staff.example")
    busy = staff(Role.CLINICIAN, clinic_a, email="b-busy@staff.example")
    gone = staff(Role.CLINICIAN, clinic_a, email="c-gone@staff.example")

    def policy(message_id: str, recipient: str, attempt: int) -> str:
        if recipient == gone.email:
            return "550 5.1.1 No such user"
        if recipient == busy.email and attempt == 1:
            return "451 4.3.0 Try again later"
        return "250 OK"

    smtp_server.handler.policy = policy
    enqueue = redis_enqueue(broker_url)
    monkeypatch.setattr(staff_alerts, "enqueue", enqueue)
    ended = timezone.now() - dt.timedelta(days=3)
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1),
                                 ended_at=ended)
    event = record_adverse_event(treatment=treatment, by=clinician, kind="infection", severity="severe",
                                 onset_date=timezone.localdate() - dt.timedelta(days=1))
    broker = redis.Redis.from_url(broker_url)
    in_redis = broker.llen("celery")
    broker.flushdb()  # as a Redis restart without persistence would, before any worker read it

    worker.start()
    started = time.monotonic()
    while StaffAlert.objects.filter(status__in=[StaffAlert.Status.PENDING, StaffAlert.Status.SENDING]).exists():
        if time.monotonic() - started > 90:
            pytest.fail(f"The alert was not settled after 90 s: {list(StaffAlert.objects.values())}\n"
                        f"{worker.log_tail()}")
        staff_alerts.dispatch_due(enqueue_ids=enqueue)  # this process plays beat
        time.sleep(0.5)

    alert = StaffAlert.objects.get(adverse_event=event)
    accepted = [received.recipient for received in smtp_server.handler.accepted]
    report("alert to clinicians, Redis flushed", messages_flushed=in_redis, accepted=len(accepted),
           attempts=alert.attempts, status=alert.status, seconds=round(time.monotonic() - started, 1))
    assert in_redis == 1
    assert sorted(accepted) == [clinician.email, busy.email]  # each once: the retry skipped who had it
    assert sorted(alert.sent_to) == [clinician.email, busy.email]
    assert alert.status == StaffAlert.Status.FAILED  # one address is gone: a person must mend it
    assert alert.last_error == "The mail server refused c-gone@staff.example: 550 5.1.1 No such user"
    assert AdverseEvent.objects.get(pk=event.pk).notified_at is not None
