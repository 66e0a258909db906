"""Fixtures for the reliability scenarios: real SMTP, real Redis, a real Celery worker subprocess."""

from __future__ import annotations

import os

import pytest
import redis
from django.conf import settings

from tests.reliability.harness import FIGURES, QUEUE_LEASE_SECONDS, SEND_LEASE_SECONDS, SMTPServer, Worker


def _file_based_sqlite_test_db() -> None:
    # A worker subprocess must open the very test database this process
    # writes to; an in-memory SQLite database cannot be shared, so use a file
    # (one per pytest process, so parallel runs do not collide). This runs at
    # collection, before any test database exists. AFTERCARE_TEST_DB_NAME,
    # when set, already names one.
    db = settings.DATABASES["default"]
    test = db.setdefault("TEST", {})
    if db["ENGINE"].endswith("sqlite3") and not test.get("NAME"):
        test["NAME"] = str(settings.VAR_DIR / f"test-reliability-{os.getpid()}.sqlite3")


_file_based_sqlite_test_db()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def smtp_server():
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def broker_url(redis_url: str) -> str:
    # A dedicated Redis database, emptied first: nothing from an earlier run is delivered.
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


@pytest.fixture
def worker(transactional_db, broker_url, smtp_server, tmp_path, settings):
    """Not started: a test starts (and kills, and restarts) it when its scenario says so."""
    # This process plays beat (dispatcher and sweeper) with the worker's short leases.
    settings.AFTERCARE_REMINDER_QUEUE_LEASE_SECONDS = QUEUE_LEASE_SECONDS
    settings.AFTERCARE_REMINDER_SEND_LEASE_SECONDS = SEND_LEASE_SECONDS
    process = Worker(broker_url=broker_url, email_url=smtp_server.url, log_dir=tmp_path)
    yield process
    process.stop()
