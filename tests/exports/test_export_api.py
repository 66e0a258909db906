"""/api/v1/exports/: the same exports through the API, for auditors and clinic admins only."""

from __future__ import annotations

import hashlib
import json
from unittest import mock

import pytest
from fhir.resources.R4B.bundle import Bundle
from rest_framework.test import APIClient

from clinic.models import AuditEvent, Role
from patients import export_tasks
from patients.models import Export
from tests.exports.helpers import csv_rows
from tests.factories import staff

pytestmark = pytest.mark.django_db
OUTCOMES = "/api/v1/exports/outcomes/"
REMINDERS = "/api/v1/exports/reminders/"


@pytest.fixture
def api():
    return APIClient()


def test_it_streams_the_outcome_log_as_csv(api, auditor, outcome_data):
    api.force_authenticate(auditor)

    response = api.get(OUTCOMES, {"format": "csv", "identified": "true"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content)
    assert len(csv_rows(body)) == len(outcome_data.assessments)
    export = Export.objects.get(pk=response["X-Export-Id"])
    assert export.manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert AuditEvent.objects.filter(action="export.run", object_id=str(export.pk)).exists()


def test_it_answers_the_url_without_a_trailing_slash_by_redirecting(api, auditor, outcome_data):
    api.force_authenticate(auditor)

    response = api.get("/api/v1/exports/outcomes?format=fhir", follow=True)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    Bundle.model_validate_json(b"".join(response.streaming_content))


def test_it_exports_the_reminder_ledger_as_xlsx(api, clinic_admin, outcome_data):
    api.force_authenticate(clinic_admin)

    response = api.get(REMINDERS, {"format": "xlsx"})

    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"PK")


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.CLINICIAN])
@pytest.mark.parametrize("url", [OUTCOMES, REMINDERS, "/api/v1/exports/"])
def test_it_refuses_people_without_the_export_role(api, clinic_a, outcome_data, role, url):
    api.force_authenticate(staff(role, clinic_a))

    response = api.get(url, {"format": "csv"})

    assert response.status_code == 403
    assert not Export.objects.exists()


def test_it_refuses_anonymous_callers(api, outcome_data):
    assert api.get(OUTCOMES).status_code in (401, 403)


def test_it_answers_bad_parameters_with_field_errors_and_starts_nothing(api, auditor, clinic_b, outcome_data):
    api.force_authenticate(auditor)

    response = api.get(OUTCOMES, {"format": "pdf", "date_from": "yesterday", "clinic": clinic_b.pk})

    assert response.status_code == 400
    assert set(response.json()) == {"format", "date_from", "clinic"}
    assert not Export.objects.exists()


def test_it_refuses_rules_the_service_enforces_with_field_errors(api, auditor, outcome_data):
    api.force_authenticate(auditor)

    response = api.get(REMINDERS, {"format": "fhir"})
    assert response.status_code == 400
    assert response.json() == {"format": ["The reminder ledger is exported as CSV or XLSX."]}
    response = api.get(OUTCOMES, {"date_from": "2026-03-10", "date_to": "2026-03-01"})
    assert response.json() == {"date_to": ["The end date is before the start date."]}


def test_it_asks_which_clinic_when_the_person_may_export_several(api, auditor, clinic_a, clinic_b, outcome_data):
    staff_membership = auditor.memberships.model
    staff_membership.objects.create(user=auditor, clinic=clinic_b, role=Role.AUDITOR)
    api.force_authenticate(auditor)

    assert "clinic" in api.get(OUTCOMES).json()
    assert api.get(OUTCOMES, {"clinic": clinic_b.pk}).status_code == 200


def test_it_runs_large_exports_as_a_job_with_download_and_manifest_links(
    api, auditor, clinic_a, outcome_data, settings, django_capture_on_commit_callbacks
):
    settings.AFTERCARE_EXPORT_INLINE_MAX_ROWS = 1
    api.force_authenticate(auditor)
    with mock.patch.object(export_tasks.run_export, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        response = api.get(OUTCOMES, {"format": "csv"})

    assert response.status_code == 202
    job = response.json()
    delay.assert_called_once_with(job["id"])
    assert response["Location"].endswith(f"/api/v1/exports/{job['id']}/")
    assert job["status"] == "pending" and job["download_url"] is None

    export_tasks.run_export(job["id"])
    job = api.get(f"/api/v1/exports/{job['id']}/").json()
    assert job["status"] == "done" and job["percent"] == 100
    body = b"".join(api.get(job["download_url"]).streaming_content)
    manifest = json.loads(api.get(job["manifest_url"]).content)
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest() == job["sha256"]
    assert AuditEvent.objects.filter(action="export.download").count() == 1


def test_it_lists_and_serves_only_the_callers_clinics_exports(api, auditor, clinic_a, clinic_b, outcome_data):
    ours = Export.objects.create(clinic=clinic_a, requested_by=auditor)
    export_tasks.run_export(ours.pk)
    other_auditor = staff(Role.AUDITOR, clinic_b)
    theirs = Export.objects.create(clinic=clinic_b, requested_by=other_auditor)
    export_tasks.run_export(theirs.pk)
    api.force_authenticate(auditor)

    listed = api.get("/api/v1/exports/").json()
    assert [row["id"] for row in listed["results"]] == [ours.pk]
    assert api.get(f"/api/v1/exports/{theirs.pk}/").status_code == 404
    assert api.get(f"/api/v1/exports/{theirs.pk}/download/").status_code == 404
    assert api.get(f"/api/v1/exports/{theirs.pk}/manifest/").status_code == 404
    assert api.get(f"/api/v1/exports/{ours.pk}/download/").status_code == 200
