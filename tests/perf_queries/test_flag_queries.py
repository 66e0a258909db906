"""Problems patients flagged: the API's open and reviewed lists and the admin's "Mark reviewed" page run as
many queries for three problems as for one (no query per row for the reviewer, the patient or the clinic)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.settings import api_settings

from patients.models import OutcomeAssessment
from patients.outcomes import review_problem_flag
from tests.perf_queries.conftest import ROWS
from tests.perf_queries.test_list_queries import SIZES, _queries

pytestmark = pytest.mark.django_db


@pytest.fixture
def flagged(busy_clinic) -> list[OutcomeAssessment]:
    """The busy clinic's ``ROWS`` self-reports, each with a problem flagged."""
    reports = OutcomeAssessment.objects.filter(treatment__clinic__slug="busy", source=OutcomeAssessment.Source.PATIENT)
    assert reports.update(problem_flagged=True) == ROWS
    return list(reports.order_by("pk"))


def _api_counts(client, monkeypatch, problem_flag: str) -> dict[int, int]:
    """Queries per page size of ``?problem_flag=…``, checking each page holds that many of the flagged reports."""
    url = reverse("outcome-list") + f"?problem_flag={problem_flag}"
    client.get(url)  # first-request caches are not the list's
    counts = {}
    for size in SIZES:
        monkeypatch.setattr(api_settings.DEFAULT_PAGINATION_CLASS, "page_size", size)
        counts[size], response = _queries(client, url)
        rows = response.json()["results"]
        assert len(rows) == size
        assert {(row["problem_flagged"], row["flag_reviewed_at"] is None) for row in rows} == {
            (True, problem_flag == "open")
        }
    return counts


def test_the_open_problems_list_runs_as_many_queries_for_three_rows_as_for_one(client, busy_clinic, flagged, monkeypatch):
    client.force_login(busy_clinic)

    counts = _api_counts(client, monkeypatch, "open")

    assert counts[1] == counts[ROWS], counts


def test_the_reviewed_problems_list_runs_as_many_queries_for_three_rows_as_for_one(
    client, busy_clinic, flagged, monkeypatch
):
    reviewers = [busy_clinic, get_user_model().objects.get(username="busy_clinician")]
    for number, report in enumerate(flagged):  # by different people, so a reviewer read per row would show
        review_problem_flag(assessment=report, by=reviewers[number % 2], note=f"Note {number}")
    client.force_login(busy_clinic)

    counts = _api_counts(client, monkeypatch, "reviewed")

    assert counts[1] == counts[ROWS], counts


def test_the_mark_reviewed_page_runs_as_many_queries_for_three_problems_as_for_one(client, busy_clinic, flagged):
    review_problem_flag(assessment=flagged[0], by=busy_clinic, note="Seen")  # one listed as already reviewed
    client.force_login(busy_clinic)
    url = reverse("admin:patients_problemflag_changelist")
    client.get(url)
    counts = {}
    for size in SIZES:
        selected = {"action": "mark_reviewed", "_selected_action": [report.pk for report in flagged[-size:]]}
        with CaptureQueriesContext(connection) as captured:
            response = client.post(url, selected)
        counts[size] = len(captured.captured_queries)
        assert response.status_code == 200
        assert response.content.decode().count('name="_selected_action"') == size

    assert counts[1] == counts[ROWS], counts

