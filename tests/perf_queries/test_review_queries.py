"""The protocol review page reads the per-treatment measures once, not once for the overall and again per version.

At a million outcome assessments that read is most of the page's time (tests/perf, benchmark 4).
"""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from patients.review import ReviewFilters, protocol_report
from protocols.models import Protocol


def test_the_protocol_report_measures_each_treatment_once(db, busy_clinic):
    protocol = Protocol.objects.get(clinic__slug="busy", procedure="microneedling")
    with CaptureQueriesContext(connection) as queries:
        report = protocol_report(user=busy_clinic, protocol=protocol, filters=ReviewFilters(), now=timezone.now())
    per_unit_scores = [query["sql"] for query in queries.captured_queries if 'AS "peak"' in query["sql"]]
    assert len(per_unit_scores) == 1
    assert report.overall.treatments == 3
    assert [version.treatments for version in report.versions] == [3]
