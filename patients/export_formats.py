"""Export file formats: RFC 4180 CSV, XLSX (write-only) and a FHIR R4 Bundle, each emitted chunk by chunk.

CSV and XLSX cells are neutralised against formula injection; every FHIR
resource is validated with fhir.resources before it is written.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import heapq
import io
import json
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from operator import itemgetter
from typing import Any

from clinic.models import Clinic
from patients.export_rows import Identity
from patients.models import AdverseEvent, OutcomeAssessment, Treatment
from protocols.models import Procedure

UTC = dt.UTC
_CHUNK_BYTES = 64 * 1024
_XLSX_MAX_CELL = 32767


# --- formula injection ------------------------------------------------------------

#: a text cell starting with one of these is read as a formula by some spreadsheet program
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
#: "+44 (0)20 7946-0000": text starting with "+" that holds digits and separators only, at most a phone number's length
_PHONE_NUMBER = re.compile(r"\+[\d ().\-/]{1,39}")
_INVISIBLE = "".join(map(chr, range(0x20))) + " \x7f\xa0\u2000\u2001\u2002\u2003\u200b\ufeff"


def neutralise(value: Any) -> Any:
    """Make a text cell inert in spreadsheet programs.

    Text that starts with a character a spreadsheet reads as the start of a
    formula gets a leading apostrophe.  Numbers are left alone: they are not
    text, and a plain number written as text ("-1") cannot carry a formula.
    """
    if not isinstance(value, str) or _PLAIN_NUMBER.fullmatch(value):
        return value
    # Judged after any leading blanks and control characters: a reader that
    # drops them ("\x01=HYPERLINK(…)", " =1+1") would otherwise find a formula.
    if value.startswith(FORMULA_STARTS) or value.lstrip(_INVISIBLE).startswith(FORMULA_STARTS):
        return "'" + value
    return value

# --- writers: CSV and XLSX --------------------------------------------------------------


#: cell types csv_cell returns unchanged (bool is not among them: it becomes true/false)
_AS_IS = frozenset({int, float, Decimal})


def csv_cell(value: Any) -> Any:
    """A value as RFC 4180 text: empty for nothing, true/false, ISO 8601 (UTC) times, neutralised text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return neutralise(value)


def csv_chunks(header: list[str], rows: Iterable[list[Any]]) -> Iterator[bytes]:
    """RFC 4180 CSV (CRLF line ends, minimal quoting) in UTF-8, about 64 KB at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise(name) for name in header])
    for row in rows:
        # Most cells are numbers or text that needs nothing, and a million-row
        # export has tens of millions of cells: those skip the call to csv_cell.
        writer.writerow([
            value if type(value) in _AS_IS or (type(value) is str and not value.startswith(FORMULA_STARTS))
            else csv_cell(value)
            for value in row
        ])
        if buffer.tell() >= _CHUNK_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def csv_line_chunks(header: list[str], batches: Iterable[list[str]]) -> Iterator[bytes]:
    """The same CSV as ``csv_chunks``, from batches of lines already written (see ``export_csv``)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([neutralise(name) for name in header])
    for lines in batches:
        buffer.write("".join(lines))
        if buffer.tell() >= _CHUNK_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


# openpyxl and fhir.resources are imported by the first XLSX or FHIR export:
# together they cost every web and worker process about 60 MB.


@cache
def _illegal_characters() -> re.Pattern:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE


def xlsx_header(names: list[str]) -> list[str]:
    """The XLSX names of the columns: a column of points in time (``<name>_at``, see ``Identity.when``) names its zone.

    CSV writes a time with its offset ("2026-05-07T09:00:00+00:00"). An Excel
    date-time cell holds none, so the column says it: "recorded_at (UTC)".
    """
    return [f"{name} (UTC)" if name.endswith("_at") else name for name in names]


def xlsx_cell(value: Any, sheet: Any) -> Any:
    """A value as openpyxl's write-only ``sheet`` takes it: clean neutralised text, a date as a date cell
    (yyyy-mm-dd), and a time as a date-time cell (yyyy-mm-dd h:mm:ss) in UTC, which ``xlsx_header`` names.

    A phone number written "+44 20 7946 0000" holds nothing a formula could
    call — digits, spaces and ( ) . - / only — so it is not given the
    apostrophe: it becomes a text cell marked quote-prefixed, what Excel stores
    for text typed after an apostrophe, which shows as written and stays text
    when edited. (CSV has no such mark, so there it keeps the apostrophe.)
    """
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str):
        # Control characters are not allowed in the XML of a sheet: dropped
        # first, so what is neutralised is the text the sheet will hold.
        text = _illegal_characters().sub("", value)
        if _PHONE_NUMBER.fullmatch(text):
            from openpyxl.cell import WriteOnlyCell

            cell = WriteOnlyCell(sheet, value=text)
            cell.quotePrefix = True
            return cell
        return neutralise(text)[:_XLSX_MAX_CELL]
    return value


