"""A worker process reuses one SMTP connection, recycles it when it must, and never loses or doubles a message."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core.mail import EmailMessage

from patients.mail_connection import ReusedConnection, send_on_process_connection
from tests.reliability.harness import free_port

SMTP = "django.core.mail.backends.smtp.EmailBackend"


class Recorder:
    """Accepts every message (or answers ``reply``) and notes the connection (client port) it came on."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, str]] = []
        self.reply = "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        if self.reply.startswith("250"):
            self.messages.append((session.peer[1], envelope.rcpt_tos[0]))
        return self.reply

    @property
    def connections(self) -> int:
        return len({port for port, _ in self.messages})

    @property
    def recipients(self) -> list[str]:
        return [recipient for _, recipient in self.messages]


@pytest.fixture
def server():
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    recorder.controller = controller
    yield recorder
    recorder.controller.stop()


@pytest.fixture
def smtp_settings(settings, server):
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.AFTERCARE_SMTP_REUSE_IDLE_SECONDS = 30
    settings.AFTERCARE_SMTP_REUSE_MAX_MESSAGES = 100
    return settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(number: int) -> EmailMessage:
    return EmailMessage(subject="Reminder", body="Tonight: serum.", from_email="clinic@example.org",
                        to=[f"patient{number}@example.org"])


@pytest.fixture
def connection():
    reused = ReusedConnection(clock=Clock())
    yield reused
    reused.close()


def test_messages_share_one_connection(smtp_settings, server, connection):
    for number in range(5):
        connection.send(message(number))
    assert server.recipients == [f"patient{number}@example.org" for number in range(5)]
    assert server.connections == 1


def test_an_idle_connection_is_replaced_before_the_server_drops_it(smtp_settings, server, connection):
    connection.send(message(1))
    connection._clock.now += 29
    connection.send(message(2))
    connection._clock.now += 31
    connection.send(message(3))
    assert server.recipients == ["patient1@example.org", "patient2@example.org", "patient3@example.org"]
    assert server.connections == 2


def test_a_connection_is_recycled_after_the_message_limit(smtp_settings, server, connection):
    smtp_settings.AFTERCARE_SMTP_REUSE_MAX_MESSAGES = 3
    for number in range(7):
        connection.send(message(number))
    assert len(server.recipients) == 7
    assert server.connections == 3


def test_no_reuse_when_the_idle_limit_is_zero(smtp_settings, server, connection):
    smtp_settings.AFTERCARE_SMTP_REUSE_IDLE_SECONDS = 0
    for number in range(3):
        connection.send(message(number))
    assert server.connections == 3


def test_a_reused_connection_the_server_closed_is_replaced_and_the_message_sent_once(smtp_settings, server, connection):
    connection.send(message(1))
    port = server.controller.port
    server.controller.stop()  # the server goes away, taking the idle connection with it
    server.controller = Controller(server, hostname="127.0.0.1", port=port)  # and comes back
    server.controller.start()
    connection.send(message(2))
    assert server.recipients == ["patient1@example.org", "patient2@example.org"]
    assert server.connections == 2


def test_a_fresh_connection_that_fails_raises_instead_of_trying_again(smtp_settings, server, connection):
    server.controller.stop()
    with pytest.raises(OSError):
        connection.send(message(1))
    server.controller = Controller(server, hostname="127.0.0.1", port=smtp_settings.EMAIL_PORT)
    server.controller.start()
    connection.send(message(2))
    assert server.recipients == ["patient2@example.org"]


@pytest.fixture
def process_connection():
    from patients import mail_connection

    mail_connection.process_connection().close()
    yield
    mail_connection.process_connection().close()


def test_after_a_refusal_the_next_message_starts_on_a_new_connection(smtp_settings, server, process_connection):
    send_on_process_connection(message(1))
    server.reply = "550 5.1.1 No such user here"
    with pytest.raises(smtplib.SMTPDataError):
        send_on_process_connection(message(2))
    server.reply = "250 OK"
    send_on_process_connection(message(3))
    assert server.recipients == ["patient1@example.org", "patient3@example.org"]
    assert server.connections == 2


def test_the_file_backend_is_not_held_open(settings, tmp_path, process_connection):
    # A person reading var/mail/ expects each email in a file of its own, written when it was sent.
    from patients import mail_connection

    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    for number in range(3):
        send_on_process_connection(message(number))
    written = "".join(path.read_text() for path in tmp_path.iterdir())
    assert [f"patient{number}@example.org" in written for number in range(3)] == [True] * 3
    assert mail_connection.process_connection()._backend is None


def test_each_thread_of_a_thread_pool_keeps_its_own_connection():
    import threading

    from patients.mail_connection import process_connection

    seen = []
    thread = threading.Thread(target=lambda: seen.append(process_connection()))
    thread.start()
    thread.join()
    assert seen[0] is not process_connection()
    assert process_connection() is process_connection()
