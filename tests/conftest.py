"""Shared fixtures: clinics, staff of every role, and real-service guards."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

from clinic.models import Role
from tests.factories import ClinicFactory, staff

IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    """Skip (or fail under CI=true) when a real service this test needs is not reachable."""
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("AFTERCARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    require_service("Redis", url, 6379)
    return url


@pytest.fixture
def clinic_a(db):
    return ClinicFactory(name="Harbour Skin Clinic", slug="harbour", time_zone="Europe/London")


@pytest.fixture
def clinic_b(db):
    return ClinicFactory(name="Summit Dermatology", slug="summit", time_zone="America/New_York")


@pytest.fixture
def clinician(clinic_a):
    return staff(Role.CLINICIAN, clinic_a, username="clinician_a")


@pytest.fixture
def coordinator(clinic_a):
    return staff(Role.COORDINATOR, clinic_a, username="coordinator_a")


@pytest.fixture
def auditor(clinic_a):
    return staff(Role.AUDITOR, clinic_a, username="auditor_a")


@pytest.fixture
def clinic_admin(clinic_a):
    return staff(Role.CLINIC_ADMIN, clinic_a, username="admin_a")


@pytest.fixture
def clinician_b(clinic_b):
    return staff(Role.CLINICIAN, clinic_b, username="clinician_b")


@pytest.fixture
def alerts_sent_at_once(monkeypatch):
    """Alerts to clinicians sent when their transaction commits, here, as the worker would (no broker)."""
    from patients import staff_alerts

    monkeypatch.setattr(staff_alerts, "enqueue", lambda ids: [staff_alerts.send_alert(alert_id=pk) for pk in ids])
