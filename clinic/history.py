"""How a record's history page names values and people: "—" for nothing, and who changed a row when no
one was signed in (the patient, through their link, known by the change reason), instead of
simple_history's "None" and "Deleted user (pk=None)"."""

from __future__ import annotations

from typing import Any

from simple_history.models import DeletedObject, ModelChange
from simple_history.template_utils import HistoricalRecordContextHelper

EMPTY = "—"
BY_PATIENT = "the patient, through their link"
# The change reasons the patient-link services give what they save. Only these name the patient: a row
# the patient once wrote (source "patient") may later be changed by a task, a command or staff whose
# request had no user, and that is not the patient.
SENT_BY_PATIENT = "Sent by the patient through their link"
CORRECTED_BY_PATIENT = "Corrected by the patient through their link"
INTAKE_BY_PATIENT = "Answered by the patient through their intake link"
UNSUBSCRIBED_BY_PATIENT = "Unsubscribed by the patient through the link in an email"
PATIENT_REASONS = frozenset({SENT_BY_PATIENT, CORRECTED_BY_PATIENT, INTAKE_BY_PATIENT, UNSUBSCRIBED_BY_PATIENT})


def _is_empty(value: Any) -> bool:
    if isinstance(value, DeletedObject):
        return value.pk is None  # a foreign key that was empty, not a row deleted since
    return value is None or value == "" or value == []


class HistoryChanges(HistoricalRecordContextHelper):
    """simple_history's "Changes" column, with an empty value shown as "—"."""

    def prepare_delta_change_value(self, change: ModelChange, value: Any) -> Any:
        if _is_empty(value):
            return EMPTY
        return super().prepare_delta_change_value(change, value)


def changed_by_nobody_signed_in(record: Any) -> str:
    """Who made a historical change that has no ``history_user``: the patient when that is known, else "—"."""
    if record.history_change_reason in PATIENT_REASONS:
        return BY_PATIENT
    return EMPTY
