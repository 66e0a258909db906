"""Demo patients: one per screening result, installed once."""

from __future__ import annotations

import pytest

from clinic.models import Role
from patients.demo import install_demo_patients
from patients.models import Intake, Patient, Screening
from protocols import defaults
from tests.factories import staff

pytestmark = pytest.mark.django_db


def test_it_installs_four_screened_patients_once(clinic_a):
    clinician = staff(Role.CLINICIAN, clinic_a)
    defaults.install_default_rules()
    versions = defaults.install_example_protocols(clinic=clinic_a)
    first = install_demo_patients(clinic=clinic_a, versions=versions, clinician=clinician)
    again = install_demo_patients(clinic=clinic_a, versions=versions, clinician=clinician)
    assert [p.pk for p in first] == [p.pk for p in again]
    assert Patient.objects.count() == 4
    assert Intake.objects.count() == 4
    assert Screening.objects.count() == 4
    outcomes = {p.reference: Screening.objects.get(patient=p).outcome for p in first}
    assert outcomes == {
        "DEMO-001": "blocked",  # pregnant, exosome applied
        "DEMO-002": "needs_override",  # isotretinoin two months ago
        "DEMO-003": "clear",
        "DEMO-004": "needs_override",  # HSV history before an ablative laser
    }
    hsv = Screening.objects.get(patient__reference="DEMO-004")
    assert hsv.protocol_version.procedure == "fractional_ablative"
    # Each outcome comes from its story, not from a question the demo intake left unanswered.
    assert not [f for s in Screening.objects.all() for f in s.findings if f["rule_code"] == "unanswered"]
