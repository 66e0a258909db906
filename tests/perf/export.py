"""Benchmark 3: the outcome log to CSV through the streaming export, against PostgreSQL's COPY of the same columns.

The export is what an auditor downloads: ``patients.exports.stream_export``
over the scoped queryset, enriched batch by batch with applications and
adverse events, written as RFC 4180 CSV with formula neutralising, hashed for
the manifest, logged. The identified variant is compared with COPY because
it has the same columns a SELECT can produce; the de-identified default
(HMAC pseudonyms, shifted dates) is measured too.

Each run happens in a fresh process (``tests.perf.export_probe``) so that the
memory high-water mark is the export's own.
"""

from __future__ import annotations

import json
import subprocess
import sys

from django.conf import settings
from django.test import override_settings

from patients.exports import ExportRequest, start_export
from patients.models import Export
from tests.perf.report import Result, number, rate
from tests.perf.seed import large_dataset

FULL_ROWS = 1_000_000
OUTCOMES_PER_PATIENT = 10
MEMORY_TARGET_MIB = 200


def probe(mode: str, pk: int) -> dict:
    completed = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "tests.perf.export_probe", mode, str(pk)], cwd=settings.BASE_DIR,
        capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"export probe {mode} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def prepare(dataset, *, identified: bool) -> Export:
    """The export job as the admin creates it (marked streamed: the download sends it as it is written)."""
    request = ExportRequest(
        clinic=dataset.clinic, identified=identified,
        date_handling=Export.DateHandling.ACTUAL if identified else Export.DateHandling.SHIFTED,
    )
    with override_settings(AFTERCARE_EXPORT_INLINE_MAX_ROWS=10 * FULL_ROWS):
        return start_export(user=dataset.auditor, request=request)


def mib(kib: int) -> float:
    return kib / 1024


def describe(figures: dict) -> str:
    return (f"{figures['rows']:,} rows in {figures['seconds']:.1f} s = {number(rate(figures['rows'], figures['seconds']))} "
            f"rows/s, {figures['bytes'] / 2**20:,.0f} MiB")


def bracketed(dataset, *, identified: bool, before: dict) -> tuple[dict, dict, float]:
    """Run one export, then the baseline again: the ratio uses the mean of the baselines either side of it.

    Other work on the machine comes and goes over a run of minutes; a
    baseline on each side of the export keeps it from skewing the ratio.
    """
    figures = probe("export", prepare(dataset, identified=identified).pk)
    after = probe("copy", dataset.clinic.pk)
    baseline_seconds = (before["seconds"] + after["seconds"]) / 2
    return figures, after, baseline_seconds / figures["seconds"]


def run(*, env, scale: float, log=print) -> Result:
    dataset = large_dataset(patients=max(100, round(FULL_ROWS * scale / OUTCOMES_PER_PATIENT)), log=log)
    rows = dataset.outcomes
    result = Result("export", f"3. Export: {rows:,} outcome rows to CSV", target=0.25)
    first = probe("copy", dataset.clinic.pk)
    identified, second, result.ratio = bracketed(dataset, identified=True, before=first)
    deidentified, third, deidentified_ratio = bracketed(dataset, identified=False, before=second)
    baselines = (first, second, third)
    copy_name = "COPY ... TO STDOUT WITH CSV, psycopg 3" if env.on_postgres else "the same SELECT via sqlite3 + csv"
    for label, figures in (("export", identified), ("de-identified", deidentified)):
        result.line(label, f"{describe(figures)}; memory {mib(figures['rss_before_kib']):.0f} MiB at start, "
                           f"peak {mib(figures['rss_peak_kib']):.0f} MiB while it ran")
    seconds = ", ".join(f"{baseline['seconds']:.1f}" for baseline in baselines)
    baseline_rate = rate(rows, sum(baseline["seconds"] for baseline in baselines) / len(baselines))
    result.line("baseline", f"{first['rows']:,} rows in {seconds} s (before, between and after the exports) = "
                            f"{number(baseline_rate)} rows/s on average, {first['bytes'] / 2**20:,.0f} MiB ({copy_name}); "
                            f"peak {mib(max(b['rss_peak_kib'] for b in baselines)):.0f} MiB")
    result.check(f"the exports and the baseline hold the same {rows:,} rows",
                 identified["rows"] == deidentified["rows"] == rows and all(b["rows"] == rows for b in baselines)
                 and identified["status"] == deidentified["status"] == Export.Status.DONE)
    peak = max(mib(identified["rss_peak_kib"]), mib(deidentified["rss_peak_kib"]))
    result.goal(f"peak memory of the export process under {MEMORY_TARGET_MIB} MiB: {peak:.0f} MiB", peak < MEMORY_TARGET_MIB)
    result.line("de-identified ratio", f"{deidentified_ratio:.2f} (the de-identified export against the baselines either side)")
    baseline_text = f"{number(baseline_rate)} rows/s ({'COPY' if env.on_postgres else 'sqlite3 + csv'})"
    for what, figures, ratio in (
        (f"CSV export, {rows:,} rows", identified, result.ratio), ("… de-identified (default)", deidentified, deidentified_ratio)
    ):
        speed = f"{number(rate(rows, figures['seconds']))} rows/s, peak {mib(figures['rss_peak_kib']):.0f} MiB"
        result.table.append((what, speed, baseline_text, f"{ratio:.2f}"))
    return result
