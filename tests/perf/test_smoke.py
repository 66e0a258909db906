"""The benchmarks run end to end at a tiny scale, so ``make test`` notices when their code rots.

Nothing is timed here: the run must finish, every check of every benchmark
must pass (each message arrived once, the query counts did not grow, the
export and its baseline hold the same rows), and the summary must name all four.
It uses the same services the test run does, in a database of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow


def test_it_runs_every_benchmark_at_a_tiny_scale():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AFTERCARE_TEST", "PYTEST"))}
    env.update(AFTERCARE_BENCH_DB_NAME=f"aftercare_bench_smoke_{os.getpid()}", AFTERCARE_BENCH_REDIS_DB="12")
    completed = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "tests.perf", "--scale", "0.001"], cwd=settings.BASE_DIR, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-5000:]
    for title in ("1. Reminder pipeline", "2. Timeline creation", "3. Export", "4. Pages"):
        assert f"== {title}" in output
    assert "FAIL" not in output
    assert "| Reminder pipeline, 10 emails |" in output
