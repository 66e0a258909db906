"""Signed links sent to patients: an opaque id, an expiry, and single use where they change state."""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone


def _opaque_id() -> str:
    return secrets.token_urlsafe(24)


class PatientLink(models.Model):
    class Purpose(models.TextChoices):
        INTAKE = "intake", "Fill in the intake questionnaire"
        DONE = "done", "I did this step"
        SELF_REPORT = "self_report", "Report how my skin looks"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribe from reminders"

    CLINIC_PATH = "patient__clinic"

    # The token in the URL is this id, signed; it reveals nothing about the patient.
    opaque_id = models.CharField(max_length=64, unique=True, default=_opaque_id, editable=False)
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    patient = models.ForeignKey("patients.Patient", on_delete=models.PROTECT, related_name="links")
    treatment = models.ForeignKey("patients.Treatment", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reminder = models.ForeignKey("patients.Reminder", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    time_point_day = models.IntegerField(null=True, blank=True, help_text="For self-report links: which day.")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    # An intake link stops working once a newer one is sent or the patient answers through another:
    # answers given through an old email must not come after (and count over) the ones that replaced them.
    superseded_at = models.DateTimeField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["patient", "purpose"], name="link_patient_purpose")]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} link for patient {self.patient_id}"