def xlsx_chunks(header: list[str], rows: Iterable[list[Any]], *, title: str) -> Iterator[bytes]:
    """An XLSX workbook written in openpyxl's write-only mode, then read back in chunks."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31])
    sheet.append([xlsx_cell(name, sheet) for name in header])
    for row in rows:
        sheet.append([xlsx_cell(value, sheet) for value in row])
    with tempfile.TemporaryFile() as spool:
        workbook.save(spool)
        spool.seek(0)
        while chunk := spool.read(_CHUNK_BYTES):
            yield chunk

# --- writer: FHIR R4 Bundle ---------------------------------------------------------------

FHIR_SYSTEM = "urn:aftercare"
_UCUM = "http://unitsofmeasure.org"
_NAMESPACE = uuid.UUID("6f1d8c4e-3b52-4f7e-9a0c-2d5e8b1a7c39")
_MEASURES = {
    "erythema": "Erythema (CEA 0-4)",
    "oedema": "Oedema (0-4)",
    "reepithelialisation_complete": "Re-epithelialisation complete",
    "reepithelialisation_percent": "Re-epithelialised area",
    "pain": "Pain (NRS 0-10)",
    "pruritus": "Pruritus (NRS 0-10)",
    "gais": "Global Aesthetic Improvement Scale (-1 to 3)",
    "applied_as_instructed": "Applied the serum as instructed",
    "problem_flagged": "Problem flagged",
}
_PROCEDURE_NAMES = dict(Procedure.choices)
_ADVERSE_NAMES = dict(AdverseEvent.Kind.choices)
_SEVERITY_NAMES = dict(AdverseEvent.Severity.choices)
_HL7_SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
_HL7_SERIOUSNESS = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
_TREATMENT_KEY = itemgetter("treatment__patient_id", "treatment_id")


@cache
def _fhir_models() -> dict[str, Any]:
    from fhir.resources.R4B.adverseevent import AdverseEvent
    from fhir.resources.R4B.medicationadministration import MedicationAdministration
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient
    from fhir.resources.R4B.procedure import Procedure

    return {"Patient": Patient, "Procedure": Procedure, "MedicationAdministration": MedicationAdministration,
            "AdverseEvent": AdverseEvent, "Observation": Observation}


def _fhir_time(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


def _full_url(resource_type: str, resource_id: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{resource_type}/{resource_id}')}"


def _coded(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": f"{FHIR_SYSTEM}:{system}", "code": code, "display": display}], "text": display}


#: What is left of an element whose value was dropped: an extension's url alone, a contact point's system alone.
#: FHIR requires the value beside them (ext-1, cpt-2), so the element goes with its value.
_HOLLOW = ({"url"}, {"system"})


def _clean(data: Any) -> Any:
    """Drop empty values: FHIR forbids empty strings, lists and objects, and elements left without their value."""
    if isinstance(data, dict):
        cleaned = {k: _clean(v) for k, v in data.items()}
        kept = {k: v for k, v in cleaned.items() if v not in (None, "", [], {})}
        return {} if set(kept) in _HOLLOW else kept
    if isinstance(data, list):
        return [item for item in (_clean(v) for v in data) if item not in (None, "", [], {})]
    return data


def _severity(severity: str) -> dict:
    """An event's severity in HL7's code system (mild | moderate | severe), and seriousness when it says so.

    HL7's severity has no grade above severe, so a life-threatening event is
    coded severe there, keeps its own grade as a second coding in Aftercare's
    system, and is serious in HL7's seriousness code system (a life-threatening
    event is serious by definition; the other grades say how intense an event
    was, not whether it was serious, so they leave seriousness out).
    """
    display = _SEVERITY_NAMES.get(severity, severity)
    if severity != AdverseEvent.Severity.LIFE_THREATENING:
        return {"severity": {"coding": [{"system": _HL7_SEVERITY, "code": severity, "display": display}], "text": display}}
    return {
        "severity": {"coding": [
            {"system": _HL7_SEVERITY, "code": "severe", "display": "Severe"},
            {"system": f"{FHIR_SYSTEM}:adverse-event-severity", "code": severity, "display": display},
        ], "text": display},
        "seriousness": {"coding": [{"system": _HL7_SERIOUSNESS, "code": "serious", "display": "Serious"}]},
    }


class FhirBuilder:
    """Turns outcome records into FHIR resources, naming everything through the export's ``Identity``."""

    def __init__(self, identity: Identity, *, clinic: Clinic) -> None:
        self.identity = identity
        self.clinic = clinic

    def _id(self, kind: str, pk: int) -> str:
        return f"{kind}-{pk}" if self.identity.identified else f"{kind}-{self.identity.token(kind, pk)}"

    def _ref(self, resource_type: str, resource_id: str) -> dict:
        return {"reference": _full_url(resource_type, resource_id)}

    def _moment(self, record: dict, value: dt.datetime | None) -> str | None:
        return _fhir_time(self.identity.moment(value, patient_id=record["treatment__patient_id"], anchor=record["anchor"]))

    def _day(self, record: dict, value: dt.date | None) -> str | None:
        return _fhir_time(self.identity.day(value, patient_id=record["treatment__patient_id"], anchor=record["anchor"]))

    def patient_id(self, record: dict) -> str:
        pk = record["treatment__patient_id"]
        return f"patient-{pk}" if self.identity.identified else str(self.identity.patient(pk))

    def patient(self, record: dict) -> dict:
        resource: dict[str, Any] = {"resourceType": "Patient", "id": self.patient_id(record)}
        if not self.identity.identified:
            resource["identifier"] = [{"system": f"{FHIR_SYSTEM}:pseudonym", "value": resource["id"]}]
            return resource
        resource.update({
            "identifier": [{
                "system": f"{FHIR_SYSTEM}:clinic:{self.clinic.slug}:patient",
                "value": record["treatment__patient__reference"] or str(record["treatment__patient_id"]),
            }],
            "name": [{"family": record["treatment__patient__family_name"], "given": [record["treatment__patient__given_name"]]}],
            "birthDate": _fhir_time(record["treatment__patient__date_of_birth"]),
            "telecom": [
                {"system": "email", "value": record["treatment__patient__email"]},
                {"system": "phone", "value": record["treatment__patient__phone"]},
            ],
        })
        return resource

    def procedure(self, record: dict) -> dict:
        code = record["treatment__protocol_version__protocol__procedure"]
        protocol = f"{record['treatment__protocol_version__protocol__name']} v{record['treatment__protocol_version__number']}"
        return {
            "resourceType": "Procedure",
            "id": self._id("procedure", record["treatment_id"]),
            "status": "completed" if record["treatment__status"] == Treatment.Status.RECORDED else "not-done",
            "code": _coded("procedure", code, _PROCEDURE_NAMES.get(code, code)),
            "subject": self._ref("Patient", self.patient_id(record)),
            "performedPeriod": {
                "start": self._moment(record, record["treatment__started_at"]),
                "end": self._moment(record, record["treatment__ended_at"]),
            },
            "performer": [{"actor": {"display": record["treatment__clinician__username"]}}],
            "bodySite": [{"text": record["treatment__areas"]}],
            "extension": [{"url": f"{FHIR_SYSTEM}:protocol-version", "valueString": protocol}],
        }

    def administration(self, record: dict, application: dict) -> dict:
        procedure_id = self._id("procedure", record["treatment_id"])
        given_at = record["treatment__ended_at"] + dt.timedelta(minutes=application["minutes_after_procedure"])
        return {
            "resourceType": "MedicationAdministration",
            "id": self._id("administration", application["id"]),
            "contained": [{
                "resourceType": "Medication",
                "id": "product",
                "code": {"text": application["lot__product__name"]},
                "batch": {
                    "lotNumber": application["lot__lot_number"],
                    "expirationDate": _fhir_time(application["lot__expiry_date"]),
                },
            }],
            "status": "completed",
            "medicationReference": {"reference": "#product"},
            "subject": self._ref("Patient", self.patient_id(record)),
            "partOf": [self._ref("Procedure", procedure_id)],
            "effectiveDateTime": self._moment(record, given_at),
            "performer": [{"actor": {"display": application["applied_by__username"]}}],
            "dosage": {
                "site": {"text": application["arm__label"] or ""},
                "dose": {"value": float(application["volume_ml"]), "unit": "mL", "system": _UCUM, "code": "mL"},
            },
        }

    def adverse_event(self, record: dict, event: dict) -> dict:
        resolved = event["resolution_date"] is not None
        resource = {
            "resourceType": "AdverseEvent",
            "id": self._id("adverse-event", event["id"]),
            "actuality": "actual",
            "subject": self._ref("Patient", self.patient_id(record)),
            "event": _coded("adverse-event", event["kind"], _ADVERSE_NAMES.get(event["kind"], event["kind"])),
            "date": self._day(record, event["onset_date"]),
            "recordedDate": self._moment(record, event["recorded_at"]),
            **_severity(event["severity"]),
            "outcome": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/adverse-event-outcome",
                "code": "resolved" if resolved else "ongoing",
            }]},
            "recorder": {"display": event["recorded_by__username"]},
            "suspectEntity": [{"instance": self._ref("Procedure", self._id("procedure", record["treatment_id"]))}],
            "extension": [
                {"url": f"{FHIR_SYSTEM}:resolution-date", "valueDate": self._day(record, event["resolution_date"])},
                {"url": f"{FHIR_SYSTEM}:arm", "valueString": event["arm__label"] or ""},
            ],
        }
        if self.identity.identified:
            resource["extension"].append({"url": f"{FHIR_SYSTEM}:description", "valueString": event["description"]})
        return resource

    def observations(self, record: dict) -> Iterator[dict]:
        patient_ref = self._ref("Patient", self.patient_id(record))
        by_patient = record["source"] == OutcomeAssessment.Source.PATIENT
        performer = patient_ref if by_patient else {"display": record["recorded_by__username"] or ""}
        for measure, display in _MEASURES.items():
            value = record[measure]
            if value is None:
                continue
            resource = {
                "resourceType": "Observation",
                "id": f"{self._id('observation', record['id'])}-{measure.replace('_', '-')}",
                "status": "final",
                "category": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "survey" if by_patient else "exam",
                }]}],
                "code": _coded("outcome-measure", measure, display),
                "subject": patient_ref,
                "focus": [self._ref("Procedure", self._id("procedure", record["treatment_id"]))],
                "effectiveDateTime": self._moment(record, record["recorded_at"]),
                "performer": [performer],
                "bodySite": {"text": record["arm__label"] or ""},
                "extension": [
                    {"url": f"{FHIR_SYSTEM}:time-point-day", "valueInteger": record["time_point_day"]},
                    {"url": f"{FHIR_SYSTEM}:phase", "valueString": record["phase"]},
                ],
            }
            if isinstance(value, bool):
                resource["valueBoolean"] = value
            elif measure == "reepithelialisation_percent":
                resource["valueQuantity"] = {"value": value, "unit": "%", "system": _UCUM, "code": "%"}
            else:
                resource["valueInteger"] = value
            yield resource

    def resources(self, records: Iterable[dict], unassessed: Iterable[dict] = ()) -> Iterator[dict]:
        """Patient and treatment resources the first time each appears, then the assessment's observations.

        ``records`` are the assessments (``outcome_records``) and ``unassessed``
        the treatments with adverse events and none (``unassessed_treatments``),
        both by patient and treatment: merged, each patient, treatment and
        adverse event comes once, and a treatment without assessments has its
        Patient, Procedure, administrations and adverse events all the same.
        """
        last_patient = last_treatment = None
        for record in heapq.merge(records, unassessed, key=_TREATMENT_KEY):
            if record["treatment__patient_id"] != last_patient:
                last_patient = record["treatment__patient_id"]
                yield self.patient(record)
            if record["treatment_id"] != last_treatment:
                last_treatment = record["treatment_id"]
                yield self.procedure(record)
                for application in record["applications"]:
                    yield self.administration(record, application)
                for event in record["adverse_events"]:
                    yield self.adverse_event(record, event)
            if record["id"] is not None:  # an assessment, not a treatment without any
                yield from self.observations(record)


