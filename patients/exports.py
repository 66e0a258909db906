"""Exports an auditor can trust: the outcome log, its adverse events, the reminder delivery ledger and a lot's recall list.

This module is the service the admin, the API and the Celery task call:
validating a request, running it (streamed to a response or into a stored
file), the manifest, the access-log entry and the retention of files.  The
pipeline is the same for every format:

    selection (``export_rows``: scoped queryset, ``values_list()``, read a batch at a time)
      → records, enriched one batch at a time, people and dates de-identified
      → rows (CSV / XLSX) or FHIR resources (``export_formats``)
      → bytes, chunk by chunk, hashed as they pass.

The outcome log's CSV, the export that runs to a million rows, takes a
shorter way to the same bytes: ``export_csv`` writes its lines straight from
the batches.

Nothing ever holds the whole export: the database cursor yields rows in
chunks, side data (applications and adverse events, read in the same order
as the assessments; first-treatment dates per batch) arrives alongside, and
every writer emits bytes as it goes (XLSX through openpyxl's write-only mode
into a temporary file).  So the memory used is the same for a hundred rows as
for a million.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import slugify

from clinic.audit import record_event
from clinic.models import Clinic, Membership, Role
from clinic.roles import Capability
from clinic.scoping import can, scoped
from patients.export_csv import layout_fits, outcome_csv_lines
from patients.export_formats import FhirBuilder, RunStats, csv_chunks, csv_line_chunks, fhir_chunks, xlsx_chunks, xlsx_header
from patients.export_rows import (
    Identity,
    adverse_event_columns,
    adverse_event_queryset,
    adverse_event_records,
    count_rows,
    outcome_columns,
    outcome_records,
    recall_columns,
    recall_records,
    reminder_columns,
    reminder_records,
    unassessed_treatments,
)
from patients.models import Export, Treatment
from protocols.models import ProductLot, Protocol

UTC = dt.UTC
#: how often a running export writes its progress
PROGRESS_EVERY = 1000
#: exports up to this many rows stream straight to the browser; larger ones run as a task
DEFAULT_INLINE_MAX_ROWS = 5000

CONTENT_TYPES = {
    Export.Format.CSV: "text/csv; charset=utf-8; header=present",
    Export.Format.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    Export.Format.FHIR: "application/fhir+json",
}
EXTENSIONS = {Export.Format.CSV: "csv", Export.Format.XLSX: "xlsx", Export.Format.FHIR: "fhir.json"}


def inline_max_rows() -> int:
    return getattr(settings, "AFTERCARE_EXPORT_INLINE_MAX_ROWS", DEFAULT_INLINE_MAX_ROWS)


# --- requests ------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRequest:
    """What someone asked to export. Objects are already resolved within the asker's reach."""

    clinic: Clinic
    kind: str = Export.Kind.OUTCOMES
    format: str = Export.Format.CSV
    identified: bool = False
    date_handling: str = Export.DateHandling.SHIFTED
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    protocol: Protocol | None = None
    clinician: Any = None
    lot: ProductLot | None = None

    def filters_json(self) -> dict[str, Any]:
        if self.kind == Export.Kind.RECALL:
            # The lot as it was named when the list was taken (a lot number can be corrected later).
            lot = self.lot
            return {
                "lot": lot.pk if lot else None,
                "lot_number": lot.lot_number if lot else None,
                "product": {"id": lot.product_id, "name": lot.product.name} if lot else None,
            }
        return {
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "protocol": self.protocol.pk if self.protocol else None,
            "clinician": self.clinician.pk if self.clinician else None,
        }


