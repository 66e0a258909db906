"""Benchmark 2: recording treatments through the service against a raw ``bulk_create`` of the same rows.

``patients.treatments.record_treatment`` is what the admin and the API call:
it checks the clinician's role, the screening and the protocol version,
writes the treatment (and its history row), computes the timeline in the
patient's time zone, inserts the reminder rows and appends to the access log,
one transaction per treatment. The example microneedling protocol gives 13
reminder rows per treatment.

The baseline writes the very rows the service wrote (the treatments and their
reminder rows, copied onto other patients) with two ``bulk_create`` calls in
one transaction: what the database takes when nothing is checked or logged.
Service and baseline run in alternating halves, so that other work on the
machine weighs on both alike.
The number of queries per treatment is measured for 10 and for 100
treatments and must be the same.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from patients.models import Patient, Reminder, Screening, Treatment
from patients.treatments import record_treatment
from tests.perf.report import Result, number, rate
from tests.perf.seed import ClinicSetup, add_clear_screenings, add_patients, clinic_date, clinic_setup

FULL_SIZE = 10_000
QUERY_PROBES = (10, 100)
BULK_BATCH = 2000
TREATMENT_FIELDS = ("protocol_version_id", "clinician_id", "started_at", "ended_at", "areas", "device", "status", "clinic_id")
#: How long a bench procedure lasts: it starts this long before it ends.
PROCEDURE_LENGTH = dt.timedelta(minutes=45)
REMINDER_FIELDS = ("step_id", "occurrence", "occurs_at", "due_at", "status", "last_error")


def _patients_with_screenings(setup: ClinicSetup, count: int, *, ended_at: dt.datetime) -> list[tuple[Patient, Screening]]:
    """``count`` new patients, each with a clear screening for the microneedling protocol from the day before."""
    version = setup.versions["microneedling"]
    patient_ids = add_patients(setup.clinic, count, seed=5)
    screening_ids = add_clear_screenings(patient_ids, version=version, run_by=setup.clinician,
                                         run_at=ended_at - dt.timedelta(days=1),
                                         planned_for=clinic_date(setup.clinic, ended_at - PROCEDURE_LENGTH))
    screening_of = {
        screening.patient_id: screening
        for screening in Screening.objects.filter(pk__gte=screening_ids[0], pk__lte=screening_ids[-1])
    }
    patients = Patient.objects.select_related("clinic").filter(pk__gte=patient_ids[0], pk__lte=patient_ids[-1])
    return [(patient, screening_of[patient.pk]) for patient in patients.order_by("pk")]


def _record(setup: ClinicSetup, pairs: list, *, clinician, ended_at: dt.datetime) -> None:
    version = setup.versions["microneedling"]
    for patient, screening in pairs:
        record_treatment(
            patient=patient, protocol_version=version, screening=screening, clinician=clinician,
            started_at=ended_at - PROCEDURE_LENGTH, ended_at=ended_at, areas="Full face", device="Bench device",
        )


def query_probe(setup: ClinicSetup, pairs: list, *, ended_at: dt.datetime) -> list[int]:
    """Queries of each ``record_treatment`` call, for a clinician freshly loaded (as at the start of a request)."""
    clinician = get_user_model().objects.get(pk=setup.clinician.pk)
    counts = []
    for pair in pairs:
        with CaptureQueriesContext(connection) as queries:
            _record(setup, [pair], clinician=clinician, ended_at=ended_at)
        counts.append(len(queries.captured_queries))
    return counts


def _copies(service_treatments: list[int], pairs: list) -> list[tuple[Treatment, list[dict]]]:
    """The service's treatments (unsaved copies onto other patients) with their reminder rows' fields."""
    sources = list(Treatment.objects.filter(pk__in=service_treatments).order_by("pk").values("pk", *TREATMENT_FIELDS))
    reminders = defaultdict(list)
    for row in Reminder.objects.filter(treatment__in=service_treatments).values("treatment_id", *REMINDER_FIELDS):
        reminders[row.pop("treatment_id")].append(row)
    return [
        (Treatment(patient=patient, screening=screening, **{k: v for k, v in source.items() if k != "pk"}),
         reminders[source["pk"]])
        for source, (patient, screening) in zip(sources, pairs, strict=True)
    ]


def bulk_copy(service_treatments: list[int], pairs: list) -> float:
    """``bulk_create`` the service's treatments and reminder rows again, onto other patients; returns seconds."""
    copies = _copies(service_treatments, pairs)
    started = time.perf_counter()
    with transaction.atomic():
        treatments = Treatment.objects.bulk_create([copy for copy, _rows in copies], batch_size=BULK_BATCH)
        Reminder.objects.bulk_create(
            [Reminder(treatment_id=copy.pk, **row) for copy, rows in zip(treatments, (r for _c, r in copies), strict=True)
             for row in rows],
            batch_size=BULK_BATCH,
        )
    return time.perf_counter() - started


