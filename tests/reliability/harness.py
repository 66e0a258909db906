"""Real parts for the reliability scenarios: an SMTP server, a Celery worker subprocess, due reminders in bulk."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection
from django.utils import timezone

from clinic.celery import app as celery_app
from patients import reminders
from patients.links import read_link
from patients.models import Reminder
from patients.tasks import send_reminder_task
from tests.factories import StepFactory, TreatmentFactory

ROOT = Path(settings.BASE_DIR)
TOKEN = re.compile(r"/p/([^/\s\"<>]+)/")
FIGURES: list[str] = []  # printed in the terminal summary by conftest


def report(scenario: str, **figures: object) -> None:
    """Print a scenario's figures now (pytest -s) and again in the terminal summary."""
    line = f"{scenario}: " + ", ".join(f"{name}={value}" for name, value in figures.items())
    print(f"\n[reliability] {line}")
    FIGURES.append(line)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a real SMTP server ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    message_id: str
    recipient: str
    link_tokens: tuple[str, ...]
    date: str


@dataclass
class RecordingSMTP:
    """An aiosmtpd handler that records every accepted message and answers as ``policy`` says."""

    delay: float = 0.0
    policy: Callable[[str, str, int], str] = lambda message_id, recipient, attempt: "250 OK"
    on_accept: Callable[[int], None] | None = None
    accepted: list[Received] = field(default_factory=list)
    connections: set[int] = field(default_factory=set)  # client ports: one per SMTP connection
    attempts: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        message_id = message["Message-ID"]
        recipient = envelope.rcpt_tos[0]
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.connections.add(session.peer[1])
            self.attempts[message_id] += 1
            reply = self.policy(message_id, recipient, self.attempts[message_id])
            self.answers[reply[:3]] += 1
            if reply.startswith("250"):
                text = _text_part(message)
                self.accepted.append(Received(message_id, recipient, tuple(TOKEN.findall(text)), message["Date"]))
                count = len(self.accepted)
            else:
                count = 0
        if count and self.on_accept:
            # Runs before the worker hears "250": a kill here is the duplicate window.
            self.on_accept(count)
        return reply

    def by_message_id(self) -> Counter:
        with self.lock:
            return Counter(item.message_id for item in self.accepted)


def _text_part(message: email.message.Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode()
    return ""


class SMTPServer:
    def __init__(self) -> None:
        self.handler = RecordingSMTP()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


def reminder_of_message(received: Received) -> int:
    """Which reminder a received email was for, read from its "I did this" link (not from its Message-ID)."""
    for token in received.link_tokens:
        link = read_link(token)
        if link.purpose == "done":
            return link.reminder_id
    raise AssertionError(f"No 'I did this' link in {received.message_id}")


# --- a real Celery worker --------------------------------------------------------------------


def database_url_for_subprocess() -> str:
    """The URL of the test database this process uses, for a subprocess to open."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        name = str(db["NAME"])
        if name == ":memory:" or name.startswith("file:memorydb"):
            raise RuntimeError("A worker subprocess needs a file-based SQLite test database")
        return f"sqlite:///{Path(name).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


# Short, so the sweeper recovers lost messages and a killed worker's rows within seconds; the
# send lease stays well above a send's duration even on a busy machine, so a live but slow
# worker is not mistaken for a dead one.
QUEUE_LEASE_SECONDS = 6
SEND_LEASE_SECONDS = 10


class Worker:
    """``celery -A clinic worker`` in its own process group, pointed at the test database and Redis."""

    def __init__(self, *, broker_url: str, email_url: str, log_dir: Path) -> None:
        self.broker_url = broker_url
        self.email_url = email_url
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AFTERCARE_TEST", "PYTEST"))}
        env.update(
            DJANGO_SETTINGS_MODULE="clinic.settings", DATABASE_URL=database_url_for_subprocess(),
            CELERY_BROKER_URL=self.broker_url, EMAIL_URL=self.email_url, EMAIL_TIMEOUT="3",
            REMINDER_QUEUE_LEASE_SECONDS=str(QUEUE_LEASE_SECONDS), REMINDER_SEND_LEASE_SECONDS=str(SEND_LEASE_SECONDS),
            REMINDER_RETRY_BASE_SECONDS="1", CONN_MAX_AGE="0", LOG_LEVEL="WARNING",
        )
        return env | self.extra_env

    def start(self) -> Worker:
        self.starts += 1
        log = open(self.log_dir / f"worker-{self.starts}.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "clinic", "worker", "--pool=prefork", "--concurrency=2",
             "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"reliability-{uuid.uuid4().hex[:8]}@%h"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: no shutdown, no acknowledgements."""
        process = self.process  # the beat loop may start a new one meanwhile
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        logs = sorted(self.log_dir.glob("worker-*.log"))
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in logs[-2:])


def redis_enqueue(broker_url: str) -> reminders.Enqueue:
    """Queue send tasks on ``broker_url`` (this test process's own broker may be the filesystem one)."""

    def enqueue(ids: list[int]) -> None:
        with celery_app.connection_for_write(broker_url) as conn:
            for reminder_id in ids:
                send_reminder_task.apply_async((reminder_id,), connection=conn)

    return enqueue


def run_beat(*, until: Callable[[], bool], enqueue: reminders.Enqueue, timeout: float,
             between: Callable[[], None] | None = None) -> float:
    """Play beat: sweep and dispatch twice a second until ``until()`` or ``timeout``; return seconds taken."""
    started = time.monotonic()
    while not until():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"Not done after {timeout} s")
        reminders.sweep_expired_leases()
        reminders.dispatch_due(enqueue=enqueue)
        if between:
            between()
        time.sleep(0.5)
    return time.monotonic() - started


def settled() -> bool:
    """True when no reminder is waiting to be sent any more."""
    open_statuses = [*Reminder.PENDING, Reminder.Status.SENDING]
    return not Reminder.objects.filter(status__in=open_statuses).exists()


# --- data in bulk ------------------------------------------------------------------------------


def due_reminders(*, clinic: Any, count: int, patient_kwargs: dict | None = None) -> list[int]:
    """``count`` due reminders of one treatment (one step repeating), created in bulk."""
    treatment = TreatmentFactory(
        screening__patient__clinic=clinic, **{f"screening__patient__{k}": v for k, v in (patient_kwargs or {}).items()}
    )
    step = StepFactory(version=treatment.protocol_version, title="Apply the serum tonight", repeat_count=count,
                       repeat_every_days=1)
    now = timezone.now()
    rows = [
        Reminder(treatment=treatment, step=step, occurrence=n, occurs_at=now - dt.timedelta(minutes=1),
                 due_at=now - dt.timedelta(minutes=1))
        for n in range(count)
    ]
    return [row.pk for row in Reminder.objects.bulk_create(rows)]
