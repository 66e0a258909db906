"""Outcome checks that have passed with no clinician entry, as counted on the staff dashboard."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from patients.models import OutcomeAssessment, Treatment
from patients.outcome_status import outcomes_awaiting_count
from tests.factories import StepFactory, TreatmentFactory, VersionFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def version(clinic_a):
    version = VersionFactory(protocol__clinic=clinic_a)
    StepFactory(version=version, kind="outcome_check", timing="local_time", day=3)
    StepFactory(version=version, kind="outcome_check", timing="offset", offset_value=7, offset_unit="days", day=None)
    StepFactory(version=version, kind="home_application", timing="local_time", day=1)
    return version


def _treatment(clinic, version, days_ago, **kwargs):
    ended = NOW - dt.timedelta(days=days_ago)
    return TreatmentFactory(
        screening__patient__clinic=clinic, screening__protocol_version=version,
        started_at=ended - dt.timedelta(hours=1), ended_at=ended, **kwargs,
    )


def _entry(treatment, day, source="clinician"):
    OutcomeAssessment.objects.create(treatment=treatment, time_point_day=day, source=source, erythema=1)


def test_it_counts_passed_checks_without_a_clinician_entry(clinic_a, clinic_b, version, django_assert_num_queries):
    ten_days = _treatment(clinic_a, version, 10)
    _entry(ten_days, 3)  # day 3 entered, day 7 awaiting → 1
    _treatment(clinic_a, version, 5)  # day 3 passed and not entered, day 7 still to come → 1
    patient_only = _treatment(clinic_a, version, 10)
    _entry(patient_only, 3)
    _entry(patient_only, 7, source="patient")  # the patient's own report is not the clinician's check → 1
    complete = _treatment(clinic_a, version, 10)
    _entry(complete, 3)
    _entry(complete, 7)
    _treatment(clinic_a, version, 10, status=Treatment.Status.CANCELLED)
    _treatment(clinic_a, version, 200)  # long past: a gap in the record, not today's work
    _treatment(clinic_a, VersionFactory(protocol__clinic=clinic_a), 10)  # no outcome checks in its protocol
    other_version = VersionFactory(protocol__clinic=clinic_b)
    StepFactory(version=other_version, kind="outcome_check", timing="local_time", day=3)
    _treatment(clinic_b, other_version, 10)

    with django_assert_num_queries(2):
        assert outcomes_awaiting_count(clinic=clinic_a, now=NOW) == 3
    assert outcomes_awaiting_count(clinic=clinic_b, now=NOW) == 1


def test_a_check_is_awaiting_from_the_moment_its_day_has_passed(clinic_a, version):
    treatment = _treatment(clinic_a, version, 0)
    assert outcomes_awaiting_count(clinic=clinic_a, now=treatment.ended_at + dt.timedelta(days=3) - dt.timedelta(seconds=1)) == 0
    assert outcomes_awaiting_count(clinic=clinic_a, now=treatment.ended_at + dt.timedelta(days=3)) == 1


def test_the_dashboard_shows_the_count(client, clinician, clinic_a, version):
    _treatment(clinic_a, version, 10)
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    assert f'data-metric="outcomes_awaiting"><a href="/admin/patients/outcomeassessment/awaiting/?clinic={clinic_a.pk}"' in body
    assert body.split('data-metric="outcomes_awaiting"')[1].split("</td>")[0].endswith(">2</a>")
