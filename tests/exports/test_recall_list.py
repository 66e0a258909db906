"""A lot's recall list: every patient who received the lot, to be contacted, taken away as a kept export."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from decimal import Decimal
from unittest import mock

import pytest
from openpyxl import load_workbook
from rest_framework.test import APIClient

from clinic.models import AuditEvent, Role
from patients import export_tasks
from patients.exports import ExportRequest, ExportRequestError, start_export
from patients.models import AdverseEvent, ExosomeApplication, Export, Treatment
from tests.exports.conftest import NOW, SECRETS
from tests.exports.helpers import csv_rows, run_streamed
from tests.factories import LotFactory, MembershipFactory, ProductFactory, TreatmentFactory, staff

pytestmark = pytest.mark.django_db
API = "/api/v1/exports/recall/"
BUTTON = "Download the recall list (CSV)"
#: A formula that fits the phone column (40 characters, which PostgreSQL enforces and SQLite does not).
PHONE_INJECTION = '=HYPERLINK("http://evil.example","call")'


def _lot_url(lot, suffix="change/"):  # noqa: ANN001, ANN202
    return f"/admin/protocols/productlot/{lot.pk}/{suffix}"


@pytest.fixture
def recall(outcome_data, clinic_a, clinic_b):  # noqa: ANN201 - a namespace of what was built
    """Clinic A's lot PX-2026-001: the split-face treatment's left arm and the single-area treatment.

    Also in clinic A: a treatment with another lot, and a cancelled treatment that used the lot; in
    clinic B: a treatment with clinic B's own lot.
    """
    split, single = outcome_data.treatments
    lot = outcome_data.applications[0].lot
    doctor, other_doctor = outcome_data.clinicians
    second = ExosomeApplication.objects.create(
        treatment=single, lot=lot, volume_ml=Decimal("1.25"), minutes_after_procedure=0, applied_by=other_doctor
    )
    # A second, more serious, event on the split-face treatment (its other arm): the treatment counts both.
    AdverseEvent.objects.create(
        treatment=split, arm=split.arms.get(label="right"), kind="infection", severity="severe",
        onset_date=(split.ended_at + dt.timedelta(days=2)).date(), recorded_by=doctor,
    )
    # The second patient unsubscribed from reminder emails; their phone field carries a formula.
    second_patient = outcome_data.patients[1]
    second_patient.opted_out_at = NOW - dt.timedelta(days=1)
    second_patient.phone = PHONE_INJECTION
    second_patient.save()

    other_lot = LotFactory(product=lot.product, lot_number="PX-2026-002")
    other_lot_treatment = TreatmentFactory(
        screening__patient__clinic=clinic_a, screening__patient__given_name="Ottilie",
        started_at=NOW - dt.timedelta(days=3, hours=1), ended_at=NOW - dt.timedelta(days=3),
    )
    ExosomeApplication.objects.create(
        treatment=other_lot_treatment, lot=other_lot, volume_ml=Decimal("0.5"), applied_by=doctor
    )
    cancelled = TreatmentFactory(
        screening__patient__clinic=clinic_a, screening__patient__given_name="Cassius",
        started_at=NOW - dt.timedelta(days=2, hours=1), ended_at=NOW - dt.timedelta(days=2),
    )
    ExosomeApplication.objects.create(treatment=cancelled, lot=lot, volume_ml=Decimal("0.3"), applied_by=doctor)
    Treatment.objects.filter(pk=cancelled.pk).update(
        status=Treatment.Status.CANCELLED, cancel_reason="Entered on the wrong patient"
    )

    b_lot = LotFactory(product=ProductFactory(clinic=clinic_b), lot_number="PX-2026-001")
    outsider = outcome_data.other_clinic_treatment
    ExosomeApplication.objects.create(
        treatment=outsider, lot=b_lot, volume_ml=Decimal("0.7"), applied_by=staff(Role.CLINICIAN, clinic_b)
    )

    lot.recalled, lot.recall_reason = True, "Endotoxin above specification"
    lot.save()

    class Built:
        pass

    built = Built()
    built.lot, built.b_lot, built.other_lot = lot, b_lot, other_lot
    built.split, built.single, built.cancelled = split, single, cancelled
    built.first, built.second = outcome_data.applications[0], second
    built.patients = outcome_data.patients
    return built


def _rows_by_treatment(body: bytes) -> dict[int, dict[str, str]]:
    return {int(row["treatment_id"]): row for row in csv_rows(body)}


# --- the rows and columns ---------------------------------------------------------------------


def test_it_lists_every_application_of_the_lot_with_how_to_reach_the_patient(auditor, clinic_a, recall):
    export, body = run_streamed(auditor, clinic_a, kind=Export.Kind.RECALL, identified=True, lot=recall.lot)

    rows = _rows_by_treatment(body)
    assert set(rows) == {recall.split.pk, recall.single.pk, recall.cancelled.pk}
    split = rows[recall.split.pk]
    assert split["given_name"] == SECRETS["given_name"]
    assert split["family_name"] == SECRETS["family_name"]
    assert split["date_of_birth"] == SECRETS["date_of_birth"].isoformat()
    assert split["email"] == SECRETS["email"]
    # "+44 …" starts like a formula: in CSV it gets the apostrophe every such text cell gets (the manifest says so).
    assert split["phone"] == "'" + SECRETS["phone"]
    assert split["patient_reference"] == SECRETS["reference"]
    assert (split["reminder_emails_allowed"], split["reminder_emails"]) == ("true", "consented")
    assert split["arm"] == "left"
    assert split["volume_ml"] == "0.50"
    assert split["minutes_after_procedure"] == "5"
    assert split["applied_by"] == "dr_hale"
    assert split["application_id"] == str(recall.first.pk)
    # Clinic A is in London: 28 February is winter time, so the offset is +00:00 and the clock reads 12:00.
    assert split["procedure_ended_local"] == "2026-02-28T12:00:00+00:00"
    assert (split["adverse_events"], split["most_serious_adverse_event"]) == ("2", "severe")
    assert split["treatment_status"] == "recorded"

    single = rows[recall.single.pk]
    assert single["arm"] == ""
    assert (single["reminder_emails_allowed"], single["reminder_emails"]) == ("false", "opted out 2026-03-19")
    assert (single["adverse_events"], single["most_serious_adverse_event"]) == ("0", "")
    assert single["phone"] == "'" + PHONE_INJECTION  # neutralised: the CSV writer of every export

    cancelled = rows[recall.cancelled.pk]
    assert (cancelled["treatment_status"], cancelled["cancel_reason"]) == ("cancelled", "Entered on the wrong patient")
    assert export.row_count == 3


def test_it_writes_the_procedure_end_on_the_clinics_clock(auditor, clinic_a, recall):
    # Summer time in London: the same instant reads an hour later, with its offset.
    ended = dt.datetime(2026, 7, 1, 9, 30, tzinfo=dt.UTC)
    Treatment.objects.filter(pk=recall.single.pk).update(ended_at=ended, started_at=ended - dt.timedelta(hours=1))

    _, body = run_streamed(auditor, clinic_a, kind=Export.Kind.RECALL, identified=True, lot=recall.lot)

    assert _rows_by_treatment(body)[recall.single.pk]["procedure_ended_local"] == "2026-07-01T10:30:00+01:00"


def test_it_keeps_the_download_with_its_manifest_and_access_log_entry(auditor, clinic_a, recall):
    export, body = run_streamed(auditor, clinic_a, kind=Export.Kind.RECALL, identified=True, lot=recall.lot)

    assert export.kind == Export.Kind.RECALL
    assert export.requested_by == auditor
    assert export.identified and export.streamed and export.status == Export.Status.DONE
    assert export.filters == {
        "lot": recall.lot.pk, "lot_number": "PX-2026-001",
        "product": {"id": recall.lot.product_id, "name": "Plant exosome serum"},
    }
    manifest = export.manifest
    assert manifest["row_count"] == 3
    assert manifest["sha256"] == export.sha256 == hashlib.sha256(body).hexdigest()
    assert manifest["generated_by"] == auditor.username
    assert manifest["identified"] is True
    assert "contact each patient" in manifest["purpose"]
    assert manifest["filters"]["lot"]["lot_number"] == "PX-2026-001"
    assert manifest["filters"]["lot"]["recalled"] is True
    assert manifest["filters"]["lot"]["recall_reason"] == "Endotoxin above specification"
    assert "clinic's time zone" in manifest["date_note"]
    assert "apostrophe" in manifest["cells_note"]
    assert manifest["file_name"].startswith("recall-harbour-lot-px-2026-001-identified-")
    assert manifest["columns"][:4] == ["application_id", "patient_id", "patient_reference", "given_name"]
    event = AuditEvent.objects.get(action="export.run", object_id=str(export.pk))
    assert event.actor == auditor
    assert event.detail["manifest"]["sha256"] == export.sha256


def test_it_writes_xlsx_too(clinic_admin, clinic_a, recall):
    export, body = run_streamed(
        clinic_admin, clinic_a, kind=Export.Kind.RECALL, identified=True, lot=recall.lot, format=Export.Format.XLSX
    )

    assert export.row_count == 3
    sheet = load_workbook(io.BytesIO(body)).active
    header = [cell.value for cell in sheet[1]]
    phones = {row[header.index("treatment_id")].value: row[header.index("phone")] for row in sheet.iter_rows(min_row=2)}
    # A phone number reads as written; a formula in the phone field keeps its apostrophe.
    assert (phones[recall.split.pk].value, phones[recall.split.pk].quotePrefix) == (SECRETS["phone"], True)
    assert phones[recall.single.pk].value == "'" + PHONE_INJECTION


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"identified": True}, "lot"),
        ({"identified": False, "lot": "own"}, "identified"),
        ({"identified": True, "lot": "own", "format": Export.Format.FHIR}, "format"),
        ({"identified": True, "lot": "own", "date_from": dt.date(2026, 1, 1)}, "date_from"),
        ({"identified": True, "lot": "other clinic"}, "lot"),
    ],
)
def test_it_refuses_a_recall_request_that_cannot_be_run(auditor, clinic_a, recall, options, field):
    lots = {"own": recall.lot, "other clinic": recall.b_lot}
    if "lot" in options:
        options = {**options, "lot": lots[options["lot"]]}

    with pytest.raises(ExportRequestError) as refused:
        start_export(user=auditor, request=ExportRequest(clinic=clinic_a, kind=Export.Kind.RECALL, **options))

    assert field in refused.value.errors
    assert not Export.objects.exists()


# --- the button on the lot's page --------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.CLINIC_ADMIN])
def test_the_lots_page_offers_the_recall_list_to_exporters_and_downloads_it(client, clinic_a, recall, role):
    user = staff(role, clinic_a)
    client.force_login(user)

    page = client.get(_lot_url(recall.lot)).content.decode()
    assert BUTTON in page
    response = client.post(_lot_url(recall.lot, "recall-list/"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="recall-harbour-lot-px-2026-001-identified-' in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    assert set(_rows_by_treatment(body)) == {recall.split.pk, recall.single.pk, recall.cancelled.pk}
    export = Export.objects.get(pk=response["X-Export-Id"])
    assert (export.kind, export.requested_by, export.status) == (Export.Kind.RECALL, user, Export.Status.DONE)
    assert AuditEvent.objects.filter(action="export.run", object_id=str(export.pk), actor=user).exists()


def test_the_button_is_there_for_a_lot_not_recalled(client, auditor, recall):
    client.force_login(auditor)

    assert BUTTON in client.get(_lot_url(recall.other_lot)).content.decode()
    response = client.post(_lot_url(recall.other_lot, "recall-list/"))

    assert response.status_code == 200
    assert len(csv_rows(b"".join(response.streaming_content))) == 1


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COORDINATOR])
def test_people_without_the_export_role_get_no_button_and_a_403(client, clinic_a, recall, role):
    client.force_login(staff(role, clinic_a))

    page = client.get(_lot_url(recall.lot))
    assert page.status_code == 200
    assert BUTTON not in page.content.decode()
    assert client.post(_lot_url(recall.lot, "recall-list/")).status_code == 403
    assert not Export.objects.exists()


def test_another_clinics_lot_is_not_found(client, auditor, recall):
    client.force_login(auditor)

    assert client.post(_lot_url(recall.b_lot, "recall-list/")).status_code == 404
    assert not Export.objects.exists()


def test_the_download_needs_a_post(client, auditor, recall):
    client.force_login(auditor)

    assert client.get(_lot_url(recall.lot, "recall-list/")).status_code == 405
    assert not Export.objects.exists()


def test_the_general_export_form_does_not_offer_a_recall_without_a_lot(client, auditor, clinic_a, recall):
    client.force_login(auditor)

    response = client.post("/admin/patients/export/add/", {
        "clinic": clinic_a.pk, "kind": "recall", "format": "csv", "identified": "yes", "date_handling": "shifted",
    })

    assert response.status_code == 200
    assert "kind" in response.context["form"].errors
    assert not Export.objects.exists()


# --- the API ------------------------------------------------------------------------------------


@pytest.fixture
def api():
    return APIClient()


def test_the_api_streams_the_recall_list(api, auditor, recall):
    api.force_authenticate(auditor)

    response = api.get(API, {"lot": recall.lot.pk})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content)
    assert len(csv_rows(body)) == 3
    export = Export.objects.get(pk=response["X-Export-Id"])
    assert export.kind == Export.Kind.RECALL and export.identified
    assert export.manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert AuditEvent.objects.filter(action="export.run", object_id=str(export.pk)).exists()


def test_the_api_refuses_another_clinics_lot_with_a_field_error(api, auditor, recall):
    api.force_authenticate(auditor)

    response = api.get(API, {"lot": recall.b_lot.pk})

    assert response.status_code == 400
    assert "lot" in response.json()
    assert not Export.objects.exists()
    assert not AuditEvent.objects.filter(action="export.run").exists()


def test_the_api_refuses_a_lot_of_another_clinic_than_the_one_named(api, clinic_a, clinic_b, recall):
    # An auditor of both clinics: the lot is within reach, but not of the clinic named.
    auditor = staff(Role.AUDITOR, clinic_a)
    MembershipFactory(user=auditor, clinic=clinic_b, role=Role.AUDITOR)
    api.force_authenticate(auditor)

    response = api.get(API, {"lot": recall.b_lot.pk, "clinic": clinic_a.pk})

    assert response.status_code == 400
    assert "lot" in response.json()
    assert not Export.objects.exists()


def test_the_api_needs_a_lot_and_a_spreadsheet_format(api, auditor, recall):
    api.force_authenticate(auditor)

    assert "lot" in api.get(API).json()
    assert "format" in api.get(API, {"lot": recall.lot.pk, "format": "fhir"}).json()
    assert not Export.objects.exists()


@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.COORDINATOR])
def test_the_api_refuses_people_without_the_export_role(api, clinic_a, recall, role):
    api.force_authenticate(staff(role, clinic_a))

    assert api.get(API, {"lot": recall.lot.pk}).status_code == 403
    assert not Export.objects.exists()


def test_a_long_recall_list_runs_as_a_job_from_the_lots_page(
    client, auditor, recall, settings, django_capture_on_commit_callbacks
):
    settings.AFTERCARE_EXPORT_INLINE_MAX_ROWS = 1
    client.force_login(auditor)
    with mock.patch.object(export_tasks.run_export, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        response = client.post(_lot_url(recall.lot, "recall-list/"))

    export = Export.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/patients/export/{export.pk}/change/"
    delay.assert_called_once_with(export.pk)
    export_tasks.run_export(export.pk)
    export.refresh_from_db()
    assert (export.status, export.row_count, export.kind) == (Export.Status.DONE, 3, Export.Kind.RECALL)
    body = b"".join(client.get(f"/admin/patients/export/{export.pk}/download/").streaming_content)
    assert hashlib.sha256(body).hexdigest() == export.sha256
    assert len(csv_rows(body)) == 3


def test_recalling_a_lot_in_the_admin_says_how_many_patients_received_it(client, clinic_admin, recall):
    from django.contrib.messages import get_messages

    lot = recall.other_lot
    client.force_login(clinic_admin)
    data = {
        "clinic": lot.clinic_id, "product": lot.product_id, "lot_number": lot.lot_number,
        "received_date": f"{lot.received_date:%Y-%m-%d}", "expiry_date": f"{lot.expiry_date:%Y-%m-%d}",
        "storage_checks": "", "recalled": "on", "recall_reason": "Cold chain broken in transit",
    }
    response = client.post(_lot_url(lot), data)
    assert response.status_code == 302
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert (f"Lot {lot.lot_number} is recalled from now on: it can no longer be applied. 1 patient received it; "
            "their treatments are listed on the lot's page, with the recall list to download.") in messages
    lot.refresh_from_db()
    assert lot.recalled and lot.recalled_at is not None
    # Saving the recalled lot again (a typo in the reason) does not announce the recall again.
    client.get(response["Location"])  # the page shows (and uses up) the first messages
    data["recall_reason"] = "Cold chain broken in transit (courier log attached)"
    again = client.post(_lot_url(lot), data)
    assert not any("recalled from now on" in str(message) for message in get_messages(again.wsgi_request))


def test_the_day_a_patient_opted_out_is_the_clinics_day():
    import datetime as dt
    from zoneinfo import ZoneInfo

    from patients.export_rows import Identity, recall_columns

    columns = dict(recall_columns(Identity(identified=True, date_handling="none",
                                           zone=ZoneInfo("America/New_York"), key=b"k")))
    record = {"treatment__patient__opted_out_at": dt.datetime(2026, 3, 20, 2, 30, tzinfo=dt.UTC),
              "treatment__patient__reminder_consent": True, "treatment__patient__email": "a@b.example"}
    # 02:30 UTC on 20 March is 22:30 on the 19th in New York, where the clinic makes its calls.
    assert columns["reminder_emails"](record) == "opted out 2026-03-19"
    assert columns["reminder_emails_allowed"](record) is False
