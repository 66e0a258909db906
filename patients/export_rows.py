"""Rows for exports: what is selected, and how people and dates appear in the output.

Selection goes through ``clinic.scoping.scoped`` with the export capability
and is pinned to the export's clinic.  Rows are read a batch at a time (on
PostgreSQL through a server-side cursor, see ``value_batches``) and enriched
one batch at a time, so memory stays flat however many rows there are.

De-identified exports replace every identifier with an HMAC of the database
id under a random key that exists only while the export runs: the same
patient gets the same pseudonym throughout one export and an unlinkable one in
the next.  Names, emails, phone numbers, birth dates, the clinic's patient
number and free-text notes are never selected into their rows at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain, groupby, islice
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.models import Exists, Min, OuterRef, Q
from django.db.models.sql.compiler import SQLCompiler

from clinic.local_days import within_days
from clinic.roles import Capability
from clinic.scoping import scoped
from patients.models import AdverseEvent, ExosomeApplication, Export, OutcomeAssessment, Reminder, Treatment

#: rows fetched per database round trip, and rows enriched together
BATCH_SIZE = 2000


# --- selection -----------------------------------------------------------------


def _filter_date(export: Export, name: str) -> dt.date | None:
    value = export.filters.get(name)
    return dt.date.fromisoformat(value) if value else None


def _filtered(queryset: models.QuerySet, export: Export, *, time_field: str) -> models.QuerySet:
    # Scoped with the export capability and then pinned to the export's
    # clinic: a person with roles in two clinics exports one at a time.
    queryset = scoped(queryset, export.requested_by, Capability.EXPORT).filter(treatment__clinic=export.clinic_id)
    # The picked dates are days of the export's clinic, not UTC days.
    queryset = queryset.filter(
        within_days(
            time_field, first_day=_filter_date(export, "date_from"), last_day=_filter_date(export, "date_to"),
            zone=ZoneInfo(export.clinic.time_zone),
        )
    )
    if export.filters.get("protocol"):
        queryset = queryset.filter(treatment__protocol_version__protocol_id=export.filters["protocol"])
    if export.filters.get("clinician"):
        queryset = queryset.filter(treatment__clinician_id=export.filters["clinician"])
    return queryset


def outcome_queryset(export: Export) -> models.QuerySet[OutcomeAssessment]:
    """The assessments an outcome export covers (filtered on the procedure date)."""
    return _filtered(OutcomeAssessment.objects.all(), export, time_field="treatment__ended_at")


def reminder_queryset(export: Export) -> models.QuerySet[Reminder]:
    """The reminders a ledger export covers (filtered on the due time)."""
    return _filtered(Reminder.objects.all(), export, time_field="due_at")


def recall_queryset(export: Export) -> models.QuerySet[ExosomeApplication]:
    """The applications of the recall list's lot, in the export's clinic (cancelled treatments included)."""
    queryset = scoped(ExosomeApplication.objects.all(), export.requested_by, Capability.EXPORT)
    return queryset.filter(treatment__clinic=export.clinic_id, lot_id=export.filters.get("lot"))


def adverse_event_queryset(export: Export) -> models.QuerySet[AdverseEvent]:
    """The adverse events an adverse-event export covers: those of the treatments the outcome export would cover
    (filtered on the procedure date), whether or not the treatment or the event's arm has any assessment."""
    return _filtered(AdverseEvent.objects.all(), export, time_field="treatment__ended_at")


def count_rows(export: Export) -> int:
    if export.kind == Export.Kind.OUTCOMES:
        return outcome_queryset(export).count()
    if export.kind == Export.Kind.ADVERSE_EVENTS:
        return adverse_event_queryset(export).count()
    if export.kind == Export.Kind.RECALL:
        return recall_queryset(export).count()
    return reminder_queryset(export).count()


