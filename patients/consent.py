"""Recording a patient's renewed consent to email reminders after they unsubscribed.

Unsubscribing (``patients.reminders.unsubscribe``) sets ``opted_out_at``, and
no reminder goes out while it is set, whatever the consent box says. A patient
who asks for reminders again gives consent anew; staff record when and how,
and only that clears the opt-out. Reminders skipped while the patient was opted
out stay skipped (they were due then); later ones go out, because consent is
checked when each reminder is sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from clinic.audit import record_event
from patients.models import Patient
from patients.models.patient import CLOCK_TOLERANCE

NOT_OPTED_OUT = "The patient has not unsubscribed: record their consent in the patient's consent fields instead."


def renewed_consent_errors(
    *, opted_out_at: dt.datetime, consent_at: dt.datetime | None, consent_source: str, now: dt.datetime
) -> dict[str, list[str]]:
    """What is wrong with a renewed consent after the opt-out at ``opted_out_at``, by field (empty when nothing)."""
    errors: dict[str, list[str]] = {}
    if consent_at is None:
        errors["consent_at"] = ["Say when the patient consented again (the date the form was signed)."]
    elif consent_at > now + CLOCK_TOLERANCE:
        errors["consent_at"] = ["Consent cannot be dated in the future."]
    elif consent_at < opted_out_at:
        errors["consent_at"] = [
            f"The patient unsubscribed on {opted_out_at:%Y-%m-%d %H:%M} UTC; "
            "consent given before that was withdrawn by the unsubscribe."
        ]
    if consent_source not in Patient.ConsentSource.values:
        errors["consent_source"] = ["Say how the patient gave consent."]
    return errors


def renew_consent(
    *,
    patient: Patient,
    consent_at: dt.datetime | None,
    consent_source: str,
    recorded_by: Any,
    request: HttpRequest | None = None,
    now: dt.datetime | None = None,
) -> Patient:
    """Clear the patient's opt-out and record the renewed consent; raise ``ValidationError`` by field.

    The row is locked and re-read, so a patient who unsubscribes again while
    the form is open is judged by that later opt-out. Saved with ``save()`` so
    the patient's history keeps the opt-out that is cleared.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        if locked.opted_out_at is None:
            raise ValidationError(NOT_OPTED_OUT)
        errors = renewed_consent_errors(
            opted_out_at=locked.opted_out_at, consent_at=consent_at, consent_source=consent_source, now=now
        )
        if errors:
            raise ValidationError(errors)
        opted_out_at = locked.opted_out_at
        locked.opted_out_at = None
        locked.reminder_consent = True
        locked.consent_at = consent_at
        locked.consent_source = consent_source
        locked.save(update_fields=["opted_out_at", "reminder_consent", "consent_at", "consent_source"])
        record_event(
            actor=recorded_by, action="patient.consent_renewed", clinic=locked.clinic, obj=locked, request=request,
            detail={"opted_out_at": opted_out_at, "consent_at": consent_at, "consent_source": consent_source},
        )
    for field in ("opted_out_at", "reminder_consent", "consent_at", "consent_source"):
        setattr(patient, field, getattr(locked, field))
    return patient
