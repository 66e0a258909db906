"""Benchmark 1: the reminder pipeline against a plain smtplib loop sending the same messages.

The pipeline is the production one: the dispatcher task (what beat queues
every minute) runs in a real Celery worker, claims the due rows and queues one
send task per row; the worker's processes send each email to a local SMTP
server (aiosmtpd, its own process). The 10,000 reminders come from the
example microneedling protocol (instructions, the nightly serum, a self-check
with its report link, visits with a calendar invitation), one patient in ten
reads German, and all of them fall due at the same moment ``t0``: a burst,
so the p99 lateness is mostly the time the queue takes to drain.

The baseline sends the very messages the pipeline produced (kept by the
server), over one smtplib connection, from one process: what the machine
does when nothing but SMTP is involved.

The design ceiling sends the same messages again through a Celery worker
whose task, given a message's number, only sends its finished bytes
(``tests.perf.ceiling_tasks``): the shape DESIGN.md fixes (one late-acknowledged
task per row, published one by one) without any of Aftercare's work. Its rate
says how much of the gap to the plain loop the task-per-row design itself
takes on this machine.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import smtplib
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from patients.models import Reminder, Screening, Treatment
from patients.tasks import dispatch_due_reminders_task
from tests.perf.ceiling_tasks import DONE_FILE_ENV, SPOOL_ENV, send_finished_message
from tests.perf.environment import BenchEnvironment
from tests.perf.report import Result, number, percentile, rate
from tests.perf.seed import (
    REMINDER_COLUMNS,
    ClinicSetup,
    Table,
    add_clear_screenings,
    add_patients,
    clinic_date,
    clinic_setup,
    next_id,
    reset_sequences,
    timeline_template,
)
from tests.perf.smtp_sink import SinkProcess, message_id_of, read_spool, write_spooled

FULL_SIZE = 10_000
WARM_UP = 20
FINISHED = [Reminder.Status.SENT, Reminder.Status.FAILED, Reminder.Status.SKIPPED]


class Worker:
    """``celery -A clinic worker`` as production runs it, one process per core, sending to ``email_url``."""

    def __init__(self, *, email_url: str, log_path: Path, concurrency: int, include: str = "",
                 environ: dict[str, str] | None = None) -> None:
        self.email_url = email_url
        self.log_path = log_path
        self.concurrency = concurrency
        self.include = include
        self.environ = environ or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        env = {**os.environ, "EMAIL_URL": self.email_url, "EMAIL_TIMEOUT": "10", **self.environ}
        command = [
            sys.executable, "-m", "celery", "-A", "clinic", "worker", "--pool=prefork",
            f"--concurrency={self.concurrency}", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-n", f"bench-{uuid.uuid4().hex[:8]}@%h",
        ]
        if self.include:
            command += ["-I", self.include]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


# --- data -----------------------------------------------------------------------------------------


def _treatments(setup: ClinicSetup, count: int, *, ended_at: dt.datetime) -> int:
    """``count`` consenting patients (one in ten reads German), each treated at ``ended_at``; the first treatment's id."""
    version = setup.versions["microneedling"]
    patient_ids = add_patients(setup.clinic, count, seed=3, languages=("en",) * 9 + ("de",))
    screening_ids = add_clear_screenings(patient_ids, version=version, run_by=setup.clinician,
                                         run_at=ended_at - dt.timedelta(days=1),
                                         planned_for=clinic_date(setup.clinic, ended_at - dt.timedelta(minutes=45)))
    first = next_id(Treatment)
    Table(Treatment, ("id", "clinic_id", "patient_id", "protocol_version_id", "screening_id", "clinician_id",
                      "started_at", "ended_at", "areas")).write(
        (first + i, setup.clinic.pk, patient_id, version.pk, screening_ids[i], setup.clinician.pk,
         ended_at - dt.timedelta(minutes=45), ended_at, "Full face")
        for i, patient_id in enumerate(patient_ids)
    )
    reset_sequences(Treatment, Screening)
    return first


