"""The outcome bundle holds every adverse event of the treatments it covers, each once, with its Patient and Procedure.

The assessments drive the bundle, so a treatment with adverse events and no
assessment had no record: its events, Patient and Procedure were missing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B.bundle import Bundle

from clinic.models import Role
from patients.export_formats import validated_json
from patients.exports import ExportRequest, start_export, stream_export
from patients.models import AdverseEvent, ExosomeApplication, Export, OutcomeAssessment, TreatmentArm
from tests.exports.conftest import NOW, SECRETS
from tests.exports.helpers import csv_rows, run_streamed
from tests.factories import LotFactory, PatientFactory, TreatmentFactory, staff

pytestmark = pytest.mark.django_db

HL7_SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
HL7_SERIOUSNESS = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"


def _event(treatment, by, **values) -> AdverseEvent:  # noqa: ANN001
    values.setdefault("onset_date", (treatment.ended_at + dt.timedelta(days=2)).date())
    values.setdefault("recorded_at", treatment.ended_at + dt.timedelta(days=2, hours=3))
    return AdverseEvent.objects.create(treatment=treatment, recorded_by=by, **values)


@pytest.fixture
def unassessed(outcome_data):  # noqa: ANN201 - the outcome data, with treatments that have events and no assessment
    """A second treatment of the first patient with an event on an arm and no assessment, and a patient whose only
    treatment has an application and a life-threatening event and no assessment."""
    doctor = outcome_data.clinicians[0]
    split = outcome_data.treatments[0]
    again = TreatmentFactory(
        screening__patient=outcome_data.patients[0], screening__protocol_version=split.protocol_version,
        clinician=doctor, started_at=NOW - dt.timedelta(days=10, hours=1), ended_at=NOW - dt.timedelta(days=10),
    )
    chin = TreatmentArm.objects.create(treatment=again, label="chin")
    on_arm = _event(again, doctor, arm=chin, kind="infection", severity="moderate", description="Swab taken")
    newcomer = PatientFactory(clinic=outcome_data.patients[0].clinic, given_name="Ottoline", family_name="Vashti-Brae")
    alone = TreatmentFactory(
        screening__patient=newcomer, screening__protocol_version=split.protocol_version, clinician=doctor,
        started_at=NOW - dt.timedelta(days=6, hours=1), ended_at=NOW - dt.timedelta(days=6),
    )
    ExosomeApplication.objects.create(
        treatment=alone, lot=LotFactory(product=outcome_data.applications[0].lot.product, lot_number="PX-2026-077"),
        volume_ml=Decimal("1.00"), minutes_after_procedure=10, applied_by=doctor,
    )
    grave = _event(alone, doctor, kind="other", severity="life_threatening", description="Anaphylaxis, ambulance")
    outcome_data.adverse_events += [on_arm, grave]
    outcome_data.patients.append(newcomer)
    outcome_data.treatments += [again, alone]
    return outcome_data


def _resources(body: bytes) -> list[dict]:
    return [entry["resource"] for entry in json.loads(body)["entry"]]


def _of(resources: list[dict], resource_type: str) -> list[dict]:
    return [resource for resource in resources if resource["resourceType"] == resource_type]


def test_a_treatment_with_only_an_adverse_event_has_its_patient_procedure_and_event_once(auditor, clinic_a, unassessed):
    export, body = run_streamed(auditor, clinic_a, identified=True, format="fhir")

    resources = _resources(body)
    ids = Counter((resource["resourceType"], resource["id"]) for resource in resources)
    assert [key for key, count in ids.items() if count > 1] == []
    alone = unassessed.treatments[3]
    assert ("Patient", f"patient-{alone.patient_id}") in ids
    assert {r["id"] for r in _of(resources, "Patient")} == {f"patient-{p.pk}" for p in unassessed.patients}
    assert {r["id"] for r in _of(resources, "Procedure")} == {f"procedure-{t.pk}" for t in unassessed.treatments}
    assert {r["id"] for r in _of(resources, "AdverseEvent")} == {
        f"adverse-event-{event.pk}" for event in unassessed.adverse_events
    }
    lots = {r["contained"][0]["batch"]["lotNumber"] for r in _of(resources, "MedicationAdministration")}
    assert lots == {"PX-2026-001", "PX-2026-077"}
    procedure = next(r for r in _of(resources, "Procedure") if r["id"] == f"procedure-{alone.pk}")
    assert procedure["performedPeriod"]["end"] == alone.ended_at.isoformat()
    # Observations only for assessments, and only they are rows.
    assert export.row_count == OutcomeAssessment.objects.filter(treatment__clinic=clinic_a).count()


def test_it_holds_the_events_the_adverse_event_export_lists(auditor, clinic_a, unassessed):
    export, body = run_streamed(auditor, clinic_a, identified=True, format="fhir")
    _listing, listed = run_streamed(auditor, clinic_a, identified=True, kind=Export.Kind.ADVERSE_EVENTS)

    in_bundle = sorted(r["id"] for r in _of(_resources(body), "AdverseEvent"))
    assert in_bundle == sorted(f"adverse-event-{row['adverse_event_id']}" for row in csv_rows(listed))
    assert export.manifest["adverse_event_count"] == len(in_bundle) == 3
    assert export.manifest["resource_count"] == len(json.loads(body)["entry"])
    assert "treatment without assessments" in export.manifest["bundle_adverse_events_note"]


@pytest.mark.parametrize("options", [{"identified": True}, {"identified": False, "date_handling": "shifted"}])
def test_every_reference_of_an_unassessed_treatment_resolves_in_the_bundle(auditor, clinic_a, unassessed, options):
    _export, body = run_streamed(auditor, clinic_a, format="fhir", **options)

    Bundle.model_validate_json(body)
    entries = json.loads(body)["entry"]
    full_urls = [entry["fullUrl"] for entry in entries]
    assert len(full_urls) == len(set(full_urls))
    events = _of([entry["resource"] for entry in entries], "AdverseEvent")
    assert len(events) == 3
    for event in events:
        assert event["subject"]["reference"] in full_urls
        assert event["suspectEntity"][0]["instance"]["reference"] in full_urls


def test_a_de_identified_bundle_keeps_the_unassessed_patients_identifiers_out(auditor, clinic_a, unassessed):
    _export, body = run_streamed(auditor, clinic_a, format="fhir", date_handling="shifted")

    resources = _resources(body)
    assert len(_of(resources, "Patient")) == 3
    assert all(set(patient) == {"resourceType", "id", "identifier"} for patient in _of(resources, "Patient"))
    for secret in ("Ottoline", "Vashti-Brae", SECRETS["family_name"], "Swab taken", "Anaphylaxis"):
        assert secret.encode() not in body
    alone = unassessed.treatments[3]
    grave = unassessed.adverse_events[-1]
    assert f"procedure-{alone.pk}" not in {r["id"] for r in resources}
    # Shifted with the patient: the event still comes two days after the procedure.
    event = next(r for r in _of(resources, "AdverseEvent") if "seriousness" in r)
    procedure = next(r for r in _of(resources, "Procedure") if r["subject"] == event["subject"])
    ended = dt.datetime.fromisoformat(procedure["performedPeriod"]["end"])
    assert dt.date.fromisoformat(event["date"]) - ended.date() == grave.onset_date - alone.ended_at.date()
    assert ended != alone.ended_at


@pytest.mark.parametrize(
    ("severity", "codings", "serious"),
    [
        ("mild", [(HL7_SEVERITY, "mild")], False),
        ("moderate", [(HL7_SEVERITY, "moderate")], False),
        ("severe", [(HL7_SEVERITY, "severe")], False),
        ("life_threatening", [(HL7_SEVERITY, "severe"), ("urn:aftercare:adverse-event-severity", "life_threatening")], True),
    ],
)
def test_severity_is_coded_in_hl7s_code_system(auditor, clinic_a, outcome_data, severity, codings, serious):
    AdverseEvent.objects.update(severity=severity)

    _export, body = run_streamed(auditor, clinic_a, identified=True, format="fhir")

    event = _of(_resources(body), "AdverseEvent")[0]
    assert [(coding["system"], coding["code"]) for coding in event["severity"]["coding"]] == codings
    assert event["severity"]["text"] == AdverseEvent.Severity(severity).label
    if serious:
        assert event["seriousness"]["coding"] == [{"system": HL7_SERIOUSNESS, "code": "serious", "display": "Serious"}]
    else:
        assert "seriousness" not in event
    validated_json(event)


@pytest.mark.parametrize("options", [{"identified": True}, {"identified": False, "date_handling": "shifted"}])
def test_it_runs_as_many_queries_for_many_unassessed_treatments_as_for_one(auditor, clinic_a, options):
    doctor = staff(Role.CLINICIAN, clinic_a, username="dr_count")
    lot = LotFactory(product__clinic=clinic_a)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            export = start_export(user=auditor, request=ExportRequest(clinic=clinic_a, format="fhir", **options))
            body = b"".join(stream_export(export))
        Bundle.model_validate_json(body)
        return len(captured.captured_queries)

    def add_patient(*, assessed: bool) -> None:
        treatment = TreatmentFactory(screening__patient=PatientFactory(clinic=clinic_a), clinician=doctor,
                                     started_at=NOW - dt.timedelta(days=4, hours=1), ended_at=NOW - dt.timedelta(days=4))
        ExosomeApplication.objects.create(treatment=treatment, lot=lot, volume_ml=Decimal("0.5"),
                                          minutes_after_procedure=5, applied_by=doctor)
        for _ in range(2):
            _event(treatment, doctor, kind="milia", severity="mild")
        if assessed:
            OutcomeAssessment.objects.create(treatment=treatment, time_point_day=1, erythema=1, recorded_by=doctor)

    add_patient(assessed=False)
    add_patient(assessed=True)
    queries()  # the requester's roles, read once per person, are not the export's
    one = queries()
    for number in range(6):
        add_patient(assessed=bool(number % 2))
    assert queries() == one
