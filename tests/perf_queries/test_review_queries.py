"""The protocol review page reads the outcomes once: per version, the overall row put together from those.

At a million outcome assessments these reads are most of the page's time (tests/perf, benchmark 4).
"""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from patients.review import ReviewFilters, protocol_report
from protocols.models import Protocol


def test_the_protocol_report_reads_the_outcomes_once(db, busy_clinic):
    protocol = Protocol.objects.get(clinic__slug="busy", procedure="microneedling")
    with CaptureQueriesContext(connection) as queries:
        report = protocol_report(user=busy_clinic, protocol=protocol, filters=ReviewFilters(), now=timezone.now())
    statements = [query["sql"] for query in queries.captured_queries]
    assert len([sql for sql in statements if 'AS "peak"' in sql]) == 1  # the per-unit measures
    assert len([sql for sql in statements if 'AVG("patients_outcomeassessment"."erythema")' in sql]) == 1  # the curve
    assert report.overall.treatments == 3
    assert [version.treatments for version in report.versions] == [3]
