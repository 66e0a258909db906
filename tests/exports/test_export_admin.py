"""The Exports admin: auditors and clinic admins export their own clinic; nobody else reaches it."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest

from clinic.models import AuditEvent, Role
from patients import export_tasks
from patients.exports import delete_expired_exports
from patients.models import Export
from tests.exports.conftest import NOW
from tests.exports.helpers import csv_rows
from tests.factories import staff

pytestmark = pytest.mark.django_db
ADD_URL = "/admin/patients/export/add/"


def _form(clinic, **overrides):  # noqa: ANN001, ANN202
    return {"clinic": clinic.pk, "kind": "outcomes", "format": "csv", "identified": "no", "date_handling": "shifted",
            **overrides}


def test_it_streams_a_small_export_as_a_download(client, auditor, clinic_a, outcome_data):
    client.force_login(auditor)

    response = client.post(ADD_URL, _form(clinic_a, identified="yes"))

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="outcomes-harbour-identified-')
    rows = csv_rows(b"".join(response.streaming_content))
    assert len(rows) == len(outcome_data.assessments)
    export = Export.objects.get(pk=response["X-Export-Id"])
    assert export.status == Export.Status.DONE
    assert export.streamed
    event = AuditEvent.objects.get(action="export.run")
    assert event.request_id == response["X-Request-Id"]
    assert event.detail["manifest"]["row_count"] == len(rows)


def test_a_clinic_admin_may_export_too(client, clinic_admin, clinic_a, outcome_data):
    client.force_login(clinic_admin)

    assert client.get(ADD_URL).status_code == 200
    assert client.post(ADD_URL, _form(clinic_a)).status_code == 200


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.CLINICIAN])
def test_it_refuses_people_without_the_export_role(client, clinic_a, outcome_data, role):
    client.force_login(staff(role, clinic_a))

    assert client.get(ADD_URL).status_code == 403
    assert client.post(ADD_URL, _form(clinic_a)).status_code == 403
    assert client.get("/admin/patients/export/").status_code == 403
    assert not Export.objects.exists()


def test_it_hides_the_exports_menu_from_a_coordinator(client, coordinator):
    client.force_login(coordinator)

    assert "/admin/patients/export/" not in client.get("/admin/").content.decode()


def test_it_offers_only_the_persons_own_clinics(client, auditor, clinic_a, clinic_b, outcome_data):
    client.force_login(auditor)

    response = client.post(ADD_URL, _form(clinic_b))

    assert response.status_code == 200
    assert not getattr(response, "streaming", False)
    assert "clinic" in response.context["form"].errors
    assert "Summit Dermatology" not in response.content.decode()
    assert not Export.objects.exists()


def test_it_shows_form_errors_and_changes_nothing(client, auditor, clinic_a, outcome_data):
    client.force_login(auditor)

    response = client.post(
        ADD_URL, _form(clinic_a, date_from="2026-03-10", date_to="2026-03-01", format="fhir", date_handling="day_offsets")
    )

    errors = response.context["form"].errors
    assert errors["date_to"] == ["The end date is before the start date."]
    assert "date_handling" in errors
    assert not Export.objects.exists()


def test_it_runs_a_large_export_in_the_background_with_a_progress_page(
    client, auditor, clinic_a, outcome_data, settings, django_capture_on_commit_callbacks
):
    settings.AFTERCARE_EXPORT_INLINE_MAX_ROWS = 2
    client.force_login(auditor)
    with mock.patch.object(export_tasks.run_export, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        response = client.post(ADD_URL, _form(clinic_a, format="xlsx"))

    export = Export.objects.get()
    delay.assert_called_once_with(export.pk)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/patients/export/{export.pk}/change/"

    page = client.get(response["Location"]).content.decode()
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "<progress" in page
    assert "<script" not in page.split("</head>")[1].split("<footer")[0]  # no inline script in the page body

    export_tasks.run_export(export.pk)
    page = client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert f"/admin/patients/export/{export.pk}/download/" in page

    download = client.get(f"/admin/patients/export/{export.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert b"".join(download.streaming_content).startswith(b"PK")
    assert AuditEvent.objects.filter(action="export.download", object_id=str(export.pk)).count() == 1

    manifest = client.get(f"/admin/patients/export/{export.pk}/manifest/").json()
    assert manifest["sha256"] == export.__class__.objects.get(pk=export.pk).sha256


def test_it_serves_a_file_only_to_the_requesters_clinic(client, auditor, clinic_a, clinic_b, outcome_data):
    export = Export.objects.create(clinic=clinic_a, requested_by=auditor, kind="outcomes", format="csv")
    export_tasks.run_export(export.pk)
    other_auditor = staff(Role.AUDITOR, clinic_b)
    colleague = staff(Role.CLINIC_ADMIN, clinic_a)

    client.force_login(other_auditor)
    assert client.get(f"/admin/patients/export/{export.pk}/download/").status_code == 404
    assert client.get(f"/admin/patients/export/{export.pk}/change/").status_code == 404
    assert client.get(f"/admin/patients/export/{export.pk}/manifest/").status_code == 404
    assert list(client.get("/admin/patients/export/").context["cl"].queryset) == []

    client.force_login(colleague)
    listing = client.get("/admin/patients/export/")
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset) == [export]
    assert client.get(f"/admin/patients/export/{export.pk}/download/").status_code == 200


def test_the_history_link_of_another_clinics_export_is_not_found(client, auditor, clinic_a, clinic_b, outcome_data):
    export = Export.objects.create(clinic=clinic_a, requested_by=auditor, kind="outcomes", format="csv")
    client.force_login(auditor)
    assert client.get(f"/admin/patients/export/{export.pk}/history/")["Location"] == f"/admin/patients/export/{export.pk}/change/"
    client.force_login(staff(Role.AUDITOR, clinic_b))
    assert client.get(f"/admin/patients/export/{export.pk}/history/").status_code == 404  # was a redirect for any id


def test_it_refuses_downloads_after_the_file_expired(client, auditor, clinic_a, outcome_data):
    export = Export.objects.create(clinic=clinic_a, requested_by=auditor, kind="outcomes", format="csv")
    export_tasks.run_export(export.pk)
    delete_expired_exports(now=NOW + dt.timedelta(days=2))
    client.force_login(auditor)

    assert client.get(f"/admin/patients/export/{export.pk}/download/").status_code == 404
    assert "retention period ended" in client.get(f"/admin/patients/export/{export.pk}/change/").content.decode()


def test_the_clinician_choice_lists_only_the_clinics_clinicians(client, clinic_admin, auditor, coordinator, clinician,
                                                                clinic_a, clinic_b, clinician_b):
    former = staff(Role.CLINICIAN, clinic_a, username="former_clinician")
    former.memberships.update(is_active=False)  # their treatments are still exported by their name
    client.force_login(clinic_admin)

    field = client.get(ADD_URL).context["form"].fields["clinician"]

    assert {user.username for user in field.queryset} == {clinician.username, "former_clinician"}
