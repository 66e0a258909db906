"""The adverse-event export: every event of the treatments the outcome log covers, each exactly once.

The outcome log has one row per assessment and shows adverse events beside the
scores of their treatment and arm: an event on an arm or a treatment without
scores is on no row there, and one on a treatment with several rows is on each.
"""

from __future__ import annotations

import datetime as dt
import io
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook
from rest_framework.test import APIClient

from clinic.models import Role
from patients.exports import ExportRequest, ExportRequestError, start_export, stream_export
from patients.models import AdverseEvent, Export, TreatmentArm
from tests.exports.conftest import NOW, SECRETS
from tests.exports.helpers import csv_rows, run_streamed
from tests.factories import PatientFactory, TreatmentFactory, staff

pytestmark = pytest.mark.django_db
KIND = Export.Kind.ADVERSE_EVENTS
API_URL = "/api/v1/exports/adverse-events/"


def _event(treatment, by, **values) -> AdverseEvent:  # noqa: ANN001
    values.setdefault("onset_date", (treatment.ended_at + dt.timedelta(days=2)).date())
    values.setdefault("recorded_at", treatment.ended_at + dt.timedelta(days=2, hours=3))
    return AdverseEvent.objects.create(treatment=treatment, recorded_by=by, **values)


@pytest.fixture
def events(outcome_data):  # noqa: ANN201 - the outcome data, with the events the outcome log misses or repeats
    """Beside the outcome data's event on a scored arm: one on the whole split-face treatment (on four outcome rows),
    one on an arm with no scores, one on a treatment with no scores at all, and one in the other clinic."""
    doctor = outcome_data.clinicians[0]
    split = outcome_data.treatments[0]
    patient = outcome_data.patients[0]
    whole = _event(split, doctor, kind="prolonged_erythema", severity="mild")
    unscored = TreatmentFactory(
        screening__patient=patient, screening__protocol_version=split.protocol_version, clinician=doctor,
        started_at=NOW - dt.timedelta(days=10, hours=1), ended_at=NOW - dt.timedelta(days=10),
    )
    TreatmentArm.objects.create(treatment=unscored, label="forehead")
    chin = TreatmentArm.objects.create(treatment=unscored, label="chin")
    on_arm = _event(
        unscored, doctor, arm=chin, kind="infection", severity="moderate", description="Swab taken",
        action_taken="oral antibiotics", resolution_date=(NOW - dt.timedelta(days=3)).date(),
        notified_at=NOW - dt.timedelta(days=8, hours=2, minutes=59),
    )
    second = outcome_data.patients[1]
    bare = TreatmentFactory(
        screening__patient=second, screening__protocol_version=outcome_data.treatments[1].protocol_version,
        clinician=outcome_data.clinicians[1], started_at=NOW - dt.timedelta(days=2, hours=1),
        ended_at=NOW - dt.timedelta(days=2),
    )
    no_scores = _event(bare, outcome_data.clinicians[1], kind="milia", severity="mild", description="=1+1")
    outsider = outcome_data.other_clinic_treatment
    _event(outsider, staff(Role.CLINICIAN, outsider.clinic, username="dr_elsewhere"), kind="scarring", severity="severe")
    outcome_data.adverse_events += [whole, on_arm, no_scores]
    outcome_data.treatments += [unscored, bare]
    return outcome_data


def test_it_lists_every_event_once_even_on_an_arm_or_a_treatment_without_scores(auditor, clinic_a, events):
    export, body = run_streamed(auditor, clinic_a, kind=KIND, identified=True)

    rows = csv_rows(body)
    ids = [row["adverse_event_id"] for row in rows]
    assert sorted(ids) == sorted(str(event.pk) for event in events.adverse_events)
    assert len(ids) == len(set(ids)) == export.row_count == 4
    on_arm = next(row for row in rows if row["kind"] == "infection")
    treatment = events.treatments[2]
    assert on_arm == {
        "adverse_event_id": str(events.adverse_events[2].pk),
        "patient_id": str(treatment.patient_id),
        "patient_reference": SECRETS["reference"],
        "given_name": SECRETS["given_name"],
        "family_name": SECRETS["family_name"],
        "date_of_birth": SECRETS["date_of_birth"].isoformat(),
        "email": SECRETS["email"],
        "treatment_id": str(treatment.pk),
        "treatment_status": "recorded",
        "procedure": treatment.protocol_version.protocol.procedure,
        "procedure_ended_at": treatment.ended_at.isoformat(),
        "protocol": "Microneedling + exosome",
        "protocol_version": "2",
        "arm": "chin",
        "arm_is_control": "false",
        "kind": "infection",
        "severity": "moderate",
        "onset_date": "2026-03-12",
        "resolution_date": "2026-03-17",
        "description": "Swab taken",
        "action_taken": "oral antibiotics",
        "recorded_by": "dr_hale",
        "recorded_at": "2026-03-12T15:00:00+00:00",
        "clinicians_notified_at": "2026-03-12T09:01:00+00:00",
    }
    whole = next(row for row in rows if row["kind"] == "prolonged_erythema")
    assert (whole["arm"], whole["arm_is_control"], whole["resolution_date"]) == ("", "", "")
    assert next(row for row in rows if row["kind"] == "milia")["description"] == "'=1+1"


