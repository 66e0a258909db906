"""How a record's history page names values and people: "—" for nothing, and who changed a row when no
one was signed in (the patient, through their link), instead of simple_history's "None" and
"Deleted user (pk=None)"."""

from __future__ import annotations

from typing import Any

from simple_history.models import DeletedObject, ModelChange
from simple_history.template_utils import HistoricalRecordContextHelper

EMPTY = "—"
BY_PATIENT = "the patient, through their link"
# Rows the patient writes through a link carry their source; every change to them without a signed-in
# person is the patient's (a correction), never a colleague's.
PATIENT_SOURCES = frozenset({"patient", "patient_link"})
# The change reasons patient-link services give rows of other kinds.
UNSUBSCRIBED_BY_PATIENT = "Unsubscribed by the patient through the link in an email"
PATIENT_REASONS = frozenset({UNSUBSCRIBED_BY_PATIENT})


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
    if getattr(record, "source", None) in PATIENT_SOURCES:
        return BY_PATIENT
    if record.history_change_reason in PATIENT_REASONS:
        return BY_PATIENT
    return EMPTY
