"""Benchmark 1's design ceiling: a Celery task per message that does nothing but send its finished bytes.

DESIGN.md fixes the shape of the reminder pipeline: the dispatcher queues one
send task per row and the worker acknowledges it late. This task keeps that
shape and drops everything Aftercare does for an email (claiming the row,
re-checking the patient, the links, rendering, MIME, recording the result), so
its rate is the most any pipeline of that shape can reach on the machine: the
ceiling against which the real pipeline's rate is read.

The benchmark starts a worker with ``-I tests.perf.ceiling_tasks``; production
workers never import this module.
"""

from __future__ import annotations

import os
import smtplib
from pathlib import Path

from celery import shared_task
from django.conf import settings

from tests.perf.smtp_sink import SpooledMessage, read_spool

SPOOL_ENV = "AFTERCARE_BENCH_CEILING_SPOOL"
DONE_FILE_ENV = "AFTERCARE_BENCH_CEILING_DONE"

_smtp: smtplib.SMTP | None = None
_messages: list[SpooledMessage] = []


@shared_task(name="perf.send_finished_message", acks_late=True, ignore_result=True)
def send_finished_message(index: int) -> None:
    """Send the ``index``-th finished message over this process's one SMTP connection, then tick the done file.

    The task carries a number, as the pipeline's carries a row id; the
    messages are read once per process from the spool the benchmark wrote.
    """
    global _smtp  # noqa: PLW0603 - one connection per worker process, as the pipeline reuses one
    if not _messages:
        _messages.extend(read_spool(Path(os.environ[SPOOL_ENV])))
    if _smtp is None:
        _smtp = smtplib.SMTP(settings.EMAIL_HOST, settings.EMAIL_PORT, timeout=settings.EMAIL_TIMEOUT)
    message = _messages[index]
    _smtp.sendmail(message.sender, message.recipients, message.data)
    # One byte per message sent: the benchmark watches the file's size to know when all went out.
    with open(os.environ[DONE_FILE_ENV], "ab") as done:
        done.write(b".")