def test_the_outcome_log_misses_or_repeats_what_this_export_lists_once(auditor, clinic_a, events):
    _export, outcome_body = run_streamed(auditor, clinic_a, identified=True)
    outcome_text = " ".join(row["adverse_events"] for row in csv_rows(outcome_body))

    assert "infection" not in outcome_text and "milia" not in outcome_text
    assert outcome_text.count("prolonged_erythema") == 4


def test_its_manifest_says_what_it_lists(auditor, clinic_a, events):
    export, _body = run_streamed(auditor, clinic_a, kind=KIND)

    manifest = export.manifest
    assert manifest["kind"] == "adverse_events"
    assert manifest["row_count"] == 4
    assert manifest["filters"]["date_field"] == "procedure date"
    assert "exactly once" in manifest["purpose"]
    assert manifest["columns"][:3] == ["adverse_event", "patient", "treatment"]


@pytest.mark.parametrize("export_format", ["csv", "xlsx"])
def test_the_outcome_logs_manifest_says_its_column_is_not_the_list_of_events(auditor, clinic_a, events, export_format):
    export, _body = run_streamed(auditor, clinic_a, format=export_format)

    assert "adverse-event export" in export.manifest["adverse_events_note"]
    assert "not a list or count of events" in export.manifest["adverse_events_note"]
    assert export.manifest["adverse_event_count"] == 4


def test_the_outcome_bundles_manifest_has_no_note_about_a_column_it_does_not_have(auditor, clinic_a, events):
    export, _body = run_streamed(auditor, clinic_a, format="fhir")

    assert "adverse_events_note" not in export.manifest


@pytest.mark.parametrize("export_format", ["csv", "xlsx"])
def test_a_de_identified_file_names_no_one_and_holds_no_free_text(auditor, clinic_a, events, export_format):
    export, body = run_streamed(auditor, clinic_a, kind=KIND, format=export_format)

    if export_format == "xlsx":
        sheet = load_workbook(io.BytesIO(body))["Adverse events"]
        header = [cell.value for cell in sheet[1]]
        rows = [dict(zip(header, row, strict=True)) for row in sheet.iter_rows(min_row=2, values_only=True)]
        text = repr(rows)
    else:
        rows = csv_rows(body)
        header, text = list(rows[0]), body.decode()
    assert len(rows) == 4
    assert {"description", "action_taken", "given_name", "email", "adverse_event_id"}.isdisjoint(header)
    for secret in (SECRETS["given_name"], SECRETS["family_name"], SECRETS["email"], SECRETS["reference"],
                   "Swab taken", "oral antibiotics", "hydroquinone"):
        assert secret not in text
    assert all(str(row["patient"]).startswith("P-") for row in rows)
    patients = {row["patient"] for row in rows}
    assert len(patients) == 2  # one pseudonym per patient within the export


def test_shifted_dates_move_with_the_patients_procedure(auditor, clinic_a, events):
    _export, body = run_streamed(auditor, clinic_a, kind=KIND, date_handling=Export.DateHandling.SHIFTED)

    rows = {row["kind"]: row for row in csv_rows(body)}
    event = events.adverse_events[2]
    row = rows["infection"]
    shift = dt.date.fromisoformat(row["onset_date"]) - event.onset_date
    assert shift != dt.timedelta(0)
    assert dt.date.fromisoformat(row["resolution_date"]) - event.resolution_date == shift
    assert dt.datetime.fromisoformat(row["procedure_ended_at"]) - event.treatment.ended_at == shift
    assert dt.datetime.fromisoformat(row["recorded_at"]) - event.recorded_at == shift
    assert dt.datetime.fromisoformat(row["clinicians_notified_at"]) - event.notified_at == shift


def test_day_offsets_count_from_the_patients_first_treatment(auditor, clinic_a, events):
    _export, body = run_streamed(auditor, clinic_a, kind=KIND, date_handling=Export.DateHandling.DAY_OFFSETS)

    rows = {row["kind"]: row for row in csv_rows(body)}
    first = events.treatments[0].ended_at.astimezone(ZoneInfo(clinic_a.time_zone)).date()
    event = events.adverse_events[2]
    assert rows["infection"]["onset_day"] == str((event.onset_date - first).days) == "12"
    assert rows["infection"]["resolution_day"] == "17"
    assert rows["infection"]["procedure_ended_day"] == "10"
    assert rows["infection"]["recorded_day"] == "12"
    assert rows["milia"]["onset_day"] == "5"  # from the second patient's own first treatment, three days before
    assert "onset_date" not in rows["infection"]


