"""A local SMTP server (aiosmtpd) that accepts everything, notes when each message arrived, and optionally keeps it.

Runs as its own process (``python -m tests.perf.smtp_sink PORT RECEIPTS [SPOOL]``)
so that neither the Celery worker nor the plain-loop baseline shares a
Python interpreter (and its lock) with the server they are measured against.
It prints ``ready`` once it listens; on SIGTERM it writes the receipts —
``[[unix time, Message-ID], …]`` as JSON — and exits. With a spool path it
appends every message (envelope and bytes) there, so the baseline can send
exactly the same messages again.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class SpooledMessage:
    sender: str
    recipients: list[str]
    data: bytes


def write_spooled(stream: BinaryIO, message: SpooledMessage) -> None:
    envelope = json.dumps({"from": message.sender, "to": message.recipients, "size": len(message.data)}).encode()
    stream.write(envelope + b"\n" + message.data)


def read_spool(path: Path) -> Iterator[SpooledMessage]:
    with path.open("rb") as stream:
        while line := stream.readline():
            envelope = json.loads(line)
            yield SpooledMessage(envelope["from"], envelope["to"], stream.read(envelope["size"]))


def message_id_of(data: bytes) -> str:
    match = MESSAGE_ID.search(data, 0, 16384)  # the headers come first
    return match.group(1).decode() if match else ""


class Sink:
    """aiosmtpd handler: 250 to everything, a receipt per message, and the message itself if spooling."""

    def __init__(self, spool: BinaryIO | None) -> None:
        self.receipts: list[tuple[float, str]] = []
        self.spool = spool

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        data = envelope.original_content or envelope.content
        self.receipts.append((time.time(), message_id_of(data)))
        if self.spool is not None:
            write_spooled(self.spool, SpooledMessage(envelope.mail_from, list(envelope.rcpt_tos), data))
        return "250 OK"


def serve(port: int, receipts_path: Path, spool_path: Path | None) -> None:
    from aiosmtpd.controller import Controller

    spool = spool_path.open("wb") if spool_path else None
    sink = Sink(spool)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()
    if spool is not None:
        spool.close()
    receipts_path.write_text(json.dumps(sink.receipts))


# --- the bench side ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SinkProcess:
    """Start the sink in its own process; ``stop()`` returns its receipts."""

    def __init__(self, directory: Path, name: str, *, spool: bool = False) -> None:
        self.port = free_port()
        self.receipts_path = directory / f"{name}-receipts.json"
        self.spool_path = directory / f"{name}.spool" if spool else None
        self.process: subprocess.Popen | None = None

    def start(self) -> SinkProcess:
        command = [sys.executable, "-m", "tests.perf.smtp_sink", str(self.port), str(self.receipts_path)]
        if self.spool_path:
            command.append(str(self.spool_path))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own module
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError("The SMTP sink did not start")
        return self

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> list[tuple[float, str]]:
        if self.process is None:
            return []
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self.process = None
        return [tuple(item) for item in json.loads(self.receipts_path.read_text())]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
