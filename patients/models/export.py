"""An export job: what was asked for, by whom, and the file it produced (kept for a limited time)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


def export_path(instance: Export, filename: str) -> str:
    # Files live under MEDIA_ROOT, which is never served at a public URL;
    # downloads go through a view that checks the clinic and logs the access.
    return f"exports/{instance.clinic_id}/{filename}"


class Export(models.Model):
    """One run of an export, kept as a record after its file has been deleted.

    Small exports stream straight to the browser and keep no file; large ones
    run as a Celery task, report progress here and keep the file until
    ``expires_at``.  ``manifest`` holds what an auditor needs to trust the
    file: row count, filters, who, when and the file's SHA-256.
    """

    class Kind(models.TextChoices):
        OUTCOMES = "outcomes", "Outcome log"
        REMINDERS = "reminders", "Reminder delivery ledger"
        RECALL = "recall", "Recall list of a lot"
        ADVERSE_EVENTS = "adverse_events", "Adverse events"

    class Format(models.TextChoices):
        CSV = "csv", "CSV (RFC 4180, UTF-8)"
        XLSX = "xlsx", "Excel (XLSX)"
        FHIR = "fhir", "FHIR R4 Bundle (JSON)"

    class DateHandling(models.TextChoices):
        ACTUAL = "actual", "Actual dates"
        SHIFTED = "shifted", "Shifted by a random number of days per patient"
        DAY_OFFSETS = "day_offsets", "Days since the patient's first treatment"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        ABORTED = "aborted", "Download interrupted"
        EXPIRED = "expired", "File deleted after its retention period"

    clinic = models.ForeignKey("clinic.Clinic", on_delete=models.PROTECT, related_name="exports")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.OUTCOMES)
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.CSV)
    filters = models.JSONField(default=dict, blank=True)
    identified = models.BooleanField(
        default=False, help_text="Identified exports carry names, emails and birth dates; de-identified ones a pseudonym."
    )
    date_handling = models.CharField(max_length=20, choices=DateHandling.choices, default=DateHandling.SHIFTED)
    streamed = models.BooleanField(default=False, help_text="Sent straight to the browser; no file is kept.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rows_done = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    file = models.FileField(upload_to=export_path, blank=True, max_length=255)
    file_name = models.CharField(max_length=200, blank=True, help_text="The name the download is offered under.")
    sha256 = models.CharField(max_length=64, blank=True)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["clinic", "created_at"], name="export_clinic_created"),
            # The cleanup task's query: files past their retention period.
            models.Index(fields=["expires_at"], name="export_expiry", condition=models.Q(status="done")),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.format}) #{self.pk} for {self.clinic}"

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(99, int(100 * self.rows_done / self.rows_total))

    @property
    def is_downloadable(self) -> bool:
        return self.status == self.Status.DONE and bool(self.file) and not self.streamed
