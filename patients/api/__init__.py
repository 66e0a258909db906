"""API of the patients app, one module per concept; each registers on the shared router."""

from __future__ import annotations

from patients.api import exports, outcomes, patients, treatments  # noqa: F401
