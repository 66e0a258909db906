"""Every list page runs as many queries for a page of three rows as for a page of one: no N+1.

Each admin changelist and each API list endpoint is discovered from the admin
site and the router, so a new one is covered without touching this file. The
sizes are tiny on purpose: a query per row shows as soon as a page has more
than one row.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.settings import api_settings

import clinic.urls  # noqa: F401 - the URL modules register every viewset on the router
from clinic.admin_base import ClinicScopedAdmin
from clinic.api.router import router
from patients.models import AdverseEvent, Export, OutcomeAssessment, OutcomePhoto, Patient, Reminder, Treatment
from tests.perf_queries.conftest import ROWS

SIZES = (1, ROWS)
#: lists the busy clinic fills with at least ROWS rows, so their comparison means something
FILLED_CHANGELISTS = {Patient, Treatment, Reminder, OutcomeAssessment, AdverseEvent, OutcomePhoto, Export}
FILLED_ENDPOINTS = {"patient", "screening", "treatment", "reminder", "outcome", "adverse-event", "export"}


def _admin_label(model: type) -> str:
    return f"{model._meta.app_label}.{model._meta.model_name}"


# The staff's pages; the other registered models (beat schedules, OTP devices, …) are the operator's alone.
ADMIN_MODELS = sorted(
    (model for model, model_admin in admin.site._registry.items()
     if isinstance(model_admin, ClinicScopedAdmin) or model is get_user_model()),
    key=_admin_label,
)
LIST_ENDPOINTS = sorted(
    basename for prefix, viewset, basename in router.registry if "(?P<" not in prefix and hasattr(viewset, "list")
)


def _queries(client, url: str) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    return len(captured.captured_queries), response


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=_admin_label)
def test_a_changelist_runs_as_many_queries_for_three_rows_as_for_one(model, client, db, busy_clinic, monkeypatch):
    client.force_login(busy_clinic)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    client.get(url)  # first-request caches (content types, permissions) are not the page's
    counts, responses = {}, {}
    for size in SIZES:
        monkeypatch.setattr(admin.site._registry[model], "list_per_page", size)
        counts[size], responses[size] = _queries(client, url)
    assert responses[ROWS].status_code == 200
    if model in FILLED_CHANGELISTS:
        assert len(responses[ROWS].context["cl"].result_list) == ROWS
    assert counts[1] == counts[ROWS], f"{_admin_label(model)}: {counts[1]} queries for 1 row, {counts[ROWS]} for {ROWS}"


@pytest.mark.parametrize("basename", LIST_ENDPOINTS)
def test_an_api_list_runs_as_many_queries_for_three_rows_as_for_one(basename, client, db, busy_clinic, monkeypatch):
    client.force_login(busy_clinic)
    url = reverse(f"{basename}-list")
    client.get(url)
    counts, responses = {}, {}
    for size in SIZES:
        monkeypatch.setattr(api_settings.DEFAULT_PAGINATION_CLASS, "page_size", size)
        counts[size], responses[size] = _queries(client, url)
    assert responses[ROWS].status_code == 200
    if basename in FILLED_ENDPOINTS:
        assert len(responses[ROWS].json()["results"]) == ROWS
    assert counts[1] == counts[ROWS], f"{basename}: {counts[1]} queries for 1 row, {counts[ROWS]} for {ROWS}"


def test_the_patient_list_shows_each_patients_latest_screening(client, db, busy_clinic):
    client.force_login(busy_clinic)
    page = client.get(reverse("admin:patients_patient_changelist")).content.decode()
    assert page.count('class="outcome outcome-clear"') == ROWS - 1
    assert page.count('class="outcome outcome-needs_override"') == 1


def test_the_screening_api_shows_the_override_it_loaded_with_the_list(client, db, busy_clinic):
    client.force_login(busy_clinic)
    screenings = client.get(reverse("screening-list")).json()["results"]
    overrides = [item["override"] for item in screenings if item["override"] is not None]
    assert [override["reason"] for override in overrides] == ["Cleared by the GP."]
