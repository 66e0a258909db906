from __future__ import annotations

from clinic.models.audit import AuditEvent
from clinic.models.tenant import Clinic, Membership, Role

__all__ = ["AuditEvent", "Clinic", "Membership", "Role"]