def validated_json(resource: dict) -> str:
    """Validate one resource with fhir.resources and return its JSON; raises on an invalid resource."""
    cleaned = _clean(resource)
    _fhir_models()[resource["resourceType"]].model_validate(cleaned)
    # The validated dict is written as it is: re-serialising the model would
    # add a fifth of the run time to a million-row bundle and change nothing.
    return json.dumps(cleaned, ensure_ascii=False, separators=(",", ":"))


def fhir_chunks(resources: Iterable[dict], *, bundle_id: str, timestamp: dt.datetime, stats: RunStats) -> Iterator[bytes]:
    """A FHIR R4 ``collection`` Bundle, written entry by entry: never built as one object."""
    head = {"resourceType": "Bundle", "id": bundle_id, "type": "collection", "timestamp": _fhir_time(timestamp)}
    buffer = [json.dumps(head)[:-1]]  # left open for the entries
    size = 0
    for resource in resources:
        body = validated_json(resource)
        entry = f'{{"fullUrl": "{_full_url(resource["resourceType"], resource["id"])}", "resource": {body}}}'
        # FHIR forbids an empty list, so "entry" opens with the first resource.
        buffer.append((",\n" if stats.resources else ', "entry": [\n') + entry)
        stats.resources += 1
        size += len(entry)
        if size >= _CHUNK_BYTES:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    buffer.append("\n]}\n" if stats.resources else "}\n")
    yield "".join(buffer).encode()

@dataclass
class RunStats:
    """Counted while the bytes pass: rows, resources, bytes and the SHA-256 of the file."""

    rows: int = 0
    resources: int = 0
    size: int = 0
    columns: list[str] = field(default_factory=list)
    digest: Any = field(default_factory=hashlib.sha256)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()