def per_transaction_copy(service_treatments: list[int], pairs: list) -> float:
    """The same rows, one transaction per treatment (its INSERT, its reminders' INSERT, the commit); seconds.

    What recording one treatment at a time costs before any check, history
    row or log entry: the part of the gap to ``bulk_create`` that comes from
    a clinic recording treatments one by one.
    """
    copies = _copies(service_treatments, pairs)
    started = time.perf_counter()
    for copy, rows in copies:
        with transaction.atomic():
            copy.save(force_insert=True)
            Reminder.objects.bulk_create([Reminder(treatment_id=copy.pk, **row) for row in rows])
    return time.perf_counter() - started


def timed_service(setup: ClinicSetup, pairs: list, *, ended_at: dt.datetime) -> tuple[float, list[int]]:
    """Record a treatment for each (patient, screening) through the service; seconds and the new treatments' ids."""
    first = Treatment.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    started = time.perf_counter()
    _record(setup, pairs, clinician=setup.clinician, ended_at=ended_at)
    seconds = time.perf_counter() - started
    return seconds, list(Treatment.objects.filter(pk__gt=first).order_by("pk").values_list("pk", flat=True))


def interleaved(setup: ClinicSetup, count: int, *, ended_at: dt.datetime) -> tuple[float, float, float, list[int]]:
    """The service, the baseline and the per-transaction copy in alternating halves.

    So that other work on the machine weighs on all three alike. Returns their
    seconds and the service's treatments.
    """
    service_seconds = bulk_seconds = per_transaction_seconds = 0.0
    treatments: list[int] = []
    for size in (count // 2, count - count // 2):
        service_pairs = _patients_with_screenings(setup, size, ended_at=ended_at)
        bulk_pairs = _patients_with_screenings(setup, size, ended_at=ended_at)
        one_by_one_pairs = _patients_with_screenings(setup, size, ended_at=ended_at)
        seconds, recorded = timed_service(setup, service_pairs, ended_at=ended_at)
        service_seconds += seconds
        bulk_seconds += bulk_copy(recorded, bulk_pairs)
        per_transaction_seconds += per_transaction_copy(recorded, one_by_one_pairs)
        treatments += recorded
    return service_seconds, bulk_seconds, per_transaction_seconds, treatments


def describe_queries(result: Result, counts: dict[int, list[int]]) -> int | None:
    """Check and print the queries of each call at both probe sizes; the steady per-treatment count."""
    steady = {size: sorted(set(per_call[1:])) for size, per_call in counts.items()}
    per_treatment = steady[QUERY_PROBES[0]]
    result.check("queries per treatment are the same for 10 and for 100 treatments",
                 len(per_treatment) == 1 and all(value == per_treatment for value in steady.values()))
    if len(per_treatment) != 1:
        result.line("queries", f"per call: {counts}")
        return None
    totals = ", ".join(f"{size} treatments: {sum(per_call):,} queries" for size, per_call in counts.items())
    first_extra = counts[QUERY_PROBES[0]][0] - per_treatment[0]
    result.line("queries", f"{per_treatment[0]} per treatment ({totals}; the first call of a request adds "
                           f"{first_extra} for the clinician's roles and, once per process, the version's steps)")
    return per_treatment[0]


def run(*, env, scale: float, log=print) -> Result:
    count = max(20, round(FULL_SIZE * scale))
    result = Result("timeline", f"2. Timeline creation: {count:,} treatments", target=0.3)
    setup = clinic_setup("bench-timeline", "Bench Timeline Clinic")
    ended_at = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)
    counts = {
        size: query_probe(setup, _patients_with_screenings(setup, size, ended_at=ended_at), ended_at=ended_at)
        for size in QUERY_PROBES
    }
    per_treatment = describe_queries(result, counts)
    service_seconds, bulk_seconds, per_transaction_seconds, treatments = interleaved(setup, count, ended_at=ended_at)
    rows = Reminder.objects.filter(treatment__in=treatments).count()
    result.check(f"the service recorded {count:,} treatments with {rows:,} reminder rows", len(treatments) == count and rows > 0)
    result.line("service", f"{count:,} treatments in {service_seconds:.1f} s = {number(rate(count, service_seconds))}/s "
                           f"({rows / count:.0f} reminder rows each; record_treatment, one transaction per treatment)")
    result.line("bulk_create", f"{count:,} treatments in {bulk_seconds:.1f} s = {number(rate(count, bulk_seconds))}/s "
                               f"(the same treatment and reminder rows, batches of {BULK_BATCH}, one transaction per half)")
    result.line("one by one", f"{count:,} treatments in {per_transaction_seconds:.1f} s = "
                              f"{number(rate(count, per_transaction_seconds))}/s (the same rows, one transaction per "
                              f"treatment, nothing checked or logged: {bulk_seconds / per_transaction_seconds:.2f}x bulk_create; "
                              f"the service reaches {per_transaction_seconds / service_seconds:.2f} of it)")
    result.ratio = bulk_seconds / service_seconds
    result.table.append((
        f"Recording {count:,} treatments", f"{number(rate(count, service_seconds))} treatments/s, {per_treatment} queries each",
        f"{number(rate(count, bulk_seconds))}/s (bulk_create)", f"{result.ratio:.2f}",
    ))
    return result
