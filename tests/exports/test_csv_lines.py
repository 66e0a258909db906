"""The outcome log's CSV lines (``patients.export_csv``) are the bytes the column-by-column writer produces."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patients import export_rows
from patients.export_csv import _Fields, layout_fits, outcome_csv_lines
from patients.export_formats import csv_cell, csv_chunks, csv_line_chunks
from patients.export_rows import Identity, outcome_columns, outcome_fields, outcome_queryset, outcome_records, value_batches
from patients.models import Export, OutcomeAssessment
from tests.exports.conftest import INJECTION

MODES = [(True, "actual"), (False, "shifted"), (False, "day_offsets")]


def _export(auditor, clinic, *, identified: bool, date_handling: str) -> Export:  # noqa: ANN001
    return Export.objects.create(
        clinic=clinic, requested_by=auditor, kind=Export.Kind.OUTCOMES, format=Export.Format.CSV, filters={},
        identified=identified, date_handling=date_handling,
    )


def _by_columns(export: Export, identity: Identity) -> bytes:
    columns = outcome_columns(identity)
    rows = ([read(record) for _, read in columns] for record in outcome_records(export))
    return b"".join(csv_chunks([name for name, _ in columns], rows))


def _by_lines(export: Export, identity: Identity, *, batch_size: int = 2) -> bytes:
    columns = outcome_columns(identity)
    lines = outcome_csv_lines(export, identity, columns, batch_size=batch_size)
    return b"".join(csv_line_chunks([name for name, _ in columns], lines))


@pytest.fixture
def awkward(outcome_data):
    """Text a CSV writer must quote or neutralise, in the cells written per treatment and per assessment."""
    patient = outcome_data.patients[1]
    patient.given_name, patient.family_name, patient.reference, patient.email = 'Zoë, "Jo"', "-Smith\r\nJr", "=1+1", "-2"
    patient.save()
    split = outcome_data.treatments[0]
    split.areas = "cheeks,\nchin"
    split.save()
    for index, assessment in enumerate(outcome_data.assessments):
        assessment.notes = ["", "a, b", 'say "hi"', "line\nbreak", "@x" + "long, " * 100][index % 5]
        assessment.save()
    OutcomeAssessment.objects.filter(pk=outcome_data.assessments[0].pk).update(notes=INJECTION, phase="+after")
    return outcome_data


@pytest.mark.django_db
@pytest.mark.parametrize(("identified", "date_handling"), MODES)
def test_it_writes_the_bytes_the_columns_give(auditor, clinic_a, awkward, identified, date_handling):
    export = _export(auditor, clinic_a, identified=identified, date_handling=date_handling)
    identity = Identity.for_export(export)

    assert layout_fits(identity, outcome_columns(identity))
    expected = _by_columns(export, identity)
    assert _by_lines(export, identity) == expected
    assert _by_lines(export, identity, batch_size=1000) == expected
    assert expected.count(b"\r\n") >= len(awkward.assessments) + 1


def test_it_leaves_columns_it_does_not_know_to_the_column_by_column_writer():
    identity = Identity(identified=True, date_handling="actual", zone=dt.UTC, key=b"k" * 32)
    columns = outcome_columns(identity)

    assert not layout_fits(identity, [*columns, ("extra", lambda record: 1)])
    assert not layout_fits(identity, [column for column in columns if column[0] != "pain"])


cells = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**6), max_value=10**6),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.datetimes(timezones=st.just(dt.UTC)), st.dates(),
    st.text(alphabet=st.sampled_from(list(',"\r\n\t =+-@\'aé\0 1')), max_size=8),
)


@given(st.lists(cells, min_size=2, max_size=6))
def test_a_line_is_its_cells_text_joined_with_commas(row):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([csv_cell(value) for value in row])

    fields = _Fields()
    assert ",".join(fields.text([value]) for value in row) + "\r\n" == buffer.getvalue()
    assert fields.text(row) + "\r\n" == buffer.getvalue()


@pytest.mark.django_db
def test_it_reads_the_tuples_the_orm_reads(auditor, clinic_a, outcome_data):
    """On PostgreSQL ``value_batches`` reads with psycopg's loaders; the values must be the ORM's."""
    export = _export(auditor, clinic_a, identified=True, date_handling="actual")
    queryset = outcome_queryset(export).values_list(*outcome_fields(export)).order_by("id")

    read = [row for batch in value_batches(queryset, batch_size=2) for row in batch]

    assert read == list(queryset)
    assert [[type(value) for value in row] for row in read] == [[type(value) for value in row] for row in queryset]
    offsets = [value.utcoffset() for row in read for value in row if isinstance(value, dt.datetime)]
    assert len(offsets) == 3 * len(read) and set(offsets) == {dt.timedelta(0)}
    assert list(value_batches(OutcomeAssessment.objects.none().values_list("id"))) == []


@pytest.mark.django_db
@pytest.mark.parametrize(("identified", "date_handling"), MODES)
def test_it_writes_the_same_file_whichever_way_it_reads(auditor, clinic_a, awkward, monkeypatch, identified, date_handling):
    export = _export(auditor, clinic_a, identified=identified, date_handling=date_handling)
    identity = Identity.for_export(export)
    as_read = _by_lines(export, identity)

    monkeypatch.setattr(export_rows, "_reads_with_psycopg", lambda vendor, compiler: False)
    assert _by_lines(export, identity) == as_read


def test_decimal_cells_are_written_as_the_writer_writes_them():
    assert _Fields().text([Decimal("0.50"), None, ""]) == "0.50,,"
