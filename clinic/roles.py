"""What each staff role may do.

Roles are per clinic: a person can be a clinician in one clinic and an auditor
in another.  Every permission check in the admin, the API, exports and charts
asks ``can(user, capability, clinic)`` or scopes a queryset with
``clinic.scoping.scoped``.
"""

from __future__ import annotations

from enum import StrEnum

from clinic.models import Role


class Capability(StrEnum):
    VIEW = "view"
    MANAGE_CLINIC = "manage_clinic"
    EDIT_PROTOCOLS = "edit_protocols"
    EDIT_PATIENTS = "edit_patients"
    SCREEN = "screen"
    OVERRIDE_SCREENING = "override_screening"
    RECORD_TREATMENT = "record_treatment"
    MANAGE_REMINDERS = "manage_reminders"
    LOG_OUTCOMES = "log_outcomes"
    EXPORT = "export"
    VIEW_AUDIT = "view_audit"


_ALL_STAFF = frozenset(Role)

ROLE_CAPABILITIES: dict[Capability, frozenset[str]] = {
    Capability.VIEW: _ALL_STAFF,
    Capability.MANAGE_CLINIC: frozenset({Role.CLINIC_ADMIN}),
    Capability.EDIT_PROTOCOLS: frozenset({Role.CLINIC_ADMIN, Role.CLINICIAN}),
    Capability.EDIT_PATIENTS: frozenset({Role.CLINIC_ADMIN, Role.CLINICIAN, Role.COORDINATOR}),
    Capability.SCREEN: frozenset({Role.CLINIC_ADMIN, Role.CLINICIAN, Role.COORDINATOR}),
    # A clinical judgement: only a clinician may override a screening.
    Capability.OVERRIDE_SCREENING: frozenset({Role.CLINICIAN}),
    Capability.RECORD_TREATMENT: frozenset({Role.CLINICIAN}),
    Capability.MANAGE_REMINDERS: frozenset({Role.CLINIC_ADMIN, Role.CLINICIAN, Role.COORDINATOR}),
    Capability.LOG_OUTCOMES: frozenset({Role.CLINICIAN}),
    Capability.EXPORT: frozenset({Role.CLINIC_ADMIN, Role.AUDITOR}),
    Capability.VIEW_AUDIT: frozenset({Role.CLINIC_ADMIN, Role.AUDITOR}),
}


def roles_with(capability: Capability) -> frozenset[str]:
    return ROLE_CAPABILITIES[capability]
