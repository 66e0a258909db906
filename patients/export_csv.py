"""The outcome log as CSV lines, built for a million of them.

``export_rows.outcome_columns`` defines the outcome log for every format.
Read through it cell by cell (36 reader calls, 36 ``csv_cell`` calls and
``csv.writer`` quoting 36 cells a row) a large CSV export spent nearly all its
time in Python.  Most cells do not change from one assessment to the next:
the patient, the treatment, its arm, products, lots and adverse events.  Here
those are read through the same columns, ``csv_cell`` and ``csv.writer`` once
per treatment and arm, and kept as a piece of CSV text; the assessment's own
cells (id, time point, scores, notes, recorder and time) are few distinct
values, so their text is remembered too, and a line is those pieces joined
with commas.

That is the line ``csv.writer`` writes: with minimal quoting it quotes each
field on its own content, and only a row of one empty field is special.
``tests/exports/test_csv_lines.py`` holds the two ways to the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any

from patients.export_formats import csv_cell
from patients.export_rows import BATCH_SIZE, Column, Identity, OutcomeBatch, outcome_batches, outcome_fields
from patients.models import Export

UTC = dt.UTC
#: the assessment's own cells from the time point on, in the order the line below writes them
_ASSESSMENT_CELLS = (
    "time_point_day", "phase", "source", "erythema", "oedema", "reepithelialisation_complete",
    "reepithelialisation_percent", "pain", "pruritus", "gais", "applied_as_instructed", "problem_flagged",
)
#: distinct values whose text each column remembers (recorders, phases, scores and most notes are far fewer)
_REMEMBERED = 5000
#: longer text (a long note) is written each time it comes: remembering it could grow to megabytes
_REMEMBERED_LENGTH = 200


class _Fields:
    """CSV text of cells exactly as ``csv.writer`` writes them within a row: ``csv_cell``, then quoted if need be."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def text(self, cells: list[Any]) -> str:
        """The cells as part of a line: written with one more, empty, cell whose ',\\r\\n' is cut off.

        The extra cell keeps a lone empty cell from being written as '""'.
        """
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow([*map(csv_cell, cells), None])
        return self._buffer.getvalue()[:-3]


class _Texts(dict):
    """The CSV text of values seen before, for one column (``True`` and ``1`` must not share a cache)."""

    def __init__(self, fields: _Fields) -> None:
        super().__init__()
        self.fields = fields

    def __missing__(self, value: Any) -> str:
        text = self.fields.text([value])
        if len(self) < _REMEMBERED and len(text) <= _REMEMBERED_LENGTH:
            self[value] = text
        return text


def layout_fits(identity: Identity, columns: list[Column]) -> bool:
    """Whether ``columns`` are laid out as ``outcome_csv_lines`` writes them (else the export reads them one by one)."""
    names = [name for name, _ in columns]
    tail = ["adverse_events", *(["notes"] if identity.identified else []), "recorded_by", identity.when("recorded")]
    if "time_point_day" not in names:
        return False
    first = names.index("time_point_day")
    return names[first:] == [*_ASSESSMENT_CELLS, *tail] and names[0] == ("assessment_id" if identity.identified else "assessment")


def _moment_text(identity: Identity, record: dict) -> Callable[[dt.datetime | None], str]:
    """The text of this patient's times: ``csv_cell(identity.moment(...))`` with the patient's shift or anchor fixed.

    ISO 8601 times and whole numbers never need quoting.
    """
    if identity.date_handling == Export.DateHandling.ACTUAL:
        return lambda value: "" if value is None else value.astimezone(UTC).isoformat()
    if identity.date_handling == Export.DateHandling.SHIFTED:
        shift = dt.timedelta(days=identity.shift_days(record["treatment__patient_id"]))
        return lambda value: "" if value is None else (value + shift).astimezone(UTC).isoformat()
    if record["anchor"] is None:
        return lambda value: ""
    anchor, zone = record["anchor"].astimezone(identity.zone).date(), identity.zone
    return lambda value: "" if value is None else str((value.astimezone(zone).date() - anchor).days)


def outcome_csv_lines(
    export: Export, identity: Identity, columns: list[Column], *, batch_size: int = BATCH_SIZE
) -> Iterator[list[str]]:
    """The outcome log's CSV lines (CRLF ended), a batch at a time; ``columns`` must pass ``layout_fits``.

    A line is the assessment's id or pseudonym, the cells of its treatment
    and arm, its time point, phase, source and scores, the adverse events,
    its notes (identified exports only), its recorder and time.
    """
    fields = outcome_fields(export)
    at = {name: index for index, name in enumerate(fields)}
    first = [name for name, _ in columns].index("time_point_day")
    shared, adverse = columns[1:first], columns[first + len(_ASSESSMENT_CELLS)][1]
    group_of = itemgetter(at["treatment_id"], at["arm_id"])
    own = itemgetter(*(at[name] for name in ("id", *_ASSESSMENT_CELLS, "recorded_by__username", "recorded_at")))
    identified, token = identity.identified, identity.token
    notes = itemgetter(at["notes"]) if identified else None
    cells = _Fields()
    words, numbers, flags, free_text = _Texts(cells), _Texts(cells), _Texts(cells), _Texts(cells)

    def group(batch: OutcomeBatch, values: tuple) -> tuple[str, str, Callable[[dt.datetime | None], str]]:
        record = batch.record(fields, values)
        head = cells.text([read(record) for _, read in shared])
        return head, cells.text([adverse(record)]), _moment_text(identity, record)

    for batch in outcome_batches(export, batch_size=batch_size):
        groups: dict[tuple, tuple[str, str, Callable[[dt.datetime | None], str]]] = {}
        lines = []
        for values in batch.rows:
            key = group_of(values)
            if (known := groups.get(key)) is None:
                known = groups[key] = group(batch, values)
            head, events, moment = known
            pk, day, phase, source, erythema, oedema, complete, percent, pain, pruritus, gais, applied, flagged, by, when = own(
                values
            )
            # Pseudonyms are hex and ids digits: neither is ever quoted or neutralised.
            name = pk if identified else token("assessment", pk)
            noted = f"{free_text[notes(values)]}," if identified else ""
            lines.append(
                f"{name},{head},{numbers[day]},{words[phase]},{words[source]},{numbers[erythema]},{numbers[oedema]},"
                f"{flags[complete]},{numbers[percent]},{numbers[pain]},{numbers[pruritus]},{numbers[gais]},"
                f"{flags[applied]},{flags[flagged]},{events},{noted}{words[by]},{moment(when)}\r\n"
            )
        yield lines
