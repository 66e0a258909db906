"""The treatment page's patient reports say when the answers shown were last sent, and "corrected" when the
patient changed them since (the page showed the first submission's time next to corrected answers)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from patients.links import create_link
from patients.models import PatientLink
from patients.outcomes import record_self_report
from tests.factories import TreatmentFactory

pytestmark = pytest.mark.django_db
FIRST = dt.datetime(2026, 3, 20, 18, 0, tzinfo=dt.UTC)  # 18:00 in London, the clinic's clock
LATER = FIRST + dt.timedelta(hours=2, minutes=15)


@pytest.fixture
def treatment(clinic_a):
    ended = FIRST - dt.timedelta(days=3, hours=6)
    return TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1),
                            ended_at=ended)


def _send(treatment, when: dt.datetime, **answers) -> None:
    with time_machine.travel(when, tick=False):
        link = create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                           time_point_day=3)
        record_self_report(link=link, answers={"erythema": 2, "pain": 3, "notes": "Warm", **answers})


def _sent_cell(client, user, treatment) -> str:
    client.force_login(user)
    body = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk])).content.decode()
    row = body.split('data-report=')[1]
    return row.split("<td>")[2].split("</td>")[0]


def test_a_report_sent_once_shows_when_it_was_sent(client, clinician, treatment):
    _send(treatment, FIRST)
    cell = _sent_cell(client, clinician, treatment)
    assert "Fri 2026-03-20 18:00" in cell
    assert "corrected" not in cell


def test_a_corrected_report_shows_when_the_correction_was_sent_and_says_corrected(client, clinician, treatment):
    _send(treatment, FIRST)
    _send(treatment, LATER, pain=7, notes="Throbbing now")
    cell = _sent_cell(client, clinician, treatment)
    assert cell.index("Fri 2026-03-20 20:15") < cell.index("corrected (first sent Fri 2026-03-20 18:00)")


def test_the_same_answers_sent_again_are_not_called_corrected(client, clinician, treatment):
    # Nothing new was sent (a second tap, a re-sent form): the report stays as first sent, with no history row.
    _send(treatment, FIRST)
    _send(treatment, LATER)
    cell = _sent_cell(client, clinician, treatment)
    assert "Fri 2026-03-20 18:00" in cell
    assert "corrected" not in cell and "sent again" not in cell


def test_answers_changed_and_changed_back_were_sent_again_unchanged(client, clinician, treatment):
    _send(treatment, FIRST)
    _send(treatment, LATER - dt.timedelta(hours=1), pain=7)
    _send(treatment, LATER)
    cell = _sent_cell(client, clinician, treatment)
    assert "Fri 2026-03-20 20:15" in cell
    assert "corrected" not in cell and "sent again unchanged" in cell