def test_it_writes_xlsx_with_date_cells_and_utc_times(auditor, clinic_a, events):
    _export, body = run_streamed(auditor, clinic_a, kind=KIND, identified=True, format="xlsx")

    sheet = load_workbook(io.BytesIO(body))["Adverse events"]
    header = [cell.value for cell in sheet[1]]
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in sheet.iter_rows(min_row=2, values_only=True)}
    event = events.adverse_events[2]
    row = rows[event.pk]
    assert row["recorded_at (UTC)"] == event.recorded_at.astimezone(dt.UTC).replace(tzinfo=None)
    assert row["clinicians_notified_at (UTC)"] == event.notified_at.astimezone(dt.UTC).replace(tzinfo=None)
    assert row["onset_date"] == dt.datetime.combine(event.onset_date, dt.time())  # a date cell, read back by openpyxl
    assert row["severity"] == "moderate"
    assert len(rows) == 4


def test_it_covers_only_the_clinic_and_the_filters_of_the_outcome_log(auditor, clinic_a, clinic_b, events):
    _export, body = run_streamed(auditor, clinic_a, kind=KIND, identified=True)
    assert b"scarring" not in body and b"dr_elsewhere" not in body

    laser = events.protocols[1]
    _export, body = run_streamed(auditor, clinic_a, kind=KIND, identified=True, protocol=laser)
    assert [row["kind"] for row in csv_rows(body)] == ["milia"]
    since = (NOW - dt.timedelta(days=11)).date()
    _export, body = run_streamed(auditor, clinic_a, kind=KIND, identified=True, date_from=since)
    assert sorted(row["kind"] for row in csv_rows(body)) == ["infection", "milia"]

    with pytest.raises(ExportRequestError) as refused:
        start_export(user=auditor, request=ExportRequest(clinic=clinic_b, kind=KIND, identified=True))
    assert "clinic" in refused.value.errors


def test_it_is_not_offered_as_fhir(auditor, clinic_a):
    with pytest.raises(ExportRequestError) as refused:
        start_export(user=auditor, request=ExportRequest(clinic=clinic_a, kind=KIND, format="fhir"))
    assert "CSV or XLSX" in refused.value.errors["format"][0]


@pytest.mark.parametrize(
    "options",
    [
        {"identified": True},
        {"identified": False, "date_handling": Export.DateHandling.DAY_OFFSETS},
        {"identified": True, "format": "xlsx"},
    ],
)
def test_it_runs_as_many_queries_for_many_events_as_for_one(auditor, clinic_a, options):
    doctor = staff(Role.CLINICIAN, clinic_a, username="dr_count")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            export = start_export(user=auditor, request=ExportRequest(clinic=clinic_a, kind=KIND, **options))
            b"".join(stream_export(export))
        return len(captured.captured_queries)

    def add_patient_with_events(count: int) -> None:
        treatment = TreatmentFactory(screening__patient=PatientFactory(clinic=clinic_a), clinician=doctor,
                                     started_at=NOW - dt.timedelta(days=4, hours=1), ended_at=NOW - dt.timedelta(days=4))
        arm = TreatmentArm.objects.create(treatment=treatment, label="left")
        for number in range(count):
            _event(treatment, doctor, arm=arm if number else None, kind="milia", severity="mild")

    add_patient_with_events(1)
    queries()  # the requester's roles, read once per person, are not the export's
    one = queries()
    for _ in range(3):
        add_patient_with_events(3)
    assert queries() == one


def test_an_auditor_requests_it_from_the_new_export_form(client, auditor, clinic_a, events):
    client.force_login(auditor)
    form = {"clinic": clinic_a.pk, "kind": KIND, "format": "csv", "identified": "no", "date_handling": "shifted"}

    assert '<option value="adverse_events">Adverse events</option>' in client.get("/admin/patients/export/add/").content.decode()
    response = client.post("/admin/patients/export/add/", form)

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="adverse_events-harbour-deidentified-')
    assert len(csv_rows(b"".join(response.streaming_content))) == 4
    refused = client.post("/admin/patients/export/add/", {**form, "format": "fhir"})
    assert "exported as CSV or XLSX" in refused.content.decode()


def test_a_clinic_admin_requests_it_through_the_api(clinic_admin, events):
    api = APIClient()
    api.force_authenticate(clinic_admin)

    response = api.get(API_URL, {"format": "xlsx", "identified": "true"})

    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content)))["Adverse events"]
    assert sheet.max_row == 1 + 4
    export = Export.objects.get(pk=response["X-Export-Id"])
    assert (export.kind, export.status) == (KIND, Export.Status.DONE)


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.CLINICIAN])
def test_the_api_refuses_people_without_the_export_role(clinic_a, events, role):
    api = APIClient()
    api.force_authenticate(staff(role, clinic_a))

    assert api.get(API_URL).status_code == 403
    assert not Export.objects.exists()
