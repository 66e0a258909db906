"""De-identified exports: a stable per-export pseudonym, dates shifted or offset, and no identifier anywhere in the file."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import zipfile

import pytest
from openpyxl import load_workbook

from patients.export_rows import Identity, scrub_text
from patients.exports import ExportRequest, ExportRequestError, start_export
from patients.models import Export
from tests.exports.conftest import SECRETS
from tests.exports.helpers import csv_rows, run_streamed

pytestmark = pytest.mark.django_db


def _searchable(body: bytes, export_format: str) -> bytes:
    """The file's bytes, plus every member unzipped for XLSX (its raw bytes are compressed)."""
    if export_format != "xlsx":
        return body
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return body + b"".join(archive.read(name) for name in archive.namelist())


def _forbidden(data) -> list[bytes]:
    birth = SECRETS["date_of_birth"]
    values = [
        SECRETS["given_name"], SECRETS["family_name"], SECRETS["email"], SECRETS["phone"], SECRETS["reference"],
        birth.isoformat(), birth.strftime("%d/%m/%Y"), birth.strftime("%Y%m%d"),
        "Tobias", "Quenneville", data.patients[1].email, "Zzyzx",
    ]
    return [value.encode() for value in values] + [value.lower().encode() for value in values]


@pytest.mark.parametrize(
    ("export_format", "date_handling", "kind"),
    [
        ("csv", "shifted", "outcomes"),
        ("csv", "day_offsets", "outcomes"),
        ("xlsx", "shifted", "outcomes"),
        ("xlsx", "day_offsets", "outcomes"),
        ("fhir", "shifted", "outcomes"),
        ("csv", "shifted", "reminders"),
        ("xlsx", "day_offsets", "reminders"),
    ],
)
def test_it_leaves_no_name_email_birth_date_or_phone_anywhere(
    auditor, clinic_a, outcome_data, export_format, date_handling, kind
):
    export, body = run_streamed(auditor, clinic_a, format=export_format, date_handling=date_handling, kind=kind)

    assert export.row_count > 0
    haystack = _searchable(body, export_format)
    for needle in _forbidden(outcome_data):
        assert needle not in haystack, needle
    # The notes (free text) are not exported de-identified at all.
    assert b"hyperlink" not in haystack.lower()


def test_it_gives_a_patient_one_pseudonym_within_an_export_and_a_new_one_in_the_next(auditor, clinic_a, outcome_data):
    _first, body = run_streamed(auditor, clinic_a)
    _second, again = run_streamed(auditor, clinic_a)

    rows, rows_again = csv_rows(body), csv_rows(again)
    split = [row for row in rows if row["areas"] == "full face"]
    assert len(split) == 4
    assert len({row["patient"] for row in split}) == 1
    assert len({row["patient"] for row in rows}) == 2
    assert split[0]["patient"].startswith("P-")
    assert {row["patient"] for row in rows}.isdisjoint({row["patient"] for row in rows_again})
    assert "assessment_id" not in rows[0]
    assert "notes" not in rows[0]


def test_it_shifts_a_patients_dates_together_keeping_intervals(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, date_handling="shifted")

    split = [row for row in csv_rows(body) if row["areas"] == "full face"]
    treatment = outcome_data.treatments[0]
    shifted_end = dt.datetime.fromisoformat(split[0]["procedure_ended_at"])
    assert shifted_end != treatment.ended_at
    for row in split:
        assessment = next(a for a in outcome_data.assessments if a.time_point_day == int(row["time_point_day"]))
        interval = dt.datetime.fromisoformat(row["recorded_at"]) - shifted_end
        assert interval == assessment.recorded_at - treatment.ended_at


def test_it_turns_dates_into_days_since_the_first_treatment(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, date_handling="day_offsets")

    rows = csv_rows(body)
    assert "procedure_ended_day" in rows[0]
    assert "recorded_at" not in rows[0]
    split = [row for row in rows if row["areas"] == "full face"]
    assert {row["procedure_ended_day"] for row in split} == {"0"}
    assert sorted(row["recorded_day"] for row in split) == ["0", "3", "3", "3"]
    assert "onset day 4, resolved day 12" in split[1]["adverse_events"]


def test_it_refuses_real_dates_in_a_de_identified_export(auditor, clinic_a):
    request = ExportRequest(clinic=clinic_a, identified=False, date_handling="actual")
    with pytest.raises(ExportRequestError) as refused:
        start_export(user=auditor, request=request)
    assert "date_handling" in refused.value.errors
    assert not Export.objects.exists()


def test_it_scrubs_the_recipient_from_mail_server_errors_in_the_ledger(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, kind="reminders")

    failed = next(row for row in csv_rows(body) if row["status"] == "failed")
    assert failed["last_error"] == "550 5.1.1 <[email removed]>: mailbox of [name removed] unavailable"


def test_it_draws_shifts_of_at_least_a_day_either_way():
    identity = Identity(identified=False, date_handling="shifted", zone=dt.UTC, key=b"k" * 32)

    shifts = {identity.shift_days(patient_id) for patient_id in range(500)}
    assert 0 not in shifts
    assert min(shifts) >= -365 and max(shifts) <= 365
    assert any(s < 0 for s in shifts) and any(s > 0 for s in shifts)


def test_it_names_rows_with_the_hmac_sha256_of_kind_and_id():
    identity = Identity(identified=False, date_handling="shifted", zone=dt.UTC, key=b"k" * 32)

    expected = hmac.new(b"k" * 32, b"assessment:42", hashlib.sha256).hexdigest()[:16]
    assert identity.token("assessment", 42) == identity.token("assessment", 42) == expected
    assert identity.patient(42) == "P-" + hmac.new(b"k" * 32, b"patient:42", hashlib.sha256).hexdigest()[:16]


def test_it_scrubs_names_case_insensitively():
    assert scrub_text("Bounce for MARIA@x.example (maria)", names=["Maria"]) == "Bounce for [email removed] ([name removed])"


def test_it_keeps_the_identifiers_in_an_identified_export(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, identified=True, format="xlsx")

    sheet = load_workbook(io.BytesIO(body)).active
    values = {cell.value for row in sheet.iter_rows() for cell in row}
    assert SECRETS["family_name"] in values
    assert SECRETS["email"] in values
