"""The reminder outbox: the database is the source of truth for what is sent, and when."""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.db import models


class Reminder(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        AWAITING_RETRY = "awaiting_retry", "Awaiting retry"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"

    CLINIC_PATH = "treatment__clinic"
    #: not yet handed to a worker: the dispatcher may claim these once due
    READY = (Status.SCHEDULED, Status.AWAITING_RETRY)
    #: will still be sent unless someone intervenes (what cancelling stops)
    PENDING = (Status.SCHEDULED, Status.AWAITING_RETRY, Status.QUEUED)
    #: a worker holds the row until ``lease_until``
    LEASED = (Status.QUEUED, Status.SENDING)

    # No index of its own: the unique (treatment, step, occurrence) index leads with it, and
    # every one of the ~13 rows a treatment inserts would pay for a second one.
    treatment = models.ForeignKey(
        "patients.Treatment", on_delete=models.PROTECT, related_name="reminders", db_index=False
    )
    step = models.ForeignKey("protocols.ProtocolStep", on_delete=models.PROTECT, related_name="+")
    occurrence = models.PositiveIntegerField(default=0, help_text="0 for the first time a repeating step happens.")
    occurs_at = models.DateTimeField(help_text="When the step itself happens (UTC).")
    due_at = models.DateTimeField(help_text="When the email goes out (UTC), after quiet hours.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SCHEDULED)
    attempts = models.PositiveIntegerField(default=0, help_text="Send attempts since it was (re)scheduled.")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    resend_count = models.PositiveIntegerField(
        default=0, help_text="Times staff asked to send it again; each resend is a new message with a new Message-ID."
    )
    last_error = models.TextField(blank=True, help_text="The mail server's answer, or why the reminder was skipped.")
    # A resend starts a new delivery (status, attempts and error are the new send's), so the one it
    # replaced is kept here: the latest resend's here, every resend's in its access-log entry.
    previous_status = models.CharField(
        max_length=20, choices=Status.choices, blank=True, help_text="Before the latest resend: how it had ended."
    )
    previous_attempts = models.PositiveIntegerField(null=True, blank=True, help_text="Before the latest resend.")
    previous_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Before the latest resend.")
    previous_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="Before the latest resend: when the mail server had accepted it."
    )
    previous_error = models.TextField(
        blank=True, help_text="Before the latest resend: the mail server's answer, or why it was skipped."
    )
    # Staff moved a follow-up visit by hand (the patient rebooked): the time is the one agreed with the
    # patient, so recomputing the treatment's timeline leaves it where it is. The latest move's here,
    # every move's in its access-log entry.
    moved_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When staff last moved the visit by hand; a recomputed timeline keeps it at its time.",
    )
    move_count = models.PositiveIntegerField(
        default=0, help_text="Times staff moved the visit: the invitation's SEQUENCE, so calendars update the event."
    )
    moved_from = models.DateTimeField(null=True, blank=True, help_text="Before the latest move: when the visit was.")
    move_reason = models.TextField(blank=True, help_text="Why the visit was last moved.")
    lease_until = models.DateTimeField(null=True, blank=True, help_text="A worker holds the row until then.")
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True, help_text="When the patient said they did the step.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at"]
        constraints = [
            models.UniqueConstraint(fields=["treatment", "step", "occurrence"], name="one_reminder_per_occurrence"),
        ]
        indexes = [
            # The dispatcher's query: rows ready to go, oldest first. Partial so
            # it stays small however many sent rows pile up.
            models.Index(
                fields=["due_at"],
                name="reminder_ready",
                condition=models.Q(status__in=["scheduled", "awaiting_retry"]),
            ),
            models.Index(
                fields=["lease_until"], name="reminder_leased", condition=models.Q(status__in=["queued", "sending"])
            ),
            # The outbox lists (admin and API) page through every row by due time; the
            # partial index above covers only the rows still to send.
            models.Index(fields=["due_at", "id"], name="reminder_due"),
        ]

    def __str__(self) -> str:
        return f"{self.step.title} #{self.occurrence} for treatment {self.treatment_id} ({self.status})"

    @property
    def message_id(self) -> str:
        """The same on every attempt, so a duplicate after a crash is recognisable as one."""
        domain = urlparse(settings.SITE_URL).hostname or "aftercare.invalid"
        resend = f".r{self.resend_count}" if self.resend_count else ""
        return f"<reminder-{self.pk}.{self.treatment_id}.{self.step_id}.{self.occurrence}{resend}@{domain}>"


#: the reminder's statuses, named once in the API schema (its status and the status a resend replaced)
REMINDER_STATUSES = Reminder.Status