def _batches(iterable: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(iterable)
    while batch := list(islice(iterator, size)):
        yield batch


def _reads_with_psycopg(vendor: str, compiler: SQLCompiler) -> bool:
    """PostgreSQL, and no column whose value Django converts after reading it."""
    return vendor == "postgresql" and not compiler.get_converters([column for column, _, _ in compiler.select])


def value_batches(queryset: models.QuerySet, *, batch_size: int = BATCH_SIZE) -> Iterator[list[tuple]]:
    """The tuples of a ``values_list(*fields)`` queryset, a batch at a time: the rows ``iterator()`` gives.

    On PostgreSQL they are read from a server-side cursor in binary, which
    psycopg decodes in C.  Django reads text and decodes every ``timestamptz``
    with a loader written in Python (to pin the time zone): on a large export
    that took a fifth of the time, for the same instants.  Queries that need
    Django's converters, and other databases, go through ``iterator()``.
    """
    connection = connections[queryset.db]
    compiler = queryset.query.get_compiler(using=queryset.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:  # e.g. filtered on an empty list of clinics
        return
    if not _reads_with_psycopg(connection.vendor, compiler):
        yield from _batches(queryset.iterator(chunk_size=batch_size), batch_size)
        return
    with connection.chunked_cursor() as cursor, connection.wrap_database_errors:
        cursor.cursor.execute(sql, params, binary=True)
        while batch := cursor.cursor.fetchmany(batch_size):
            yield batch

# --- de-identification ---------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """How one export names people and dates.

    ``key`` is drawn when the export starts and never stored: nobody, the
    clinic included, can map a pseudonym back to a patient from the file.
    """

    identified: bool
    date_handling: str
    zone: ZoneInfo
    key: bytes = field(repr=False)

    @classmethod
    def for_export(cls, export: Export) -> Identity:
        return cls(
            identified=export.identified,
            date_handling=export.date_handling,
            zone=ZoneInfo(export.clinic.time_zone),
            key=secrets.token_bytes(32),
        )

    @cached_property
    def _keyed(self) -> hmac.HMAC:
        return hmac.new(self.key, digestmod=hashlib.sha256)

    def _digest(self, label: str) -> bytes:
        # A copy of the keyed HMAC skips setting the key up again: the same
        # digest in less than half the time, and a de-identified export takes
        # one per row.
        keyed = self._keyed.copy()
        keyed.update(label.encode())
        return keyed.digest()

    def token(self, kind: str, pk: int) -> str:
        """A stable pseudonym for row ``pk`` of ``kind`` within this export."""
        return self._digest(f"{kind}:{pk}")[:8].hex()

    def ref(self, kind: str, pk: int | None) -> int | str | None:
        if pk is None:
            return None
        return pk if self.identified else self.token(kind, pk)

    def patient(self, pk: int) -> int | str:
        return pk if self.identified else f"P-{self.token('patient', pk)}"

    def shift_days(self, patient_id: int) -> int:
        # Per patient, so intervals within one patient's record survive while
        # calendar dates no longer line up with anything outside the file.
        number = int.from_bytes(self._digest(f"shift:{patient_id}")[:4], "big")
        days = 1 + (number >> 1) % 365
        return days if number & 1 else -days

    def _offset(self, day: dt.date, anchor: dt.datetime | None) -> int | None:
        if anchor is None:
            return None
        return (day - anchor.astimezone(self.zone).date()).days

    def moment(self, value: dt.datetime | None, *, patient_id: int, anchor: dt.datetime | None) -> Any:
        """A datetime as this export shows it: itself, shifted, or a day offset."""
        if value is None or self.date_handling == Export.DateHandling.ACTUAL:
            return value
        if self.date_handling == Export.DateHandling.SHIFTED:
            return value + dt.timedelta(days=self.shift_days(patient_id))
        return self._offset(value.astimezone(self.zone).date(), anchor)

    def day(self, value: dt.date | None, *, patient_id: int, anchor: dt.datetime | None) -> Any:
        if value is None or self.date_handling == Export.DateHandling.ACTUAL:
            return value
        if self.date_handling == Export.DateHandling.SHIFTED:
            return value + dt.timedelta(days=self.shift_days(patient_id))
        return self._offset(value, anchor)

    @property
    def uses_offsets(self) -> bool:
        return self.date_handling == Export.DateHandling.DAY_OFFSETS

    def when(self, name: str) -> str:
        """Column name for a point in time: ``<name>_at``, or ``<name>_day`` for day offsets."""
        return f"{name}_day" if self.uses_offsets else f"{name}_at"


def _first_treatments(patient_ids: Iterable[int]) -> dict[int, dt.datetime]:
    rows = Treatment.objects.filter(patient_id__in=set(patient_ids)).values("patient_id").annotate(first=Min("ended_at"))
    return {row["patient_id"]: row["first"] for row in rows}


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def scrub_text(text: str, *, names: Iterable[str]) -> str:
    """Remove email addresses and the given names from free text (SMTP errors quote the recipient)."""
    text = _EMAIL.sub("[email removed]", text)
    for name in names:
        if name and len(name) > 1:
            text = re.sub(re.escape(name), "[name removed]", text, flags=re.IGNORECASE)
    return text

# --- outcome records ---------------------------------------------------------------

_OUTCOME_FIELDS = (
    "id", "treatment_id", "treatment__patient_id", "treatment__status", "treatment__started_at",
    "treatment__ended_at", "treatment__areas", "treatment__clinician__username",
    "treatment__protocol_version__protocol__procedure", "treatment__protocol_version__protocol__name",
    "treatment__protocol_version__number", "arm_id", "arm__label", "arm__is_control", "arm__control_description",
    "arm__product__name", "time_point_day", "phase", "source", "erythema", "oedema", "reepithelialisation_complete",
    "reepithelialisation_percent", "pain", "pruritus", "gais", "applied_as_instructed", "problem_flagged",
    "recorded_by__username", "recorded_at",
)
# Selected only for identified exports: de-identified rows never hold them.
_IDENTIFYING_FIELDS = (
    "treatment__patient__reference", "treatment__patient__given_name", "treatment__patient__family_name",
    "treatment__patient__date_of_birth", "treatment__patient__email", "treatment__patient__phone", "notes",
)
SCORES = (
    "erythema", "oedema", "reepithelialisation_complete", "reepithelialisation_percent", "pain", "pruritus", "gais",
    "applied_as_instructed", "problem_flagged",
)


_APPLICATION_FIELDS = (
    "id", "treatment_id", "arm_id", "arm__label", "lot__lot_number", "lot__expiry_date", "lot__product__name",
    "volume_ml", "minutes_after_procedure", "applied_by__username",
)
_ADVERSE_EVENT_FIELDS = (
    "id", "treatment_id", "arm_id", "arm__label", "kind", "severity", "onset_date", "resolution_date",
    "recorded_by__username", "recorded_at",
)


class _SideRows:
    """One treatment's applications (or adverse events) at a time, read alongside the assessments.

    Both are read in (patient, treatment) order, so the side rows of the
    whole export come from one query and are consumed like a merge join,
    instead of one query per batch of assessments.
    """

    def __init__(self, queryset: models.QuerySet, fields: tuple[str, ...], *, batch_size: int) -> None:
        self.fields = fields
        batches = value_batches(queryset.values_list("treatment__patient_id", *fields), batch_size=batch_size)
        self.rows = chain.from_iterable(batches)
        self.key_of = itemgetter(0, 1 + fields.index("treatment_id"))
        self.pending: tuple | None = None
        self.last: tuple[int, int] | None = None
        self.taken: list[dict] = []

    def take(self, patient_id: int, treatment_id: int) -> list[dict]:
        """The side rows of this treatment (asked again when its assessments span two batches).

        Those of treatments the assessments skipped are passed over.
        """
        wanted = (patient_id, treatment_id)
        if wanted == self.last:
            return self.taken
        self.last, self.taken = wanted, []
        while True:
            if self.pending is None:
                self.pending = next(self.rows, None)
                if self.pending is None:
                    return self.taken
            key = self.key_of(self.pending)
            if key > wanted:
                return self.taken
            if key == wanted:
                self.taken.append(dict(zip(self.fields, self.pending[1:], strict=True)))
            self.pending = None


def _side_rows(
    export: Export, model: type[models.Model], fields: tuple[str, ...], *order: str, batch_size: int, where: Q | None = None
) -> _SideRows:
    # The same scoping and filters as the assessments: the applications and
    # events of exactly the treatments the export covers.
    queryset = _filtered(model.objects.all(), export, time_field="treatment__ended_at").filter(where or Q()).order_by(
        "treatment__patient_id", "treatment_id", *order
    )
    return _SideRows(queryset, fields, batch_size=batch_size)


def _same_arm(item: dict, arm_id: int | None) -> bool:
    # An application or event without an arm covers the whole treatment, and
    # an assessment without an arm sees everything on its treatment.
    return item["arm_id"] is None or arm_id is None or item["arm_id"] == arm_id


def outcome_fields(export: Export) -> tuple[str, ...]:
    """The values read for each assessment, in the order of the tuples ``outcome_batches`` yields."""
    return _OUTCOME_FIELDS + (_IDENTIFYING_FIELDS if export.identified else ())


@dataclass(frozen=True)
class OutcomeBatch:
    """Assessments as tuples of ``outcome_fields`` values, with their treatments' side data and patients' anchors."""

    rows: list[tuple]
    applications: dict[int, list[dict]]
    adverse_events: dict[int, list[dict]]
    anchors: dict[int, dt.datetime]

    def record(self, fields: tuple[str, ...], values: tuple) -> dict:
        """One assessment as the dict the column readers and the FHIR builder take."""
        record = dict(zip(fields, values, strict=True))
        record["applications"] = self.applications.get(record["treatment_id"], [])
        record["adverse_events"] = self.adverse_events.get(record["treatment_id"], [])
        record["anchor"] = self.anchors.get(record["treatment__patient_id"])
        return record


def outcome_batches(export: Export, *, batch_size: int = BATCH_SIZE) -> Iterator[OutcomeBatch]:
    """Every assessment of the export, a batch at a time with its treatments' applications and adverse events.

    Ordered by patient and treatment, so writers can emit a patient's or a
    treatment's own resources once, when it first appears.
    """
    fields = outcome_fields(export)
    treatment_of = itemgetter(fields.index("treatment__patient_id"), fields.index("treatment_id"))
    applications = _side_rows(export, ExosomeApplication, _APPLICATION_FIELDS, "id", batch_size=batch_size)
    event_fields = _ADVERSE_EVENT_FIELDS + (("description", "action_taken") if export.identified else ())
    adverse_events = _side_rows(export, AdverseEvent, event_fields, "onset_date", "id", batch_size=batch_size)
    queryset = (
        outcome_queryset(export)
        .values_list(*fields)
        .order_by("treatment__patient_id", "treatment_id", "time_point_day", "phase", "arm__label", "source", "id")
    )
    offsets = export.date_handling == Export.DateHandling.DAY_OFFSETS
    for rows in value_batches(queryset, batch_size=batch_size):
        treatments = dict.fromkeys(map(treatment_of, rows))  # in order, each once
        yield OutcomeBatch(
            rows=rows,
            applications={key[1]: applications.take(*key) for key in treatments},
            adverse_events={key[1]: adverse_events.take(*key) for key in treatments},
            anchors=_first_treatments(patient for patient, _ in treatments) if offsets else {},
        )


def outcome_records(export: Export, *, batch_size: int = BATCH_SIZE) -> Iterator[dict]:
    """Every assessment of the export as a dict, enriched with its treatment's applications and adverse events."""
    fields = outcome_fields(export)
    for batch in outcome_batches(export, batch_size=batch_size):
        for values in batch.rows:
            yield batch.record(fields, values)


_UNASSESSED_TREATMENT_FIELDS = (
    "treatment__patient_id", "treatment_id", "treatment__status", "treatment__started_at", "treatment__ended_at",
    "treatment__areas", "treatment__clinician__username", "treatment__protocol_version__protocol__procedure",
    "treatment__protocol_version__protocol__name", "treatment__protocol_version__number",
)
_IDENTIFYING_PATIENT_FIELDS = tuple(name for name in _IDENTIFYING_FIELDS if name.startswith("treatment__patient__"))
_EVENT_OWN_FIELDS = tuple(name for name in _ADVERSE_EVENT_FIELDS if name != "treatment_id")


def _without_assessments(treatment: str) -> Q:
    # Every assessment of a treatment the export covers is in the export (the
    # filters are the treatment's), so "none in the export" is "none at all".
    return ~Exists(OutcomeAssessment.objects.filter(treatment_id=OuterRef(treatment)))


def unassessed_treatments(export: Export, *, batch_size: int = BATCH_SIZE) -> Iterator[dict]:
    """Each treatment of the export with adverse events and no assessment, once, by patient and treatment.

    ``outcome_records`` never reaches these treatments, so their events would be
    on no record. Each comes as a record like an assessment's without an ``id``
    or scores: the treatment's and the patient's values, its applications and
    its adverse events (selected by ``adverse_event_queryset``, as the
    adverse-event export selects them), in the order of ``outcome_records``
    so that a writer can merge the two.
    """
    treatment_fields = _UNASSESSED_TREATMENT_FIELDS + (_IDENTIFYING_PATIENT_FIELDS if export.identified else ())
    event_fields = _EVENT_OWN_FIELDS + (("description", "action_taken") if export.identified else ())
    queryset = (
        adverse_event_queryset(export)
        .filter(_without_assessments("treatment_id"))
        .values_list(*treatment_fields, *event_fields)
        .order_by("treatment__patient_id", "treatment_id", "onset_date", "id")
    )
    with_events = Exists(AdverseEvent.objects.filter(treatment_id=OuterRef("treatment_id")))
    applications = _side_rows(
        export, ExosomeApplication, _APPLICATION_FIELDS, "id", batch_size=batch_size,
        where=_without_assessments("treatment_id") & with_events,
    )
    offsets = export.date_handling == Export.DateHandling.DAY_OFFSETS
    split = len(treatment_fields)

    def rows() -> Iterator[tuple[tuple, dt.datetime | None]]:
        for batch in value_batches(queryset, batch_size=batch_size):
            anchors = _first_treatments(values[0] for values in batch) if offsets else {}
            for values in batch:
                yield values, anchors.get(values[0])

    for (patient_id, treatment_id), group in groupby(rows(), key=lambda item: item[0][:2]):
        events = list(group)
        record = dict(zip(treatment_fields, events[0][0][:split], strict=True))
        record["id"] = None
        record["anchor"] = events[0][1]
        record["applications"] = applications.take(patient_id, treatment_id)
        record["adverse_events"] = [
            {"treatment_id": treatment_id, **dict(zip(event_fields, values[split:], strict=True))} for values, _ in events
        ]
        yield record


Column = tuple[str, Callable[[dict], Any]]

#: Who the patient is, in an identified export (the outcome log, a recall list), from the row's treatment.
IDENTIFIED_PATIENT: list[Column] = [
    ("patient_id", itemgetter("treatment__patient_id")),
    ("patient_reference", itemgetter("treatment__patient__reference")),
    ("given_name", itemgetter("treatment__patient__given_name")),
    ("family_name", itemgetter("treatment__patient__family_name")),
    ("date_of_birth", itemgetter("treatment__patient__date_of_birth")),
    ("email", itemgetter("treatment__patient__email")),
]


def _arm_product(record: dict) -> str:
    if record["arm__is_control"]:
        return f"control: {record['arm__control_description']}".rstrip(": ")
    return record["arm__product__name"] or ""


def _products(record: dict) -> str:
    names = {a["lot__product__name"] for a in record["applications"] if _same_arm(a, record["arm_id"])}
    return "; ".join(sorted(names))


def _lots(record: dict) -> str:
    return "; ".join(a["lot__lot_number"] for a in record["applications"] if _same_arm(a, record["arm_id"]))


def _format_day(value: Any, *, offsets: bool) -> str:
    if value is None:
        return ""
    return f"day {value}" if offsets else value.isoformat()


def _adverse_text(record: dict, identity: Identity) -> str:
    parts = []
    patient_id = record["treatment__patient_id"]
    for event in record["adverse_events"]:
        if not _same_arm(event, record["arm_id"]):
            continue
        onset = identity.day(event["onset_date"], patient_id=patient_id, anchor=record["anchor"])
        resolved = identity.day(event["resolution_date"], patient_id=patient_id, anchor=record["anchor"])
        text = f"{event['kind']} ({event['severity']}), onset {_format_day(onset, offsets=identity.uses_offsets)}"
        text += f", resolved {_format_day(resolved, offsets=identity.uses_offsets)}" if resolved is not None else ", ongoing"
        if event["arm__label"]:
            text += f", {event['arm__label']}"
        parts.append(text)
    return " | ".join(parts)


def _moment_reader(identity: Identity, key: str) -> Callable[[dict], Any]:
    """Read a point in time as the export shows it (real dates need no conversion at all)."""
    if identity.date_handling == Export.DateHandling.ACTUAL:
        return itemgetter(key)
    return lambda r: identity.moment(r[key], patient_id=r["treatment__patient_id"], anchor=r["anchor"])


def outcome_columns(identity: Identity) -> list[Column]:
    """The outcome log's columns, in order, with how to read each from a record.

    Plain values are read with ``itemgetter``: a million rows of 36 columns
    make every reader call count.
    """

    def moment(key: str) -> Callable[[dict], Any]:
        return _moment_reader(identity, key)

    if identity.identified:
        people: list[Column] = [
            ("assessment_id", itemgetter("id")),
            *IDENTIFIED_PATIENT,
            ("treatment_id", itemgetter("treatment_id")),
        ]
    else:
        people = [
            ("assessment", lambda r: identity.token("assessment", r["id"])),
            ("patient", lambda r: identity.patient(r["treatment__patient_id"])),
            ("treatment", lambda r: identity.token("treatment", r["treatment_id"])),
        ]
    treatment: list[Column] = [
        ("treatment_status", itemgetter("treatment__status")),
        ("procedure", itemgetter("treatment__protocol_version__protocol__procedure")),
        (identity.when("procedure_ended"), moment("treatment__ended_at")),
        ("areas", itemgetter("treatment__areas")),
        ("clinician", itemgetter("treatment__clinician__username")),
        ("protocol", itemgetter("treatment__protocol_version__protocol__name")),
        ("protocol_version", itemgetter("treatment__protocol_version__number")),
        ("arm", itemgetter("arm__label")),
        ("arm_is_control", itemgetter("arm__is_control")),
        ("arm_product", _arm_product),
        ("products", _products),
        ("lots", _lots),
        ("time_point_day", itemgetter("time_point_day")),
        ("phase", itemgetter("phase")),
        ("source", itemgetter("source")),
    ]
    scores: list[Column] = [(name, itemgetter(name)) for name in SCORES]
    tail: list[Column] = [("adverse_events", lambda r: _adverse_text(r, identity))]
    if identity.identified:
        tail.append(("notes", itemgetter("notes")))
    tail += [("recorded_by", itemgetter("recorded_by__username")), (identity.when("recorded"), moment("recorded_at"))]
    return people + treatment + scores + tail

# --- reminder ledger ------------------------------------------------------------------

_REMINDER_FIELDS = (
    "id", "treatment_id", "treatment__patient_id", "treatment__protocol_version__protocol__name",
    "treatment__protocol_version__number", "step__order", "step__title", "step__kind", "occurrence", "occurs_at",
    "due_at", "status", "attempts", "queued_at", "sent_at", "done_at", "last_error",
    "resend_count", "previous_status", "previous_attempts", "previous_attempt_at", "previous_sent_at",
    "previous_error", "move_count", "moved_from", "move_reason",
    # Read even for de-identified exports, only to scrub them out of error texts.
    "treatment__patient__given_name", "treatment__patient__family_name",
)


def reminder_records(export: Export, *, batch_size: int = BATCH_SIZE) -> Iterator[dict]:
    """Every reminder of the ledger export, oldest due first."""
    fields = _REMINDER_FIELDS
    if export.identified:
        fields += ("treatment__patient__reference", "treatment__patient__email")
    rows = reminder_queryset(export).values(*fields).order_by("due_at", "id").iterator(chunk_size=batch_size)
    offsets = export.date_handling == Export.DateHandling.DAY_OFFSETS
    for batch in _batches(rows, batch_size):
        anchors = _first_treatments(row["treatment__patient_id"] for row in batch) if offsets else {}
        for row in batch:
            row["anchor"] = anchors.get(row["treatment__patient_id"])
            yield row


def reminder_columns(identity: Identity) -> list[Column]:
    """The delivery ledger's columns: every reminder with its step, due time, status, attempts, sent time and error,
    and, for a resent one, how many times and how the delivery before the latest resend had ended."""

    def moment(key: str) -> Callable[[dict], Any]:
        return lambda r: identity.moment(r[key], patient_id=r["treatment__patient_id"], anchor=r["anchor"])

    def error(key: str) -> Callable[[dict], str]:
        def read(record: dict) -> str:
            if identity.identified:
                return record[key]
            names = (record["treatment__patient__given_name"], record["treatment__patient__family_name"])
            return scrub_text(record[key], names=names)

        return read

    if identity.identified:
        people: list[Column] = [
            ("reminder_id", lambda r: r["id"]),
            ("patient_id", lambda r: r["treatment__patient_id"]),
            ("patient_reference", lambda r: r["treatment__patient__reference"]),
            ("patient_name", lambda r: f"{r['treatment__patient__given_name']} {r['treatment__patient__family_name']}"),
            ("patient_email", lambda r: r["treatment__patient__email"]),
            ("treatment_id", lambda r: r["treatment_id"]),
        ]
    else:
        people = [
            ("reminder", lambda r: identity.token("reminder", r["id"])),
            ("patient", lambda r: identity.patient(r["treatment__patient_id"])),
            ("treatment", lambda r: identity.token("treatment", r["treatment_id"])),
        ]
    return people + [
        ("protocol", lambda r: r["treatment__protocol_version__protocol__name"]),
        ("protocol_version", lambda r: r["treatment__protocol_version__number"]),
        ("step_order", lambda r: r["step__order"]),
        ("step", lambda r: r["step__title"]),
        ("step_kind", lambda r: r["step__kind"]),
        ("occurrence", lambda r: r["occurrence"]),
        (identity.when("occurs"), moment("occurs_at")),
        (identity.when("due"), moment("due_at")),
        ("status", lambda r: r["status"]),
        ("attempts", lambda r: r["attempts"]),
        (identity.when("queued"), moment("queued_at")),
        (identity.when("sent"), moment("sent_at")),
        (identity.when("done"), moment("done_at")),
        ("last_error", error("last_error")),
        # A resend starts a new delivery; the one it replaced (of the latest resend) stays in the ledger.
        ("resend_count", lambda r: r["resend_count"]),
        ("previous_status", lambda r: r["previous_status"]),
        ("previous_attempts", lambda r: r["previous_attempts"]),
        (identity.when("previous_attempt"), moment("previous_attempt_at")),
        (identity.when("previous_sent"), moment("previous_sent_at")),
        ("previous_error", error("previous_error")),
        # A follow-up visit staff moved by hand (the patient rebooked): occurs_at is the new time.
        ("move_count", lambda r: r["move_count"]),
        (identity.when("visit_before_move"), moment("moved_from")),
        ("move_reason", error("move_reason")),
    ]

# --- adverse events ---------------------------------------------------------------------

_EVENT_FIELDS = (
    "id", "treatment_id", "treatment__patient_id", "treatment__status", "treatment__ended_at",
    "treatment__protocol_version__protocol__procedure", "treatment__protocol_version__protocol__name",
    "treatment__protocol_version__number", "arm__label", "arm__is_control", "kind", "severity", "onset_date",
    "resolution_date", "recorded_by__username", "recorded_at", "notified_at",
)
# Selected only for identified exports: free text may name the patient, as the outcome log's notes may.
_IDENTIFYING_EVENT_FIELDS = (
    "treatment__patient__reference", "treatment__patient__given_name", "treatment__patient__family_name",
    "treatment__patient__date_of_birth", "treatment__patient__email", "description", "action_taken",
)


def adverse_event_records(export: Export, *, batch_size: int = BATCH_SIZE) -> Iterator[dict]:
    """Every adverse event of the export once, by patient, treatment and onset, each with its patient's anchor."""
    fields = _EVENT_FIELDS + (_IDENTIFYING_EVENT_FIELDS if export.identified else ())
    queryset = adverse_event_queryset(export).values_list(*fields).order_by(
        "treatment__patient_id", "treatment_id", "onset_date", "id"
    )
    offsets = export.date_handling == Export.DateHandling.DAY_OFFSETS
    for batch in value_batches(queryset, batch_size=batch_size):
        rows = [dict(zip(fields, values, strict=True)) for values in batch]
        anchors = _first_treatments(row["treatment__patient_id"] for row in rows) if offsets else {}
        for row in rows:
            row["anchor"] = anchors.get(row["treatment__patient_id"])
            yield row


def adverse_event_columns(identity: Identity) -> list[Column]:
    """One row per adverse event: whose, which treatment and arm, what, how severe, when, who recorded it and when,
    and when the clinicians were told (moderate or worse). Description and action taken only when identified."""

    def moment(key: str) -> Callable[[dict], Any]:
        return _moment_reader(identity, key)

    def day(key: str) -> Callable[[dict], Any]:
        return lambda r: identity.day(r[key], patient_id=r["treatment__patient_id"], anchor=r["anchor"])

    def on(name: str) -> str:
        return f"{name}_day" if identity.uses_offsets else f"{name}_date"

    if identity.identified:
        people: list[Column] = [
            ("adverse_event_id", itemgetter("id")),
            *IDENTIFIED_PATIENT,
            ("treatment_id", itemgetter("treatment_id")),
        ]
    else:
        people = [
            ("adverse_event", lambda r: identity.token("adverse-event", r["id"])),
            ("patient", lambda r: identity.patient(r["treatment__patient_id"])),
            ("treatment", lambda r: identity.token("treatment", r["treatment_id"])),
        ]
    event: list[Column] = [
        ("treatment_status", itemgetter("treatment__status")),
        ("procedure", itemgetter("treatment__protocol_version__protocol__procedure")),
        (identity.when("procedure_ended"), moment("treatment__ended_at")),
        ("protocol", itemgetter("treatment__protocol_version__protocol__name")),
        ("protocol_version", itemgetter("treatment__protocol_version__number")),
        ("arm", itemgetter("arm__label")),  # empty: the event concerns the whole treatment
        ("arm_is_control", itemgetter("arm__is_control")),
        ("kind", itemgetter("kind")),
        ("severity", itemgetter("severity")),
        (on("onset"), day("onset_date")),
        (on("resolution"), day("resolution_date")),  # empty: ongoing
    ]
    if identity.identified:
        event += [("description", itemgetter("description")), ("action_taken", itemgetter("action_taken"))]
    return people + event + [
        ("recorded_by", itemgetter("recorded_by__username")),
        (identity.when("recorded"), moment("recorded_at")),
        (identity.when("clinicians_notified"), moment("notified_at")),
    ]

# --- recall list of a lot ------------------------------------------------------------------

_RECALL_FIELDS = (
    "id", "treatment_id", "treatment__patient_id", "treatment__patient__reference",
    "treatment__patient__given_name", "treatment__patient__family_name", "treatment__patient__date_of_birth",
    "treatment__patient__email", "treatment__patient__phone", "treatment__patient__reminder_consent",
    "treatment__patient__opted_out_at", "treatment__status", "treatment__cancel_reason", "treatment__ended_at",
    "volume_ml", "arm__label", "minutes_after_procedure", "applied_by__username",
)
#: adverse event severities from the least to the most serious
SEVERITY_ORDER = tuple(AdverseEvent.Severity.values)


def _adverse_summaries(export: Export, treatment_ids: Iterable[int]) -> dict[int, tuple[int, str | None]]:
    """(number of adverse events, the most serious severity) of each treatment that has any."""
    events = scoped(AdverseEvent.objects.all(), export.requested_by, Capability.EXPORT).filter(
        treatment_id__in=set(treatment_ids)
    )
    summaries: dict[int, tuple[int, str | None]] = {}
    for treatment_id, severity in events.values_list("treatment_id", "severity").order_by():
        count, worst = summaries.get(treatment_id, (0, None))
        rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else -1
        if worst is None or rank > SEVERITY_ORDER.index(worst):
            worst = severity
        summaries[treatment_id] = (count + 1, worst)
    return summaries


def recall_records(export: Export, *, batch_size: int = BATCH_SIZE) -> Iterator[dict]:
    """Every application of the recall list's lot, oldest procedure first, with its treatment's adverse events."""
    rows = (
        recall_queryset(export).values(*_RECALL_FIELDS).order_by("treatment__ended_at", "treatment_id", "id")
        .iterator(chunk_size=batch_size)
    )
    for batch in _batches(rows, batch_size):
        summaries = _adverse_summaries(export, (row["treatment_id"] for row in batch))
        for row in batch:
            row["adverse_event_count"], row["worst_severity"] = summaries.get(row["treatment_id"], (0, None))
            yield row


def reminder_email_note(record: dict, zone: dt.tzinfo = dt.UTC) -> str:
    """Why reminder emails may or may not go to the patient (the reminder sender's own rule); a date on ``zone``'s clock."""
    if record["treatment__patient__opted_out_at"] is not None:
        return f"opted out {record['treatment__patient__opted_out_at'].astimezone(zone):%Y-%m-%d}"
    if not record["treatment__patient__reminder_consent"]:
        return "no consent"
    if not record["treatment__patient__email"]:
        return "no email address"
    return "consented"


def recall_columns(identity: Identity) -> list[Column]:
    """The recall list's columns: who to contact, how, and what they received of the lot.

    Always identified (its purpose is to contact the patients).  The procedure's
    end is written in the clinic's local time with its UTC offset, as the
    people making the calls read it.
    """
    zone = identity.zone

    def local(record: dict) -> str:
        ended = record["treatment__ended_at"]
        return ended.astimezone(zone).isoformat() if ended is not None else ""

    return [
        ("application_id", itemgetter("id")),
        *IDENTIFIED_PATIENT,
        ("phone", itemgetter("treatment__patient__phone")),
        ("reminder_emails_allowed", lambda r: reminder_email_note(r) == "consented"),
        ("reminder_emails", lambda r: reminder_email_note(r, zone)),  # the day on the clinic's clock, as the calls are
        ("treatment_id", itemgetter("treatment_id")),
        ("treatment_status", itemgetter("treatment__status")),
        ("cancel_reason", itemgetter("treatment__cancel_reason")),
        ("procedure_ended_local", local),
        ("volume_ml", itemgetter("volume_ml")),
        ("arm", itemgetter("arm__label")),
        ("minutes_after_procedure", itemgetter("minutes_after_procedure")),
        ("applied_by", itemgetter("applied_by__username")),
        ("adverse_events", itemgetter("adverse_event_count")),
        ("most_serious_adverse_event", itemgetter("worst_severity")),
    ]
