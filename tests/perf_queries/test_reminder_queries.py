"""A reminder email's signed links cost one read and one write, however many it carries.

The worker sends thousands of reminders in a burst (tests/perf, benchmark 1);
each query per email is paid thousands of times.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from patients import reminders
from patients.emails import reminder_links
from patients.links import read_link
from patients.models import PatientLink, Reminder
from tests.factories import PatientFactory, ReminderFactory, StepFactory, TreatmentFactory


def outcome_check_reminder(clinic) -> Reminder:
    patient = PatientFactory(clinic=clinic)
    treatment = TreatmentFactory(screening__patient=patient, ended_at=timezone.now() - dt.timedelta(days=3))
    step = StepFactory(version=treatment.protocol_version, kind="outcome_check", day=3)
    reminder = ReminderFactory(treatment=treatment, step=step)
    return Reminder.objects.select_related("step", "treatment__patient__clinic", "treatment__clinic").get(pk=reminder.pk)


def test_the_first_attempt_reads_once_and_writes_its_three_links_at_once(clinic_a):
    reminder = outcome_check_reminder(clinic_a)
    with CaptureQueriesContext(connection) as queries:
        links = reminder_links(reminder=reminder)
    assert len(queries.captured_queries) == 2
    urls = (links.done, links.unsubscribe, links.self_report)
    assert {read_link(url.rstrip("/").rsplit("/", 1)[-1]).purpose for url in urls} == {"done", "unsubscribe", "self_report"}


def test_a_retry_reuses_the_links_with_one_read(clinic_a):
    reminder = outcome_check_reminder(clinic_a)
    first = reminder_links(reminder=reminder)
    with CaptureQueriesContext(connection) as queries:
        again = reminder_links(reminder=reminder)
    assert len(queries.captured_queries) == 1
    assert again == first
    assert PatientLink.objects.filter(reminder=reminder).count() == 3


def _queued(clinic, kind: str, language: str = "en") -> Reminder:
    patient = PatientFactory(clinic=clinic, preferred_language=language)
    treatment = TreatmentFactory(screening__patient=patient, ended_at=timezone.now() - dt.timedelta(days=3))
    avoidance = {"avoid_until_day": 5} if kind == "avoidance" else {}  # the email says until when
    step = StepFactory(version=treatment.protocol_version, kind=kind, day=3, **avoidance)
    return ReminderFactory(treatment=treatment, step=step, status=Reminder.Status.QUEUED,
                           due_at=timezone.now() - dt.timedelta(minutes=1))


@pytest.mark.parametrize(("kind", "language"), [
    ("instruction", "en"), ("home_application", "de"), ("outcome_check", "en"), ("follow_up_visit", "en"),
    ("avoidance", "de"),
])
def test_sending_a_reminder_costs_the_same_few_queries_whatever_it_carries(clinic_a, settings, kind, language):
    # Claim, read the row with its step, treatment, clinic and patient, write the links, record the result.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    reminder = _queued(clinic_a, kind, language)
    with CaptureQueriesContext(connection) as queries:
        assert reminders.send_reminder(reminder_id=reminder.pk) == reminders.SendOutcome.SENT
    statements = [query["sql"].split()[0] for query in queries.captured_queries]
    assert [s for s in statements if s not in ("SAVEPOINT", "RELEASE")] == ["UPDATE", "SELECT", "INSERT", "UPDATE"]
