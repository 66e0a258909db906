"""Staff pages read and take times on the clinic's clock, and say which clock that is."""

from __future__ import annotations

import datetime as dt

import pytest

from clinic.models import Role
from tests.factories import ClinicFactory, MembershipFactory, PatientFactory, staff

pytestmark = pytest.mark.django_db

# 23:30 UTC on 4 May is 09:30 on 5 May in Sydney (AEST, UTC+10).
CONSENTED = dt.datetime(2026, 5, 4, 23, 30, tzinfo=dt.UTC)


@pytest.fixture
def sydney():
    return ClinicFactory(name="Bondi Skin", slug="bondi", time_zone="Australia/Sydney")


def _consent_inputs(client, patient) -> str:
    body = client.get(f"/admin/patients/patient/{patient.pk}/change/").content.decode()
    assert body.count('name="consent_at_0"') == 1
    return body


def test_a_clinics_staff_see_and_type_times_on_its_clock(client, sydney):
    patient = PatientFactory(clinic=sydney, consent_at=CONSENTED)
    client.force_login(staff(Role.CLINICIAN, sydney, username="bondi_clinician"))

    body = _consent_inputs(client, patient)

    assert 'name="consent_at_0" value="2026-05-05"' in body
    assert 'name="consent_at_1" value="09:30:00"' in body
    assert "Times: Australia/Sydney." in body


def test_staff_of_clinics_on_different_clocks_keep_utc_and_are_told(client, sydney, clinic_b):
    patient = PatientFactory(clinic=sydney, consent_at=CONSENTED)
    user = staff(Role.CLINICIAN, sydney, username="two_zones")
    MembershipFactory(user=user, clinic=clinic_b, role=Role.CLINICIAN)
    client.force_login(user)

    body = _consent_inputs(client, patient)

    assert 'name="consent_at_0" value="2026-05-04"' in body
    assert 'name="consent_at_1" value="23:30:00"' in body
    assert "Times: UTC (your clinics are in different time zones)." in body


def test_the_clock_is_read_with_the_roles_in_one_query(client, sydney):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(staff(Role.CLINICIAN, sydney, username="bondi_counter"))
    client.get("/admin/")  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as queries:
        client.get("/admin/")
    roles = [q["sql"] for q in queries.captured_queries if '"clinic_membership"."role"' in q["sql"]]
    assert len(roles) == 1, roles
    assert '"clinic_clinic"."time_zone"' in roles[0]
