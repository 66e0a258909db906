"""The identified outcome log as one SQL SELECT: the columns ``patients.export_rows`` writes, in the same order.

Products, lots and adverse events are aggregated once per treatment and once
per arm (common table expressions), under the same arm rule as the export: an
application or event without an arm belongs to every arm, and a row without
an arm sees everything on its treatment. Only the text of times and booleans
differs from the export's (the database's own formatting).
"""

from __future__ import annotations

from patients.models import AdverseEvent, ExosomeApplication, OutcomeAssessment, Patient, Treatment, TreatmentArm
from protocols.models import ExosomeProduct, ProductLot, Protocol, ProtocolVersion

# (output column, SQL expression) in the order of patients.export_rows.outcome_columns for identified exports
COLUMNS = (
    ("assessment_id", "o.id"), ("patient_id", "t.patient_id"), ("patient_reference", "p.reference"),
    ("given_name", "p.given_name"), ("family_name", "p.family_name"), ("date_of_birth", "p.date_of_birth"),
    ("email", "p.email"), ("treatment_id", "o.treatment_id"), ("treatment_status", "t.status"),
    ("procedure", "pr.procedure"), ("procedure_ended_at", "t.ended_at"), ("areas", "t.areas"),
    ("clinician", "cu.username"), ("protocol", "pr.name"), ("protocol_version", "v.number"), ("arm", "a.label"),
    ("arm_is_control", "a.is_control"),
    ("arm_product", "CASE WHEN a.is_control THEN 'control: ' || a.control_description ELSE ap.name END"),
    ("products", "{products}"), ("lots", "{lots}"), ("time_point_day", "o.time_point_day"), ("phase", "o.phase"),
    ("source", "o.source"), ("erythema", "o.erythema"), ("oedema", "o.oedema"),
    ("reepithelialisation_complete", "o.reepithelialisation_complete"),
    ("reepithelialisation_percent", "o.reepithelialisation_percent"), ("pain", "o.pain"), ("pruritus", "o.pruritus"),
    ("gais", "o.gais"), ("applied_as_instructed", "o.applied_as_instructed"), ("problem_flagged", "o.problem_flagged"),
    ("adverse_events", "{adverse_events}"), ("notes", "o.notes"), ("recorded_by", "ru.username"),
    ("recorded_at", "o.recorded_at"),
)


def _table(model: type) -> str:
    return f'"{model._meta.db_table}"'


def _aggregate(vendor: str, expression: str, separator: str, *, order: str, distinct: bool = False) -> str:
    if vendor == "postgresql":
        return f"string_agg({'DISTINCT ' if distinct else ''}{expression}, '{separator}' ORDER BY {order})"
    return f"group_concat({expression}, '{separator}')"  # SQLite: no DISTINCT with a separator, order as it comes


def _side_data(vendor: str, clinic_id: int) -> str:
    """Applications and adverse events aggregated once per treatment (rows without an arm) and per arm."""
    products = _aggregate(vendor, "apps.product", "; ", order="apps.product", distinct=True)
    lots = _aggregate(vendor, "apps.lot_number", "; ", order="apps.id")
    events = _aggregate(vendor, "events.text", " | ", order="events.onset_date, events.id")
    in_clinic = f"JOIN {_table(Treatment)} ct ON ct.id = {{alias}}.treatment_id AND ct.clinic_id = {int(clinic_id)}"
    event_text = (
        "e.kind || ' (' || e.severity || '), onset ' || e.onset_date || "
        "CASE WHEN e.resolution_date IS NULL THEN ', ongoing' ELSE ', resolved ' || e.resolution_date END || "
        "COALESCE(', ' || ea.label, '')"
    )
    return (
        f"apps AS (SELECT x.id, x.treatment_id, x.arm_id, l.lot_number, pd.name AS product "  # noqa: S608 - see below
        f"FROM {_table(ExosomeApplication)} x "
        f"{in_clinic.format(alias='x')} JOIN {_table(ProductLot)} l ON l.id = x.lot_id "
        f"JOIN {_table(ExosomeProduct)} pd ON pd.id = l.product_id), "
        f"apps_t AS (SELECT treatment_id, {products} AS products, {lots} AS lots FROM apps GROUP BY treatment_id), "
        f"apps_a AS (SELECT a.id AS arm_id, {products} AS products, {lots} AS lots FROM {_table(TreatmentArm)} a "
        f"JOIN apps ON apps.treatment_id = a.treatment_id AND (apps.arm_id IS NULL OR apps.arm_id = a.id) GROUP BY a.id), "
        f"events AS (SELECT e.id, e.treatment_id, e.arm_id, e.onset_date, {event_text} AS text FROM {_table(AdverseEvent)} e "
        f"{in_clinic.format(alias='e')} LEFT JOIN {_table(TreatmentArm)} ea ON ea.id = e.arm_id), "
        f"events_t AS (SELECT treatment_id, {events} AS text FROM events GROUP BY treatment_id), "
        f"events_a AS (SELECT a.id AS arm_id, {events} AS text FROM {_table(TreatmentArm)} a "
        f"JOIN events ON events.treatment_id = a.treatment_id AND (events.arm_id IS NULL OR events.arm_id = a.id) GROUP BY a.id)"
    )


def outcome_log_select(*, clinic_id: int, vendor: str) -> str:
    side = {
        "products": "CASE WHEN o.arm_id IS NULL THEN apps_t.products ELSE apps_a.products END",
        "lots": "CASE WHEN o.arm_id IS NULL THEN apps_t.lots ELSE apps_a.lots END",
        "adverse_events": "CASE WHEN o.arm_id IS NULL THEN events_t.text ELSE events_a.text END",
    }
    select = ", ".join(f'{expression.format(**side)} AS "{name}"' for name, expression in COLUMNS)
    # Table names come from the models and the clinic id is an int: nothing here comes from a person.
    return (
        f"WITH {_side_data(vendor, clinic_id)} "  # noqa: S608
        f"SELECT {select} FROM {_table(OutcomeAssessment)} o "
        f"JOIN {_table(Treatment)} t ON t.id = o.treatment_id "
        f"JOIN {_table(Patient)} p ON p.id = t.patient_id "
        f"JOIN {_table(ProtocolVersion)} v ON v.id = t.protocol_version_id "
        f"JOIN {_table(Protocol)} pr ON pr.id = v.protocol_id "
        f'JOIN "auth_user" cu ON cu.id = t.clinician_id '
        f"LEFT JOIN {_table(TreatmentArm)} a ON a.id = o.arm_id "
        f"LEFT JOIN {_table(ExosomeProduct)} ap ON ap.id = a.product_id "
        f'LEFT JOIN "auth_user" ru ON ru.id = o.recorded_by_id '
        f"LEFT JOIN apps_t ON apps_t.treatment_id = o.treatment_id LEFT JOIN apps_a ON apps_a.arm_id = o.arm_id "
        f"LEFT JOIN events_t ON events_t.treatment_id = o.treatment_id LEFT JOIN events_a ON events_a.arm_id = o.arm_id "
        f"WHERE t.clinic_id = {int(clinic_id)} "
        f"ORDER BY t.patient_id, o.treatment_id, o.time_point_day, o.phase, a.label, o.source, o.id"
    )
