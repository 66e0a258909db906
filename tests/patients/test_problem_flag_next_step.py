"""The list of problems patients flagged leads on: to the patient, and for a clinician to an adverse event."""

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
NOW = dt.datetime(2026, 3, 20, 18, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def report(clinic_a):
    ended = NOW - dt.timedelta(days=3, hours=6)
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1),
                                 ended_at=ended)
    link = create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=3)
    assessment, _ = record_self_report(link=link, answers={"pain": 7, "problem_flagged": True,
                                                           "notes": "Blisters and a yellow crust"})
    return assessment


def _list(client, user):
    client.force_login(user)
    return client.get(reverse("admin:patients_problemflag_changelist")).content.decode()


def test_a_clinician_goes_from_the_flag_to_the_patient_and_to_recording_an_adverse_event(client, clinician, report):
    page = _list(client, clinician)
    assert f'href="{reverse("admin:patients_patient_change", args=[report.treatment.patient_id])}"' in page
    add = reverse("admin:patients_adverseevent_add") + f"?treatment={report.treatment_id}"
    assert f'<a href="{add}">Record adverse event…</a>' in page
    form = client.get(add).content.decode()
    assert f'name="treatment" value="{report.treatment_id}"' in form  # the form starts on that treatment


def test_a_coordinator_reviews_flags_but_is_not_offered_to_record_an_adverse_event(client, coordinator, report):
    page = _list(client, coordinator)
    assert "Blisters and a yellow crust" in page
    assert "Record adverse event" not in page
