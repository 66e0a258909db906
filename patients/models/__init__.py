from __future__ import annotations

from patients.models.alert import StaffAlert
from patients.models.export import Export
from patients.models.intake import Intake
from patients.models.link import PatientLink
from patients.models.outcome import AdverseEvent, OutcomeAssessment, OutcomePhoto, ProblemFlag
from patients.models.patient import Patient
from patients.models.reminder import Reminder
from patients.models.screening import Screening, ScreeningOverride
from patients.models.treatment import ExosomeApplication, Treatment, TreatmentArm

__all__ = [
    "AdverseEvent",
    "OutcomeAssessment",
    "OutcomePhoto",
    "ExosomeApplication",
    "Export",
    "Intake",
    "Patient",
    "PatientLink",
    "ProblemFlag",
    "Reminder",
    "Screening",
    "ScreeningOverride",
    "StaffAlert",
    "Treatment",
    "TreatmentArm",
]