def seed_reminders(count: int) -> tuple[int, int]:
    """``count`` scheduled reminders of the microneedling timeline, not due yet; returns the first and last id."""
    setup = clinic_setup("bench-reminders", "Bench Reminder Clinic")
    ended_at = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)
    template = timeline_template(setup.clinic, setup.versions["microneedling"], ended_at=ended_at)
    treatments = math.ceil(count / len(template))
    first_treatment = _treatments(setup, treatments, ended_at=ended_at)
    far = timezone.now() + dt.timedelta(days=3650)  # make_due() sets the real due time
    rows = [
        (first_treatment + i, step, occurrence, ended_at + occurs, far, "scheduled", None, None)
        for i in range(treatments)
        for step, occurrence, occurs, _due in template
    ][:count]
    first = next_id(Reminder)
    Table(Reminder, ("id", *REMINDER_COLUMNS)).write((first + n, *row) for n, row in enumerate(rows))
    reset_sequences(Reminder)
    return first, first + count - 1


def make_due(first: int, last: int, *, at: dt.datetime) -> int:
    return Reminder.objects.filter(pk__gte=first, pk__lte=last).update(due_at=at)


def wait_until_finished(first: int, last: int, *, timeout: float, worker: Worker) -> None:
    rows = Reminder.objects.filter(pk__gte=first, pk__lte=last)
    expected = last - first + 1
    deadline = time.monotonic() + timeout
    while rows.filter(status__in=FINISHED).count() < expected:
        if worker.process is not None and worker.process.poll() is not None:
            raise RuntimeError(f"The Celery worker stopped:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Reminders not all sent after {timeout:.0f} s:\n{worker.log_tail()}")
        time.sleep(0.25)


def reminder_pk(message_id: str) -> int | None:
    # <reminder-{pk}.{treatment}.{step}.{occurrence}@domain>
    if not message_id.startswith("<reminder-"):
        return None
    return int(message_id[len("<reminder-"):].split(".", 1)[0])


# --- the two runs -------------------------------------------------------------------------------------


def run_pipeline(env: BenchEnvironment, count: int, result: Result, log) -> tuple[float, Path, set[int]]:
    """Warm the worker up, then make ``count`` reminders due at once and let the real pipeline send them."""
    warm_first, warm_last = seed_reminders(WARM_UP)
    first, last = seed_reminders(count)
    sink = SinkProcess(env.scratch, "pipeline", spool=True).start()
    worker = Worker(email_url=sink.url, log_path=env.scratch / "worker.log", concurrency=os.cpu_count() or 2).start()
    try:
        make_due(warm_first, warm_last, at=timezone.now())
        dispatch_due_reminders_task.delay()
        wait_until_finished(warm_first, warm_last, timeout=120, worker=worker)
        log(f"  worker warm ({WARM_UP} reminders sent); {count:,} reminders fall due now")
        t0 = timezone.now()
        make_due(first, last, at=t0)
        dispatch_due_reminders_task.delay()
        wait_until_finished(first, last, timeout=max(300.0, count / 10), worker=worker)
    finally:
        worker.stop()
        receipts = sink.stop()
    measured = set(range(first, last + 1))
    arrivals = [(moment, reminder_pk(message_id)) for moment, message_id in receipts]
    arrivals = [(moment, pk) for moment, pk in arrivals if pk in measured]
    rows = Reminder.objects.filter(pk__gte=first, pk__lte=last)
    result.check(f"all {count:,} reminders sent", rows.filter(status=Reminder.Status.SENT).count() == count)
    result.check(f"the server received each of the {count:,} messages exactly once",
                 len(arrivals) == count and len({pk for _, pk in arrivals}) == count)
    seconds = max(moment for moment, _ in arrivals) - t0.timestamp()
    lateness = [moment - t0.timestamp() for moment, _ in arrivals]
    result.line("pipeline", f"{count:,} messages in {seconds:.1f} s = {number(rate(count, seconds))} msg/s "
                            f"(dispatcher task + Celery worker x{worker.concurrency} + SMTP, one reused connection per process)")
    result.line("lateness", f"p50 {percentile(lateness, 0.5):.1f} s, p99 {percentile(lateness, 0.99):.1f} s, "
                            f"max {max(lateness):.1f} s after the due time (all {count:,} due at once; "
                            f"the first arrived after {min(lateness):.2f} s)")
    return seconds, sink.spool_path, measured


