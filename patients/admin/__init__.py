"""Admin of the patients app, one module per concept."""

from __future__ import annotations

from patients.admin import alerts, exports, flags, outcomes, patients, treatments  # noqa: F401
