"""A web or worker process does not load the heavy libraries only some pages need.

SciPy's statistics, matplotlib, openpyxl and fhir.resources cost about 180 MB
and a second and a half of start-up together; they are imported by the first
split-face test, chart, XLSX or FHIR export instead. This keeps a CSV export's
process well under its 200 MB target (tests/perf, benchmark 3).
"""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings

HEAVY = ("scipy", "matplotlib", "openpyxl", "fhir")
PROBE = (
    "import sys, django; django.setup(); "
    "from django.urls import resolve; resolve('/admin/'); "  # loads every admin and API module
    "import patients.exports, patients.charts, patients.review; "
    f"print(' '.join(sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r}))))"
)


def test_it_starts_without_the_heavy_libraries():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic.settings"}
    completed = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", PROBE], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=True,
    )
    assert completed.stdout.strip() == ""
