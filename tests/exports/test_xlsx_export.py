"""The outcome log as XLSX (openpyxl write-only): typed cells that read back as the database values.

Excel cells hold no time zone: times are date-time cells in UTC, in columns whose names say so, the same
instants the CSV writes as ISO 8601 with "+00:00"; dates are date cells.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
from openpyxl import load_workbook

from patients.models import Export
from tests.exports.helpers import csv_rows, run_streamed

pytestmark = pytest.mark.django_db


def test_it_reads_back_with_numbers_booleans_and_utc_times(auditor, clinic_a, outcome_data):
    export, body = run_streamed(auditor, clinic_a, identified=True, format="xlsx")

    workbook = load_workbook(io.BytesIO(body))
    sheet = workbook["Outcome log"]
    header = [cell.value for cell in sheet[1]]
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert len(rows) == export.row_count == len(outcome_data.assessments)
    for assessment in outcome_data.assessments:
        row = rows[assessment.pk]
        assert row["treatment_id"] == assessment.treatment_id
        assert row["family_name"] == assessment.treatment.patient.family_name
        assert row["time_point_day"] == assessment.time_point_day
        for score in ("erythema", "oedema", "pain", "gais", "reepithelialisation_percent"):
            assert row[score] == getattr(assessment, score)
        assert row["problem_flagged"] is assessment.problem_flagged
        assert row["recorded_at (UTC)"] == assessment.recorded_at.astimezone(dt.UTC).replace(tzinfo=None)
    assert export.manifest["sha256"] == hashlib.sha256(body).hexdigest()


def _sheet(body: bytes):  # noqa: ANN202 - an openpyxl worksheet
    return load_workbook(io.BytesIO(body)).active


def _columns(sheet) -> dict[str, list]:  # noqa: ANN001
    """Each column's cells below the header, by the header's name."""
    header = [cell.value for cell in sheet[1]]
    return {name: [row[index] for row in sheet.iter_rows(min_row=2)] for index, name in enumerate(header)}


@pytest.mark.parametrize(
    "options",
    [
        {"identified": True},
        {"identified": False, "date_handling": Export.DateHandling.SHIFTED},
        {"identified": True, "kind": Export.Kind.REMINDERS},
    ],
)
def test_it_names_the_zone_of_every_column_of_times(auditor, clinic_a, outcome_data, options):
    export, body = run_streamed(auditor, clinic_a, format="xlsx", **options)

    columns = _columns(_sheet(body))
    # openpyxl reads date cells back as datetimes too: a time of day in the format tells a date-time cell.
    times = {name for name, cells in columns.items() if any(cell.is_date and "h" in cell.number_format for cell in cells)}
    named = {name for name in columns if name.endswith(" (UTC)")}
    assert times and times <= named
    for name in named:
        assert all(cell.value is None or cell.number_format == "yyyy-mm-dd h:mm:ss" for cell in columns[name]), name
    assert export.manifest["columns"] == list(columns)
    assert "date-time cells in UTC" in export.manifest["date_note"]


def test_its_times_are_the_instants_the_csv_writes_with_their_offset(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, identified=True, kind=Export.Kind.REMINDERS, format="xlsx")
    _export, text = run_streamed(auditor, clinic_a, identified=True, kind=Export.Kind.REMINDERS, format="csv")

    columns = _columns(_sheet(body))
    by_id = {row["reminder_id"]: row for row in csv_rows(text)}
    for index, reminder_id in enumerate(cell.value for cell in columns["reminder_id"]):
        row = by_id[str(reminder_id)]
        for name in ("occurs_at", "due_at", "sent_at"):
            cell = columns[f"{name} (UTC)"][index].value
            written = row[name] and dt.datetime.fromisoformat(row[name])
            assert (cell and cell.replace(tzinfo=dt.UTC)) == (written or None), name
            assert not row[name] or row[name].endswith("+00:00")


def test_the_date_of_birth_is_a_date_cell(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, identified=True, format="xlsx")

    columns = _columns(_sheet(body))
    births = {cell.value for cell in columns["date_of_birth"]}
    assert dt.datetime(1979, 2, 3) in births  # openpyxl reads every date cell back as a datetime
    assert {cell.number_format for cell in columns["date_of_birth"]} == {"yyyy-mm-dd"}
    assert "date_of_birth (UTC)" not in columns