def run_plain_loop(env: BenchEnvironment, spool: Path, measured: set[int], result: Result) -> float:
    """The same messages, one smtplib connection, one process."""
    messages = [item for item in read_spool(spool) if reminder_pk(message_id_of(item.data)) in measured]
    sink = SinkProcess(env.scratch, "plain").start()
    try:
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            for item in messages:
                smtp.sendmail(item.sender, item.recipients, item.data)
        seconds = time.perf_counter() - started
    finally:
        receipts = sink.stop()
    result.check("the plain loop's messages all arrived", len(receipts) == len(messages) == len(measured))
    size = sum(len(item.data) for item in messages) / max(len(messages), 1)
    result.line("plain loop", f"{len(messages):,} messages in {seconds:.1f} s = {number(rate(len(messages), seconds))} msg/s "
                              f"(smtplib, one connection; the same messages, {size / 1024:.1f} KiB on average)")
    return seconds


def run_design_ceiling(env: BenchEnvironment, spool: Path, measured: set[int], result: Result, log) -> float:
    """The same messages through a worker whose task only sends finished bytes (``tests.perf.ceiling_tasks``)."""
    ceiling_spool = env.scratch / "ceiling.spool"
    with ceiling_spool.open("wb") as stream:
        count = 0
        for item in read_spool(spool):
            if reminder_pk(message_id_of(item.data)) in measured:
                write_spooled(stream, item)
                count += 1
    done = env.scratch / "ceiling.done"
    done.write_bytes(b"")
    sink = SinkProcess(env.scratch, "ceiling").start()
    worker = Worker(email_url=sink.url, log_path=env.scratch / "ceiling-worker.log",
                    concurrency=os.cpu_count() or 2, include="tests.perf.ceiling_tasks",
                    environ={SPOOL_ENV: str(ceiling_spool), DONE_FILE_ENV: str(done)}).start()
    warm = min(WARM_UP, count)
    try:
        for index in range(warm):  # the worker is up, has read the messages and holds its connection
            send_finished_message.delay(index)
        wait_for_ticks(done, warm, timeout=120, worker=worker)
        started = time.time()
        for index in range(count):  # published one by one, as the dispatcher does
            send_finished_message.delay(index)
        wait_for_ticks(done, warm + count, timeout=max(300.0, count / 10), worker=worker)
    finally:
        worker.stop()
        receipts = sink.stop()
    arrivals = [moment for moment, _message_id in receipts[warm:]]
    result.check("the design ceiling's messages all arrived", len(arrivals) == count == len(measured))
    seconds = max(arrivals) - started
    result.line("design ceiling", f"{count:,} messages in {seconds:.1f} s = {number(rate(count, seconds))} msg/s "
                                f"(the same messages; a Celery task per message, given its number, that only sends "
                                f"its bytes: the most a task-per-row pipeline reaches here)")
    log(f"  design ceiling: {number(rate(count, seconds))} msg/s")
    return seconds


def wait_for_ticks(done: Path, expected: int, *, timeout: float, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while done.stat().st_size < expected:
        if worker.process is not None and worker.process.poll() is not None:
            raise RuntimeError(f"The Celery worker stopped:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done.stat().st_size} of {expected} messages sent after {timeout:.0f} s:\n{worker.log_tail()}")
        time.sleep(0.05)


def run(*, env: BenchEnvironment, scale: float, log=print) -> Result:
    count = max(10, round(FULL_SIZE * scale))
    result = Result("reminders", f"1. Reminder pipeline: {count:,} due reminders", target=0.5)
    pipeline_seconds, spool, measured = run_pipeline(env, count, result, log)
    plain_seconds = run_plain_loop(env, spool, measured, result)
    ceiling_seconds = run_design_ceiling(env, spool, measured, result, log)
    result.ratio = plain_seconds / pipeline_seconds
    result.line("against ceiling", f"design ceiling {plain_seconds / ceiling_seconds:.2f}x the plain loop; "
                                     f"the pipeline reaches {ceiling_seconds / pipeline_seconds:.2f} of the ceiling")
    result.table.append((
        f"Reminder pipeline, {count:,} emails", f"{number(rate(count, pipeline_seconds))} msg/s",
        f"{number(rate(count, plain_seconds))} msg/s (smtplib loop)", f"{result.ratio:.2f}",
    ))
    return result
