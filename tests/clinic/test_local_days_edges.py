"""A day at the edge of the calendar (9999-12-31 for "no end") leaves its side of a range open, not a 500."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from clinic.local_days import day_bounds

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Sydney", "UTC"])
def test_the_first_and_last_days_a_date_can_hold_leave_the_range_open(zone):
    assert day_bounds(first_day=dt.date.min, last_day=dt.date.max, zone=ZoneInfo(zone)) == (None, None)
    start, end = day_bounds(first_day=dt.date(2026, 5, 4), last_day=dt.date(2026, 5, 4), zone=ZoneInfo(zone))
    assert (end - start) == dt.timedelta(days=1)


def test_exports_reports_and_the_review_page_take_9999_12_31(client, auditor, clinician):
    api = APIClient()
    api.force_authenticate(auditor)
    for url in ("/api/v1/exports/outcomes/?format=csv&date_to=9999-12-31",
                "/api/v1/exports/reminders/?format=csv&date_to=9999-12-31&date_from=0001-01-01"):
        response = api.get(url)
        assert response.status_code in (200, 202), (url, response.status_code)
    client.force_login(clinician)
    page = client.get("/admin/patients/outcomeassessment/review/?date_to=9999-12-31&date_from=0001-01-01")
    assert page.status_code == 200
