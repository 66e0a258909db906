"""One SMTP connection per worker process, reused for the reminders it sends.

Opening a connection costs a TCP handshake, the greeting, EHLO (and STARTTLS and
AUTH in production) before the first byte of a message: more than sending a
short reminder does. A worker process therefore keeps its connection between
send tasks, with limits that keep a reused connection healthy:

* it is closed after ``AFTERCARE_SMTP_REUSE_IDLE_SECONDS`` without a message
  (mail servers drop idle clients; we do not wait to be dropped), and after
  ``AFTERCARE_SMTP_REUSE_MAX_MESSAGES`` messages (servers limit messages per
  connection);
* it is closed after any error, so the next message starts from a known state;
* when a *reused* connection turns out to be gone (the server closed it while
  idle), the message is sent once more on a fresh connection. It had not been
  accepted — the server's 250 is the acceptance, and it never came — so this is
  the same resend the retry would make later, with the same ``Message-ID``.

Only the SMTP backend is reused. The file backend writes one file per
connection, and a person reading ``var/mail/`` expects one file per email.
The connection is opened lazily in the process that sends, never in the
parent of a prefork pool, so no socket is shared across ``fork()``; under a
thread pool each thread keeps its own.
"""

from __future__ import annotations

import contextlib
import smtplib
import threading
import time
from typing import Any

from django.conf import settings
from django.core.mail import get_connection

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# The server closed (or reset) the connection before answering: nothing was accepted.
GONE = (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError)


class ReusedConnection:
    """The process's SMTP connection: ``send(message)`` opens, reuses and recycles it."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._backend: Any = None
        self._sent = 0
        self._last_used = 0.0

    @staticmethod
    def applies() -> bool:
        return settings.EMAIL_BACKEND == SMTP_BACKEND

    def send(self, message: Any) -> None:
        """Send ``message`` (a Django ``EmailMessage``); raises what the server or the network raised.

        After any failure the connection is closed: the next message starts on a fresh one.
        """
        reused = self._backend is not None and self._fresh_enough()
        if not reused:
            self.close()
            self._open()
        try:
            try:
                self._send_on_current(message)
            except GONE:
                if not reused:
                    raise
                self.close()
                self._open()
                self._send_on_current(message)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._backend is not None:
            backend, self._backend = self._backend, None
            # Closing a broken connection may fail; it is dropped either way.
            with contextlib.suppress(Exception):
                backend.close()

    def _fresh_enough(self) -> bool:
        idle = self._clock() - self._last_used
        return idle < settings.AFTERCARE_SMTP_REUSE_IDLE_SECONDS and self._sent < settings.AFTERCARE_SMTP_REUSE_MAX_MESSAGES

    def _open(self) -> None:
        backend = get_connection(fail_silently=False)
        backend.open()
        self._backend, self._sent = backend, 0

    def _send_on_current(self, message: Any) -> None:
        message.connection = self._backend
        try:
            message.send(fail_silently=False)
        finally:
            message.connection = None
        self._sent += 1
        self._last_used = self._clock()


_local = threading.local()


def process_connection() -> ReusedConnection:
    """This process's (this thread's, under a thread pool) reused connection."""
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = ReusedConnection()
    return connection


def send_on_process_connection(message: Any) -> None:
    """Send over this process's reused SMTP connection, or over a connection of its own for other backends."""
    if ReusedConnection.applies():
        process_connection().send(message)
    else:
        message.send(fail_silently=False)
