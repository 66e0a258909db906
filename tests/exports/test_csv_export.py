"""The outcome log as CSV: read back with ``csv`` it equals the database, for one clinic only, with a true manifest."""

from __future__ import annotations

import datetime as dt
import hashlib
from zoneinfo import ZoneInfo

import pytest

from clinic.models import AuditEvent, Role
from patients.export_rows import count_rows
from patients.exports import ExportRequest, ExportRequestError, start_export, stream_export
from patients.models import Export, OutcomeAssessment
from tests.exports.conftest import NOW
from tests.exports.helpers import csv_rows, run_streamed
from tests.factories import ClinicFactory, TreatmentFactory, staff

pytestmark = pytest.mark.django_db


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _covers(item_arm_id: int | None, assessment: OutcomeAssessment) -> bool:
    return item_arm_id is None or assessment.arm_id is None or item_arm_id == assessment.arm_id


def _expected(assessment: OutcomeAssessment) -> dict[str, str]:
    """The row the export must contain, built straight from the model objects."""
    treatment = assessment.treatment
    patient = treatment.patient
    arm = assessment.arm
    applications = [a for a in treatment.applications.order_by("id") if _covers(a.arm_id, assessment)]
    events = [e for e in treatment.adverse_events.order_by("onset_date", "id") if _covers(e.arm_id, assessment)]
    events_text = " | ".join(
        f"{e.kind} ({e.severity}), onset {e.onset_date.isoformat()}"
        + (f", resolved {e.resolution_date.isoformat()}" if e.resolution_date else ", ongoing")
        + (f", {e.arm.label}" if e.arm else "")
        for e in events
    )
    arm_product = ""
    if arm is not None:
        arm_product = f"control: {arm.control_description}" if arm.is_control else (arm.product.name if arm.product else "")
    row = {
        "assessment_id": assessment.pk,
        "patient_id": patient.pk,
        "patient_reference": patient.reference,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "date_of_birth": patient.date_of_birth,
        "email": patient.email,
        "treatment_id": treatment.pk,
        "treatment_status": treatment.status,
        "procedure": treatment.protocol_version.protocol.procedure,
        "procedure_ended_at": treatment.ended_at,
        "areas": treatment.areas,
        "clinician": treatment.clinician.username,
        "protocol": treatment.protocol_version.protocol.name,
        "protocol_version": treatment.protocol_version.number,
        "arm": arm.label if arm else None,
        "arm_is_control": arm.is_control if arm else None,
        "arm_product": arm_product,
        "products": "; ".join(sorted({a.lot.product.name for a in applications})),
        "lots": "; ".join(a.lot.lot_number for a in applications),
        "time_point_day": assessment.time_point_day,
        "phase": assessment.phase,
        "source": assessment.source,
        "erythema": assessment.erythema,
        "oedema": assessment.oedema,
        "reepithelialisation_complete": assessment.reepithelialisation_complete,
        "reepithelialisation_percent": assessment.reepithelialisation_percent,
        "pain": assessment.pain,
        "pruritus": assessment.pruritus,
        "gais": assessment.gais,
        "applied_as_instructed": assessment.applied_as_instructed,
        "problem_flagged": assessment.problem_flagged,
        "adverse_events": events_text,
        "notes": assessment.notes,
        "recorded_by": assessment.recorded_by.username if assessment.recorded_by else None,
        "recorded_at": assessment.recorded_at,
    }
    return {key: _text(value) for key, value in row.items()}


def test_it_reads_back_as_exactly_the_database_rows(auditor, clinic_a, outcome_data):
    export, body = run_streamed(auditor, clinic_a, identified=True)

    rows = csv_rows(body)
    by_id = {row["assessment_id"]: row for row in rows}
    assert len(rows) == len(outcome_data.assessments) == export.row_count
    for assessment in outcome_data.assessments:
        expected = _expected(assessment)
        if expected["notes"].startswith(("=", "-")) and expected["notes"] != "-":
            expected["notes"] = "'" + expected["notes"]  # neutralised, see test_formula_injection
        assert by_id[str(assessment.pk)] == expected


def test_it_writes_rfc_4180_with_crlf_and_utf8(auditor, clinic_a, outcome_data):
    outcome_data.patients[1].given_name = "Zoë, \"Jo\""
    outcome_data.patients[1].save()

    _export, body = run_streamed(auditor, clinic_a, identified=True)

    assert body.count(b"\r\n") == len(outcome_data.assessments) + 1
    assert '"Zoë, ""Jo"""'.encode() in body
    assert not body.startswith(b"\xef\xbb\xbf")  # no byte-order mark


