"""The outcome log as a FHIR R4 Bundle, validated with fhir.resources."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest
from fhir.resources.R4B.bundle import Bundle

from patients.export_formats import validated_json
from patients.exports import ExportRequest, ExportRequestError, start_export
from tests.exports.conftest import SECRETS
from tests.exports.helpers import run_streamed

pytestmark = pytest.mark.django_db


def _resources(body: bytes) -> list[dict]:
    return [entry["resource"] for entry in json.loads(body)["entry"]]


def test_it_validates_as_a_bundle(auditor, clinic_a, outcome_data):
    export, body = run_streamed(auditor, clinic_a, identified=True, format="fhir")

    bundle = Bundle.model_validate_json(body)
    assert bundle.type == "collection"
    assert export.manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert export.manifest["resource_count"] == len(bundle.entry)
    assert export.row_count == len(outcome_data.assessments)


def test_it_holds_patient_procedure_administration_adverse_event_and_observations(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, identified=True, format="fhir")

    counts = Counter(resource["resourceType"] for resource in _resources(body))
    assert counts["Patient"] == 2
    assert counts["Procedure"] == 2
    assert counts["MedicationAdministration"] == 1
    assert counts["AdverseEvent"] == 1
    scores = sum(
        1
        for a in outcome_data.assessments
        for name in ("erythema", "oedema", "reepithelialisation_complete", "reepithelialisation_percent", "pain",
                     "pruritus", "gais", "applied_as_instructed", "problem_flagged")
        if getattr(a, name) is not None
    )
    assert counts["Observation"] == scores


def test_it_records_the_lot_on_the_medication_administration(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, identified=True, format="fhir")

    administration = next(r for r in _resources(body) if r["resourceType"] == "MedicationAdministration")
    medication = administration["contained"][0]
    assert administration["medicationReference"] == {"reference": "#product"}
    assert medication["batch"]["lotNumber"] == "PX-2026-001"
    assert administration["dosage"]["dose"]["value"] == 0.5
    assert administration["dosage"]["site"]["text"] == "left"


def test_it_links_every_reference_to_an_entry_of_the_bundle(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, format="fhir")

    entries = json.loads(body)["entry"]
    full_urls = {entry["fullUrl"] for entry in entries}
    references = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str) and node["reference"].startswith("urn:"):
                references.add(node["reference"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(entries)
    assert references
    assert references <= full_urls


def test_it_keeps_identifiers_out_of_a_de_identified_bundle(auditor, clinic_a, outcome_data):
    _export, body = run_streamed(auditor, clinic_a, format="fhir", date_handling="shifted")

    patient = next(r for r in _resources(body) if r["resourceType"] == "Patient")
    assert set(patient) == {"resourceType", "id", "identifier"}
    assert SECRETS["family_name"].encode() not in body
    Bundle.model_validate_json(body)


def test_it_writes_a_valid_empty_bundle(auditor, clinic_a):
    _export, body = run_streamed(auditor, clinic_a, format="fhir")

    assert Bundle.model_validate_json(body).entry is None


def test_it_rejects_an_invalid_resource():
    with pytest.raises(ValueError, match="status"):
        validated_json({"resourceType": "Observation", "id": "x", "code": {"text": "pain"}})


def test_it_refuses_day_offsets_in_fhir(auditor, clinic_a):
    with pytest.raises(ExportRequestError) as refused:
        start_export(user=auditor, request=ExportRequest(clinic=clinic_a, format="fhir", date_handling="day_offsets"))
    assert "date_handling" in refused.value.errors


def test_no_element_is_left_without_its_value(auditor, clinic_a, outcome_data):
    # An extension needs a value[x] (ext-1), a contact point a value (cpt-2): an empty phase, arm or
    # phone number leaves out the element, not just its value.
    _export, body = run_streamed(auditor, clinic_a, identified=True, format="fhir")

    def hollow(node) -> list:
        found = []
        if isinstance(node, dict):
            if set(node) in ({"url"}, {"system"}):
                found.append(node)
            for value in node.values():
                found += hollow(value)
        elif isinstance(node, list):
            for value in node:
                found += hollow(value)
        return found

    assert hollow(_resources(body)) == []
