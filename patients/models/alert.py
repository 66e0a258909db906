"""An email to a clinic's clinicians about something a clinician must look at: an outbox row, like a reminder.

Created in the same transaction as what it is about (an adverse event of moderate
severity or worse, a problem a patient flagged), sent by a Celery task after
commit, retried with back-off, and handed back by the dispatcher when its
broker message was lost or its worker died (patients.staff_alerts). Kept after
sending: who was emailed and when is part of the record.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlparse

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class StaffAlert(models.Model):
    class Kind(models.TextChoices):
        ADVERSE_EVENT = "adverse_event", "Adverse event (moderate or worse)"
        PROBLEM_FLAG = "problem_flag", "Problem flagged by the patient"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Not delivered"
        CANCELLED = "cancelled", "Not needed any more"

    CLINIC_PATH = "clinic"

    clinic = models.ForeignKey("clinic.Clinic", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    adverse_event = models.ForeignKey(
        "patients.AdverseEvent", null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    assessment = models.ForeignKey(
        "patients.OutcomeAssessment", null=True, blank=True, on_delete=models.PROTECT, related_name="alerts",
        help_text="The patient's report that flagged the problem.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    due_at = models.DateTimeField(default=timezone.now, help_text="When the next attempt may start.")
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(
        null=True, blank=True,
        help_text="A task was queued or is sending until then; past it, the dispatcher hands the alert out again.",
    )
    last_error = models.TextField(blank=True)
    sent_to = models.JSONField(default=list, blank=True, help_text="The clinicians' addresses the server accepted.")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "alert to clinicians"
        verbose_name_plural = "alerts to clinicians"
        indexes = [
            # The dispatcher's scan every minute: the few not finished, by when they are due.
            models.Index(fields=["due_at"], name="staff_alert_unfinished", condition=Q(status__in=["pending", "sending"])),
            models.Index(fields=["clinic", "status"], name="staff_alert_clinic_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="adverse_event", adverse_event__isnull=False, assessment__isnull=True)
                    | Q(kind="problem_flag", assessment__isnull=False, adverse_event__isnull=True)
                ),
                name="staff_alert_about_one_thing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}, {self.created_at:%Y-%m-%d %H:%M}"

    def message_id(self, address: str) -> str:
        """The same on every attempt to ``address``, so a copy sent twice (the worker died after the server
        accepted it) is recognisable as one."""
        domain = urlparse(settings.SITE_URL).hostname or "aftercare.invalid"
        to = hashlib.sha256(address.lower().encode()).hexdigest()[:12]
        return f"<alert-{self.pk}.{to}@{domain}>"