def test_it_never_contains_other_clinics_rows(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, identified=True)

    other = outcome_data.other_clinic_treatment
    assert str(other.pk) not in {row["treatment_id"] for row in csv_rows(body)}
    assert b"Zzyzx" not in body
    assert b"dr_summit" not in body


def test_it_refuses_a_clinic_the_person_may_not_export(auditor, clinic_b, outcome_data):
    with pytest.raises(ExportRequestError) as refused:
        start_export(user=auditor, request=ExportRequest(clinic=clinic_b, identified=True))
    assert "clinic" in refused.value.errors
    assert not Export.objects.exists()


@pytest.mark.parametrize(
    ("filters", "expected_days"),
    [
        ({"date_from": (NOW - dt.timedelta(days=6)).date()}, [1]),
        ({"date_to": (NOW - dt.timedelta(days=6)).date()}, [0, 3, 3, 3]),
        ({"protocol": "laser"}, [1]),
        ({"clinician": "dr_hale"}, [0, 3, 3, 3]),
    ],
)
def test_it_filters_by_procedure_date_protocol_and_clinician(auditor, clinic_a, outcome_data, filters, expected_days):
    if filters.get("protocol") == "laser":
        filters["protocol"] = outcome_data.protocols[1]
    if filters.get("clinician") == "dr_hale":
        filters["clinician"] = outcome_data.clinicians[0]

    _export, body = run_streamed(auditor, clinic_a, identified=True, **filters)

    assert sorted(int(row["time_point_day"]) for row in csv_rows(body)) == expected_days


def test_its_dates_are_the_clinics_own_calendar_days():
    sydney = ClinicFactory(slug="sydney", time_zone="Australia/Sydney")
    auditor = staff(Role.AUDITOR, sydney)
    ended = dt.datetime(2026, 3, 5, 9, 30, tzinfo=ZoneInfo("Australia/Sydney"))  # 22:30 UTC on 4 March
    treatment = TreatmentFactory(screening__patient__clinic=sydney, started_at=ended - dt.timedelta(hours=1), ended_at=ended)
    OutcomeAssessment.objects.create(treatment=treatment, time_point_day=1, erythema=1, recorded_by=auditor)

    def rows_on(day):
        return count_rows(Export(clinic=sydney, requested_by=auditor, filters={"date_from": day, "date_to": day}))

    assert rows_on("2026-03-05") == 1
    assert rows_on("2026-03-04") == 0


def test_it_refuses_an_end_date_before_the_start(auditor, clinic_a):
    request = ExportRequest(clinic=clinic_a, date_from=dt.date(2026, 3, 10), date_to=dt.date(2026, 3, 1))
    with pytest.raises(ExportRequestError) as refused:
        start_export(user=auditor, request=request)
    assert refused.value.errors == {"date_to": ["The end date is before the start date."]}


def test_its_manifest_holds_the_sha256_of_the_file_and_is_logged(auditor, clinic_a, outcome_data):
    export, body = run_streamed(auditor, clinic_a, identified=True, clinician=outcome_data.clinicians[0])

    manifest = export.manifest
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest() == export.sha256
    assert manifest["row_count"] == 4
    assert manifest["bytes"] == len(body)
    assert manifest["generated_by"] == auditor.username
    assert manifest["generated_at"] == NOW.isoformat()
    assert manifest["filters"]["clinician"] == {"id": outcome_data.clinicians[0].pk, "username": "dr_hale"}
    assert manifest["columns"][0] == "assessment_id"
    assert export.status == Export.Status.DONE
    event = AuditEvent.objects.get(action="export.run")
    assert event.clinic == clinic_a
    assert event.actor == auditor
    assert event.object_id == str(export.pk)
    assert event.detail["manifest"] == manifest


def test_it_marks_an_interrupted_download_aborted_and_still_logs_it(auditor, clinic_a, outcome_data):
    export = start_export(user=auditor, request=ExportRequest(clinic=clinic_a, identified=True))
    stream = stream_export(export)
    next(stream)  # part of the file has left
    stream.close()  # what Django does when the client goes away

    export.refresh_from_db()
    assert export.status == Export.Status.ABORTED
    assert export.sha256 == ""
    assert AuditEvent.objects.get(action="export.run").detail["status"] == "aborted"
