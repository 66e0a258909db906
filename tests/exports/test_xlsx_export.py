"""The outcome log as XLSX (openpyxl write-only): typed cells that read back as the database values."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
from openpyxl import load_workbook

from tests.exports.helpers import run_streamed

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
        assert row["recorded_at"] == assessment.recorded_at.astimezone(dt.UTC).replace(tzinfo=None)
    assert export.manifest["sha256"] == hashlib.sha256(body).hexdigest()
