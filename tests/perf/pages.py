"""Benchmark 4: admin pages and API lists over 100,000 patients and 1,000,000 outcome assessments.

A clinic admin signs in and passes two-factor verification (the clinic
requires it) through the real views; then each page is requested 50 times
with Django's test client, in process, and timed: the patient changelist, one
patient's page, the protocol review page and the API list endpoints. The
number of queries a list page runs is counted at two page sizes and must be
the same: a list whose queries grow with its rows has an N+1.

The baseline, measured in the same run, is what a page cannot avoid: the
median of ``/healthz`` (the middleware, session and a database round trip)
plus the page's own SELECT statements replayed with a raw cursor. The ratio
is that floor over the page's median.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.settings import api_settings

from patients.models import Patient
from tests.perf.report import Result, median, percentile
from tests.perf.seed import large_dataset

FULL_PATIENTS = 100_000
FULL_REQUESTS = 50
ADMIN_PAGE_SIZES = (25, 100)
API_PAGE_SIZES = (10, 50)


@dataclass(frozen=True)
class Page:
    name: str
    url: str
    #: how to change its page size (None: not a list)
    sized: Callable[[int], object] | None = None
    sizes: tuple[int, int] | None = None


@contextmanager
def admin_page_size(model: type, size: int) -> Iterator[None]:
    model_admin = admin.site._registry[model]
    previous = model_admin.list_per_page
    model_admin.list_per_page = size
    try:
        yield
    finally:
        model_admin.list_per_page = previous


@contextmanager
def api_page_size(size: int) -> Iterator[None]:
    # Every list endpoint paginates with the class REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] names.
    paginator = api_settings.DEFAULT_PAGINATION_CLASS
    previous = paginator.page_size
    paginator.page_size = size
    try:
        yield
    finally:
        paginator.page_size = previous


def pages_for(dataset) -> list[Page]:
    review = f"/admin/patients/outcomeassessment/review/protocol/{dataset.review_protocol.pk}/"
    api = [
        Page(f"API {name}", f"/api/v1/{name}/", api_page_size, API_PAGE_SIZES)
        for name in ("patients", "treatments", "outcomes", "reminders", "screenings", "adverse-events")
    ]
    return [
        Page("patient changelist", "/admin/patients/patient/", lambda size: admin_page_size(Patient, size), ADMIN_PAGE_SIZES),
        Page("patient page", f"/admin/patients/patient/{dataset.sample_patient_id}/change/"),
        Page("protocol review", review),
        *api,
    ]


def signed_in_client(user) -> Client:
    """A session that passed the password (forced) and the two-factor code (through the verify view)."""
    client = Client()
    client.force_login(user)
    for _attempt in range(2):
        device = TOTPDevice.objects.get(user=user, confirmed=True)
        code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=0):0{device.digits}d}"
        if client.post("/admin/two-factor/verify/", {"code": code, "next": "/admin/"}).status_code == 302:
            return client
        # A code is accepted once (django-otp): an earlier run in this time step used it. Wait for the next one.
        time.sleep(device.step - time.time() % device.step + 1)
    raise RuntimeError("Two-factor verification failed")


def timed_requests(client: Client, url: str, count: int) -> tuple[list[float], int]:
    """Seconds of each of ``count`` requests (after one untimed warm-up), and the last status."""
    status = client.get(url).status_code
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url)
        timings.append(time.perf_counter() - started)
        status = response.status_code
    return timings, status


def queries_of(client: Client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    return [query["sql"] for query in captured.captured_queries]


def sql_floor(statements: list[str], *, repeats: int = 5) -> float:
    """Median seconds to run a page's SELECT statements again with a raw cursor (writes are not replayed)."""
    selects = [sql for sql in statements if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for sql in selects:
                cursor.execute(sql)
                cursor.fetchall()
        timings.append(time.perf_counter() - started)
    return median(timings)


def measure(page: Page, client: Client, requests: int, health: float, result: Result) -> None:
    timings, status = timed_requests(client, page.url, requests)
    statements = queries_of(client, page.url)
    floor = health + sql_floor(statements)
    mid, p95 = median(timings), percentile(timings, 0.95)
    counts = ""
    if page.sized is not None:
        per_size = {}
        for size in page.sizes:
            with page.sized(size):
                per_size[size] = len(queries_of(client, page.url))
        same = len(set(per_size.values())) == 1
        sizes = " and at ".join(map(str, page.sizes))
        counts = (f"{per_size[page.sizes[0]]} queries at {sizes} rows" if same
                  else " / ".join(f"{n} queries at {size} rows" for size, n in per_size.items()))
        result.check(f"{page.name}: as many queries at {sizes} rows ({counts})", same)
    result.check(f"{page.name}: HTTP 200", status == 200)
    queries = counts or f"{len(statements)} queries"
    result.line(page.name, f"median {mid * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms; {queries}; "
                           f"floor {floor * 1000:.1f} ms; ratio {floor / mid:.2f}")
    result.table.append((page.name, f"{mid * 1000:.0f} ms (p95 {p95 * 1000:.0f} ms), {queries}",
                         f"{floor * 1000:.1f} ms", f"{floor / mid:.2f}"))


def run(*, env, scale: float, log=print) -> Result:
    dataset = large_dataset(patients=max(100, round(FULL_PATIENTS * scale)), log=log)
    requests = FULL_REQUESTS if scale >= 0.1 else 5
    result = Result("pages", f"4. Pages: {dataset.patients:,} patients, {dataset.outcomes:,} outcome assessments, "
                              f"{requests} requests each")
    client = signed_in_client(dataset.clinic_admin)
    health_timings, health_status = timed_requests(client, "/healthz", requests)
    health = median(health_timings)
    result.check("/healthz: HTTP 200", health_status == 200)
    result.line("/healthz", f"median {health * 1000:.1f} ms, p95 {percentile(health_timings, 0.95) * 1000:.1f} ms (the baseline)")
    for page in pages_for(dataset):
        measure(page, client, requests, health, result)
    return result
