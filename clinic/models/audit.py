"""The access log: append-only, each entry chained to the previous one by hash."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs: object) -> int:
        raise PermissionDenied("The access log is append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionDenied("The access log is append-only.")


class AuditEvent(models.Model):
    """One thing a person did that an auditor may ask about.

    ``entry_hash`` covers this entry's content and ``previous_hash``, so editing
    or removing any row in the database breaks the chain from there on;
    ``verify_audit_log`` finds the first broken link.
    """

    clinic = models.ForeignKey("clinic.Clinic", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True, help_text="Who, even if the user is later renamed.")
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(db_index=True)
    # Unique, so two writers racing for the same tail cannot fork the chain:
    # the loser gets an IntegrityError and retries on the new tail.
    previous_hash = models.CharField(max_length=64, unique=True)
    entry_hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        # What the shortcuts, the README and the staff call it (the menu read "Audit events").
        verbose_name = "access-log entry"
        verbose_name_plural = "access log"
        indexes = [
            models.Index(fields=["clinic", "created_at"], name="audit_clinic_time"),
            # "Who looked at this patient?": entries about a record and its patient's other records,
            # by type and id (clinic.admin_access_log).
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_type} {self.object_id}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise PermissionDenied("The access log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise PermissionDenied("The access log is append-only.")

    def compute_hash(self) -> str:
        payload = {
            "clinic": self.clinic_id,
            "actor": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "detail": self.detail,
            "request_id": self.request_id,
            "created_at": self.created_at.isoformat(),
            "previous_hash": self.previous_hash,
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()
