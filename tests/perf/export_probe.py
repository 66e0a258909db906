"""One export (or the COPY baseline) in a fresh process, so its peak memory is its own.

``python -m tests.perf.export_probe export EXPORT_ID`` streams a prepared
export through ``patients.exports.stream_export`` (what the admin's
download sends); ``python -m tests.perf.export_probe copy CLINIC_ID`` runs
PostgreSQL's ``COPY (SELECT …) TO STDOUT WITH CSV`` of the same columns (on
SQLite: the same SELECT through the DB-API and the ``csv`` module). Either
prints one JSON line: rows, bytes, seconds, the resident memory before it
started and the high-water mark while it ran.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    """Restart the kernel's resident-memory high-water mark (Linux ≥ 4.0), so the peak is the run's, not the imports'."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, never reset


def stream(export_id: int) -> dict:
    from patients.exports import stream_export
    from patients.models import Export

    export = Export.objects.select_related("clinic", "requested_by").get(pk=export_id)
    size = 0
    started = time.perf_counter()
    for chunk in stream_export(export):
        size += len(chunk)
    seconds = time.perf_counter() - started
    export.refresh_from_db()
    return {"rows": export.row_count, "bytes": size, "seconds": seconds, "status": export.status}


def copy(clinic_id: int) -> dict:
    from django.db import connection

    from tests.perf.export_sql import outcome_log_select

    sql = outcome_log_select(clinic_id=clinic_id, vendor=connection.vendor)
    started = time.perf_counter()
    if connection.vendor == "postgresql":
        size = lines = 0
        with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as out:
            for block in out:
                size += len(block)
                lines += bytes(block).count(b"\n")
        rows = lines - 1
    else:
        rows, size = _sqlite_csv(sql)
    return {"rows": rows, "bytes": size, "seconds": time.perf_counter() - started}


def _sqlite_csv(sql: str) -> tuple[int, int]:
    import csv
    import io

    from django.db import connection

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    rows = size = 0
    with connection.cursor() as cursor:
        cursor.execute(sql)
        writer.writerow([column[0] for column in cursor.description])
        while batch := cursor.fetchmany(2000):
            writer.writerows(batch)
            rows += len(batch)
            size += len(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    return rows, size + len(buffer.getvalue().encode())


def main(mode: str, pk: int) -> None:
    import django

    django.setup()
    before = resident_kib()
    reset = reset_peak()
    figures = stream(pk) if mode == "export" else copy(pk)
    print(json.dumps({**figures, "rss_before_kib": before, "rss_peak_kib": peak_kib(), "peak_is_the_run_s": reset}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
