"""Running an export in a test and reading it back."""

from __future__ import annotations

import csv
import io

from patients.exports import ExportRequest, start_export, stream_export


def run_streamed(user, clinic, **options):  # noqa: ANN001, ANN201 - returns (export, bytes)
    """Start an export as ``user`` and collect its streamed bytes."""
    export = start_export(user=user, request=ExportRequest(clinic=clinic, **options))
    assert export.streamed
    body = b"".join(stream_export(export))
    export.refresh_from_db()
    return export, body


def csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))
