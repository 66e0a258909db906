"""A treatment's timeline costs the same few queries however many of its reminders the mail server refused.

When a patient's address bounces, every reminder of theirs fails the same way,
and each failed one asks whether a resend would be refused: the admin page and
the API's timeline read the patient's email history once, not once a reminder.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from patients.models import Reminder, Treatment
from patients.treatments import timeline_for
from tests.factories import PatientFactory, ReminderFactory, StepFactory, TreatmentFactory

pytestmark = pytest.mark.django_db

STEPS = 5


def bounced(clinic, *, refused: int) -> Treatment:
    """A treatment with ``STEPS`` reminders, ``refused`` of them refused for good by the mail server, the rest sent."""
    patient = PatientFactory(clinic=clinic)
    treatment = TreatmentFactory(screening__patient=patient, ended_at=timezone.now() - dt.timedelta(days=6))
    for day in range(STEPS):
        step = StepFactory(version=treatment.protocol_version, day=day)
        failed = day < refused
        ReminderFactory(
            treatment=treatment, step=step, attempts=1, last_attempt_at=timezone.now() - dt.timedelta(days=1),
            status=Reminder.Status.FAILED if failed else Reminder.Status.SENT,
            last_error="550 5.1.1 user unknown" if failed else "",
        )
    return Treatment.objects.select_related("patient", "clinic", "protocol_version").get(pk=treatment.pk)


def timeline_queries(treatment: Treatment) -> int:
    with CaptureQueriesContext(connection) as queries:
        entries = timeline_for(treatment=treatment)
    refused = Reminder.objects.filter(treatment=treatment, status=Reminder.Status.FAILED).count()
    assert sum(1 for entry in entries if entry.resend_refusal) == refused
    return len(queries.captured_queries)


def test_a_timeline_reads_the_patients_email_history_once_however_many_reminders_were_refused(clinic_a):
    assert timeline_queries(bounced(clinic_a, refused=1)) == timeline_queries(bounced(clinic_a, refused=STEPS))