class ExportRequestError(Exception):
    """The request cannot be run; ``errors`` maps form fields to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def export_clinics(user: Any) -> models.QuerySet[Clinic]:
    """The clinics whose data ``user`` may export."""
    return scoped(Clinic.objects.all(), user, Capability.EXPORT)


def protocol_choices(user: Any) -> models.QuerySet[Protocol]:
    clinic_ids = export_clinics(user).values("pk")
    return scoped(Protocol.objects.all(), user).filter(models.Q(clinic__in=clinic_ids) | models.Q(clinic__isnull=True))


def clinician_choices(user: Any) -> models.QuerySet:
    """The clinicians of the clinics ``user`` may export, former ones too, and whoever is named as the
    clinician of a treatment there (someone's role may have changed since): never the auditor or coordinator."""
    clinics = export_clinics(user).values("pk")
    clinicians = Membership.objects.filter(clinic__in=clinics, role=Role.CLINICIAN).values("user_id")
    recorded = Treatment.objects.filter(clinic__in=clinics).values("clinician_id")
    people = get_user_model().objects.filter(models.Q(pk__in=clinicians) | models.Q(pk__in=recorded))
    return people.order_by("username")


def request_errors(*, user: Any, request: ExportRequest) -> dict[str, list[str]]:
    """Everything wrong with ``request`` for ``user``, by field; empty when it may run."""
    errors: dict[str, list[str]] = defaultdict(list)
    clinic = request.clinic
    if not can(user, Capability.EXPORT, clinic):
        errors["clinic"].append("You may not export this clinic's data.")
    if request.date_from and request.date_to and request.date_from > request.date_to:
        errors["date_to"].append("The end date is before the start date.")
    if request.protocol and request.protocol.clinic_id not in (None, clinic.pk):
        errors["protocol"].append("This protocol belongs to another clinic.")
    if request.clinician and not Membership.objects.filter(user=request.clinician, clinic=clinic).exists():
        errors["clinician"].append("This person is not on this clinic's staff.")
    if request.kind == Export.Kind.REMINDERS and request.format == Export.Format.FHIR:
        errors["format"].append("The reminder ledger is exported as CSV or XLSX.")
    if request.kind == Export.Kind.ADVERSE_EVENTS and request.format == Export.Format.FHIR:
        errors["format"].append("The adverse events are exported as CSV or XLSX.")
    if request.kind == Export.Kind.RECALL:
        _recall_errors(request, errors)
    elif request.lot is not None:
        errors["lot"].append("Only a recall list is taken of one lot.")
    if not request.identified:
        if request.date_handling == Export.DateHandling.ACTUAL:
            errors["date_handling"].append("Real dates identify people; shift them or use day offsets.")
        elif request.date_handling == Export.DateHandling.DAY_OFFSETS and request.format == Export.Format.FHIR:
            errors["date_handling"].append("FHIR needs calendar dates: choose shifted dates for a de-identified bundle.")
    return dict(errors)


def _recall_errors(request: ExportRequest, errors: dict[str, list[str]]) -> None:
    if request.lot is None:
        errors["lot"].append("Say which lot the recall list is of.")
    elif request.lot.clinic_id != request.clinic.pk:
        errors["lot"].append("This lot belongs to another clinic.")
    if request.format == Export.Format.FHIR:
        errors["format"].append("The recall list is exported as CSV or XLSX.")
    if not request.identified:
        errors["identified"].append("A recall list names the patients to contact: it is always identified.")
    for name in ("date_from", "date_to", "protocol", "clinician"):
        if getattr(request, name):
            errors[name].append("A recall list covers every application of the lot; this filter does not apply.")


def start_export(*, user: Any, request: ExportRequest, background: bool = False) -> Export:
    """Validate ``request`` and record the job; raises ``ExportRequestError`` with field errors.

    A job of at most ``inline_max_rows()`` rows is marked ``streamed``: the
    caller sends it straight to the browser with ``stream_export``.  A larger
    one (or any, with ``background``) is queued for a worker once the
    surrounding transaction commits.
    """
    errors = request_errors(user=user, request=request)
    if errors:
        raise ExportRequestError(errors)
    export = Export(
        clinic=request.clinic,
        requested_by=user,
        kind=request.kind,
        format=request.format,
        filters=request.filters_json(),
        identified=request.identified,
        # Identified exports carry real dates by definition; the choice only
        # matters for de-identified ones.
        date_handling=Export.DateHandling.ACTUAL if request.identified else request.date_handling,
    )
    export.rows_total = count_rows(export)
    export.streamed = not background and export.rows_total <= inline_max_rows()
    export.save()
    if not export.streamed:
        from patients.export_tasks import run_export  # the task module imports this one

        transaction.on_commit(lambda: run_export.delay(export.pk))
    return export


# --- running an export ----------------------------------------------------------------------


def _counted(records: Iterable[dict], stats: RunStats, on_row: Callable[[int], None] | None) -> Iterator[dict]:
    for record in records:
        yield record
        stats.rows += 1
        if on_row is not None:
            on_row(stats.rows)


def _counted_batches(batches: Iterable[list], stats: RunStats, on_row: Callable[[int], None] | None) -> Iterator[list]:
    for batch in batches:
        yield batch
        if on_row is None:
            stats.rows += len(batch)
            continue
        for _ in batch:
            stats.rows += 1
            on_row(stats.rows)


def _chunks(export: Export, identity: Identity, *, stats: RunStats, on_row: Callable[[int], None] | None) -> Iterator[bytes]:
    """The file's bytes in its format, counting rows into ``stats``."""
    if export.kind == Export.Kind.OUTCOMES and export.format == Export.Format.CSV:
        columns = outcome_columns(identity)
        if layout_fits(identity, columns):
            stats.columns = [name for name, _ in columns]
            lines = _counted_batches(outcome_csv_lines(export, identity, columns), stats, on_row)
            return csv_line_chunks(stats.columns, lines)
    if export.kind == Export.Kind.OUTCOMES:
        records = _counted(outcome_records(export), stats, on_row)
        columns = outcome_columns(identity)
    elif export.kind == Export.Kind.RECALL:
        records = _counted(recall_records(export), stats, on_row)
        columns = recall_columns(identity)
    elif export.kind == Export.Kind.ADVERSE_EVENTS:
        records = _counted(adverse_event_records(export), stats, on_row)
        columns = adverse_event_columns(identity)
    else:
        records = _counted(reminder_records(export), stats, on_row)
        columns = reminder_columns(identity)
    if export.format == Export.Format.FHIR:
        builder = FhirBuilder(identity, clinic=export.clinic)
        bundle_id = str(uuid.uuid4())
        # The bundle holds every adverse event the adverse-event export lists, those of
        # treatments without assessments too; only assessments count as rows.
        unassessed = unassessed_treatments(export) if export.kind == Export.Kind.OUTCOMES else ()
        resources = builder.resources(records, unassessed)
        chunks = fhir_chunks(resources, bundle_id=bundle_id, timestamp=timezone.now(), stats=stats)
    else:
        stats.columns = [name for name, _ in columns]
        rows = ([read(record) for _, read in columns] for record in records)
        if export.format == Export.Format.XLSX:
            stats.columns = xlsx_header(stats.columns)
            chunks = xlsx_chunks(stats.columns, rows, title=export.get_kind_display())
        else:
            chunks = csv_chunks(stats.columns, rows)
    return chunks


def file_chunks(export: Export, *, stats: RunStats, on_row: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The export file's bytes, chunk by chunk, counting and hashing into ``stats``."""
    for chunk in _chunks(export, Identity.for_export(export), stats=stats, on_row=on_row):
        stats.digest.update(chunk)
        stats.size += len(chunk)
        yield chunk


def download_name(export: Export) -> str:
    created = export.created_at.astimezone(ZoneInfo(export.clinic.time_zone))
    identified = "identified" if export.identified else "deidentified"
    if export.kind == Export.Kind.RECALL:
        # The lot number is typed by staff: slugified before it goes into a header.
        lot = slugify(export.filters.get("lot_number") or "")[:40] or "lot"
        identified = f"lot-{lot}-{identified}"
    return f"{export.kind}-{export.clinic.slug}-{identified}-{created:%Y%m%d-%H%M%S}-{export.pk}.{EXTENSIONS[export.format]}"


def describe_filters(export: Export) -> dict[str, Any]:
    """The filters as an auditor reads them: dates, and names next to ids."""
    if export.kind == Export.Kind.RECALL:
        return _describe_recall(export)
    described: dict[str, Any] = {
        "date_field": "reminder due date" if export.kind == Export.Kind.REMINDERS else "procedure date",
        "date_from": export.filters.get("date_from"),
        "date_to": export.filters.get("date_to"),
        "time_zone": export.clinic.time_zone,
    }
    if export.filters.get("protocol"):
        protocol = Protocol.objects.filter(pk=export.filters["protocol"]).first()
        described["protocol"] = {"id": export.filters["protocol"], "name": protocol.name if protocol else None}
    if export.filters.get("clinician"):
        person = get_user_model().objects.filter(pk=export.filters["clinician"]).first()
        described["clinician"] = {"id": export.filters["clinician"], "username": person.get_username() if person else None}
    return described


def _describe_recall(export: Export) -> dict[str, Any]:
    """The lot, as named when the list was taken, and its recall state when the list was made."""
    lot = ProductLot.objects.filter(pk=export.filters.get("lot")).first()
    return {
        "lot": {
            "id": export.filters.get("lot"),
            "lot_number": export.filters.get("lot_number"),
            "product": export.filters.get("product"),
            "recalled": lot.recalled if lot else None,
            "recalled_at": lot.recalled_at.astimezone(UTC).isoformat() if lot and lot.recalled_at else None,
            "recall_reason": lot.recall_reason if lot else None,
        },
        "treatments": "every treatment that used the lot, cancelled ones included (see treatment_status)",
        "time_zone": export.clinic.time_zone,
    }


#: what a recall list is for, said in its manifest: it is identified on purpose
RECALL_PURPOSE = (
    "Recall list: every application of the lot, identified so that the clinic can contact each patient who "
    "received it. Cancelled treatments are listed with their status and reason: an application was recorded, "
    "so the patient may have received the product."
)
RECALL_CELLS_NOTE = (
    "Text that a spreadsheet would read as a formula (starting with = + - or @) carries a leading apostrophe. "
    "In CSV this includes phone numbers written as +44 …: read the number without it. In XLSX a phone number "
    "(a + then digits, spaces and ( ) . - / only) is a text cell as written, with no apostrophe."
)
RECALL_DATE_NOTE = (
    "procedure_ended_local is in the clinic's time zone with its UTC offset (ISO 8601); dates of birth are "
    "calendar dates."
)


#: what the outcome log's adverse_events column is, and where every event is counted once
OUTCOME_ADVERSE_EVENTS_NOTE = (
    "The adverse_events column repeats, on every row of a treatment (and of its arm, for an event on one arm), the "
    "events recorded for it: it sits beside the scores for reading them, and is not a list or count of events. An "
    "event on an arm or a treatment without assessments is not in it. Every adverse event of the treatments this "
    "export covers is listed exactly once, with who recorded it and when, in the adverse-event export "
    "(kind adverse_events) with the same filters; adverse_event_count is how many there were when this file was made."
)
FHIR_ADVERSE_EVENTS_NOTE = (
    "The bundle holds every adverse event of the treatments this export covers once, as the adverse-event export "
    "(kind adverse_events) with the same filters lists them, those of a treatment without assessments too, each "
    "with its Patient and Procedure; adverse_event_count is how many there were when this file was made. "
    "row_count counts assessments, resource_count the bundle's entries."
)
ADVERSE_EVENTS_PURPOSE = (
    "One row per adverse event, each exactly once, of every treatment the outcome log with the same filters covers "
    "(procedure date, protocol, clinician), whether or not the treatment or the event's arm has any assessment. "
    "An empty arm means the event concerns the whole treatment; an empty resolution means it is ongoing."
)

_DATE_NOTES = {
    Export.DateHandling.ACTUAL: "Times are ISO 8601 in UTC.",
    Export.DateHandling.SHIFTED: (
        "Every date of a patient is shifted by the same random number of days (1 to 365, either way), "
        "different for each patient and each export; intervals within a patient are kept."
    ),
    Export.DateHandling.DAY_OFFSETS: (
        "Dates are replaced by whole days (clinic-local calendar days) since the patient's first recorded treatment."
    ),
}

#: Excel cells hold no time zone, so an XLSX file says where the CSV's "+00:00" went.
XLSX_TIMES_NOTE = (
    "In XLSX, times are date-time cells in UTC, in columns named so (\"recorded_at (UTC)\"), and dates are date cells."
)


def _date_note(export: Export) -> str:
    if export.kind == Export.Kind.RECALL:
        return RECALL_DATE_NOTE
    if export.format != Export.Format.XLSX or export.date_handling == Export.DateHandling.DAY_OFFSETS:
        return _DATE_NOTES[export.date_handling]
    if export.date_handling == Export.DateHandling.ACTUAL:
        return XLSX_TIMES_NOTE
    return f"{_DATE_NOTES[export.date_handling]} {XLSX_TIMES_NOTE}"


def build_manifest(export: Export, stats: RunStats) -> dict[str, Any]:
    """Row count, filters, generated-by, generated-at and the SHA-256 of the file."""
    manifest: dict[str, Any] = {
        "export_id": export.pk,
        "kind": export.kind,
        "format": export.format,
        "clinic": {"id": export.clinic_id, "name": export.clinic.name},
        "filters": describe_filters(export),
        "identified": export.identified,
        "date_handling": export.date_handling,
        "date_note": _date_note(export),
        "row_count": stats.rows,
        "file_name": download_name(export),
        "bytes": stats.size,
        "sha256": stats.sha256,
        "generated_by": export.requested_by.get_username(),
        "generated_at": (export.started_at or export.created_at).astimezone(UTC).isoformat(),
        "finished_at": timezone.now().astimezone(UTC).isoformat(),
    }
    if stats.columns:
        manifest["columns"] = stats.columns
    if export.kind == Export.Kind.RECALL:
        manifest["purpose"] = RECALL_PURPOSE
        manifest["cells_note"] = RECALL_CELLS_NOTE
    if export.kind == Export.Kind.ADVERSE_EVENTS:
        manifest["purpose"] = ADVERSE_EVENTS_PURPOSE
    if export.kind == Export.Kind.OUTCOMES and export.format != Export.Format.FHIR:
        manifest["adverse_events_note"] = OUTCOME_ADVERSE_EVENTS_NOTE
        manifest["adverse_event_count"] = adverse_event_queryset(export).count()
    if export.format == Export.Format.FHIR:
        manifest["resource_count"] = stats.resources
        if export.kind == Export.Kind.OUTCOMES:
            manifest["bundle_adverse_events_note"] = FHIR_ADVERSE_EVENTS_NOTE
            manifest["adverse_event_count"] = adverse_event_queryset(export).count()
        # fhir.resources ships R4B (4.3) models; the five resources used here
        # have the same structure in R4 and R4B.
        manifest["fhir_version"] = "R4 (each resource validated with the fhir.resources R4B models)"
    if not export.identified:
        manifest["pseudonyms"] = (
            "HMAC-SHA-256 of the database id under a random key drawn for this export and never stored."
        )
    return manifest


def _start(export: Export) -> None:
    export.status = Export.Status.RUNNING
    export.started_at = timezone.now()
    export.save(update_fields=["status", "started_at"])


def _finish(export: Export, *, stats: RunStats, status: str, request: HttpRequest | None = None, error: str = "") -> None:
    """Record the outcome on the job and in the access log, with the manifest."""
    export.manifest = build_manifest(export, stats)
    export.status = status
    export.rows_done = stats.rows
    export.row_count = stats.rows
    export.sha256 = stats.sha256 if status == Export.Status.DONE else ""
    export.file_name = export.manifest["file_name"]
    export.error = error
    export.finished_at = timezone.now()
    if status == Export.Status.DONE and not export.streamed:
        export.expires_at = export.finished_at + dt.timedelta(hours=settings.AFTERCARE_EXPORT_KEEP_HOURS)
    export.save()
    record_event(
        actor=export.requested_by,
        action="export.run",
        clinic=export.clinic,
        obj=export,
        detail={"status": status, "manifest": export.manifest, "error": error},
        request=request,
    )


def stream_export(export: Export, *, request: HttpRequest | None = None) -> Iterator[bytes]:
    """The export's bytes for a streaming HTTP response; the job is finished when the last byte has gone.

    If the download is interrupted the job is marked aborted and still logged:
    part of the data has left the building.
    """
    _start(export)
    stats = RunStats()
    try:
        yield from file_chunks(export, stats=stats)
    except GeneratorExit:
        _finish(export, stats=stats, status=Export.Status.ABORTED, request=request, error="The download was interrupted.")
        raise
    except Exception as exc:
        _finish(export, stats=stats, status=Export.Status.FAILED, request=request, error=str(exc)[:500])
        raise
    _finish(export, stats=stats, status=Export.Status.DONE, request=request)


class _Progress:
    """Writes rows done to the job every ``PROGRESS_EVERY`` rows, with an update() that touches one row."""

    def __init__(self, export_id: int) -> None:
        self.export_id = export_id

    def __call__(self, rows: int) -> None:
        if rows % PROGRESS_EVERY == 0:
            Export.objects.filter(pk=self.export_id).update(rows_done=rows)


def claim_export(export_id: int) -> Export | None:
    """Mark a pending job running; None if another worker has it or it is gone."""
    claimed = Export.objects.filter(pk=export_id, status=Export.Status.PENDING).update(
        status=Export.Status.RUNNING, started_at=timezone.now()
    )
    if claimed != 1:
        return None
    return Export.objects.select_related("clinic", "requested_by").get(pk=export_id)


def run_export(export_id: int) -> Export | None:
    """Run a pending export into a stored file (the Celery task's body).

    The file is written to a temporary file first and only then handed to
    storage, so a failed run leaves no half file behind; the requester's
    export role is checked again because it may have been withdrawn while the
    job waited.
    """
    export = claim_export(export_id)
    if export is None:
        return None
    stats = RunStats()
    if not can(export.requested_by, Capability.EXPORT, export.clinic):
        _finish(export, stats=stats, status=Export.Status.FAILED, error="The requester may no longer export this clinic's data.")
        return export
    try:
        export.rows_total = count_rows(export)
        export.save(update_fields=["rows_total"])
        with tempfile.TemporaryFile() as spool:
            for chunk in file_chunks(export, stats=stats, on_row=_Progress(export.pk)):
                spool.write(chunk)
            spool.seek(0)
            export.file.save(f"{uuid.uuid4().hex}.{EXTENSIONS[export.format]}", File(spool), save=False)
    except Exception as exc:
        _finish(export, stats=stats, status=Export.Status.FAILED, error=str(exc)[:500])
        raise
    _finish(export, stats=stats, status=Export.Status.DONE)
    return export


def record_download(*, export: Export, user: Any, request: HttpRequest | None = None) -> None:
    """Log that a stored export file was handed to someone."""
    record_event(
        actor=user, action="export.download", clinic=export.clinic, obj=export,
        detail={"sha256": export.sha256, "file_name": export.file_name}, request=request,
    )

# --- retention ---------------------------------------------------------------------------------

#: a running job not finished after this long lost its worker (the task's hard limit is shorter)
STALE_AFTER = dt.timedelta(hours=6)


def delete_expired_exports(*, now: dt.datetime) -> int:
    """Delete the files of exports past their retention period; the job rows stay as the record."""
    deleted = 0
    for export in Export.objects.filter(status=Export.Status.DONE, expires_at__lte=now).iterator():
        if export.file:
            export.file.delete(save=False)
        # Conditional, so a job that changed meanwhile is not overwritten.
        deleted += Export.objects.filter(pk=export.pk, status=Export.Status.DONE).update(
            status=Export.Status.EXPIRED, file=""
        )
    return deleted


def fail_stale_exports(*, now: dt.datetime) -> int:
    """Mark jobs whose worker or web process died mid-run as failed, so nobody waits on them forever."""
    return Export.objects.filter(status=Export.Status.RUNNING, started_at__lt=now - STALE_AFTER).update(
        status=Export.Status.FAILED, error="The run stopped without finishing (worker or server restarted).", finished_at=now
    )
