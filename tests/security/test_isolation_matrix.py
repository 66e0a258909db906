"""Tenant isolation, proven on every route: each role of clinic A asks every page, download and API
route for clinic B's rows, and gets nothing of them.

The routes are discovered (tests/security/routes.py), so a new admin page or API
route is asked automatically — or fails the coverage test until the matrix
knows how to fill its ids.  What counts as a leak is in tests/security/matrix.py.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest
from django.contrib import admin

from clinic.models import AuditEvent
from patients.models import (
    AdverseEvent,
    ExosomeApplication,
    Export,
    Intake,
    OutcomeAssessment,
    OutcomePhoto,
    Patient,
    Reminder,
    ScreeningOverride,
    StaffAlert,
    TreatmentArm,
)
from protocols.models import ContraindicationRule, ProductLot, ProtocolStep, ProtocolVersion
from tests.security.matrix import (
    OBJECT,
    Answer,
    ClinicRows,
    Evidence,
    ask,
    fingerprint,
    is_clinic_facing,
    is_global,
    judge,
    matrix,
    nonexistent,
)
from tests.security.routes import EXCLUDED, all_routes

pytestmark = pytest.mark.django_db

# Every kind of record a clinic keeps, each with what makes it interesting to ask for.
KINDS = {
    "patients": lambda c: Patient.objects.filter(clinic=c),
    "intakes": lambda c: Intake.objects.filter(patient__clinic=c),
    "overridden screenings": lambda c: ScreeningOverride.objects.filter(screening__patient__clinic=c),
    "draft protocol versions with steps": lambda c: ProtocolStep.objects.filter(
        version__protocol__clinic=c, version__status=ProtocolVersion.Status.DRAFT),
    "lots with a certificate": lambda c: ProductLot.objects.filter(clinic=c).exclude(certificate=""),
    "the clinic's own rules": lambda c: ContraindicationRule.objects.filter(clinic=c),
    "split-face treatment arms": lambda c: TreatmentArm.objects.filter(treatment__clinic=c),
    "exosome applications": lambda c: ExosomeApplication.objects.filter(treatment__clinic=c),
    "reminders": lambda c: Reminder.objects.filter(treatment__clinic=c),
    "clinician assessments": lambda c: OutcomeAssessment.objects.filter(treatment__clinic=c, source="clinician"),
    "patient self-reports": lambda c: OutcomeAssessment.objects.filter(treatment__clinic=c, source="patient"),
    "adverse events": lambda c: AdverseEvent.objects.filter(treatment__clinic=c),
    "alerts to clinicians": lambda c: StaffAlert.objects.filter(clinic=c),
    "outcome photos": lambda c: OutcomePhoto.objects.filter(assessment__treatment__clinic=c),
    "exports with a file": lambda c: Export.objects.filter(clinic=c).exclude(file=""),
    "access-log entries": lambda c: AuditEvent.objects.filter(clinic=c),
}


def test_both_clinics_keep_every_kind_of_record(world):
    missing = [f"{clinic}: {kind}" for clinic in (world.a, world.b) for kind, rows in KINDS.items() if not rows(clinic).exists()]
    assert not missing, f"the seeded clinics lack: {missing}"


def run(clients: dict, probes: list, evidence: Evidence) -> list[Answer]:
    """Every probe, asked by every role, with what of the watched clinic each answer shows."""
    answers = []
    for role, client in clients.items():
        for probe in probes:
            response, content, hops = ask(client, probe)
            found = evidence.find(probe, content, hops, response.get("Content-Type", ""))
            answers.append(Answer(probe, role, response.status_code, found, hops))
    return answers


def leaks_in(clients: dict, answers: list[Answer], rows_b: ClinicRows) -> list[str]:
    leaks = []
    for answer in answers:
        nonexistent_status = None
        if answer.status == 405:  # refused method: fine if an id that exists nowhere gets the same answer
            response, _content, _hops = ask(clients[answer.role], nonexistent(answer.probe, rows_b))
            nonexistent_status = response.status_code
        why = judge(answer, nonexistent_status)
        if why:
            leaks.append(f"{why}: {answer}")
    return leaks


def no_page_for_any_row() -> set[str]:
    """Routes that answer 404 for every row by design: "view on site" (no model has a public page) and the
    revision page of models that keep no history."""
    keys = {"admin:view_on_site"}
    for model in admin.site._registry:
        if not hasattr(model._meta, "simple_history_manager_attribute"):
            keys.add(f"admin:{model._meta.app_label}_{model._meta.model_name}_simple_history")
    return keys


def test_every_route_and_every_admin_model_is_in_the_matrix(world):
    probes, unknown = matrix(ClinicRows(world.b), ClinicRows(world.a))
    assert not unknown, "routes the matrix cannot fill with another clinic's ids:\n" + "\n".join(unknown)
    keys = {route.key for route in all_routes()}
    unasked = sorted(key for key in keys - EXCLUDED.keys() if not probes.get(key))
    assert not unasked, f"routes the isolation matrix never asks: {unasked}"
    assert not EXCLUDED.keys() - keys, f"exclusions for routes that no longer exist: {EXCLUDED.keys() - keys}"
    rows_b = ClinicRows(world.b)
    unseeded = sorted(model._meta.label for model in admin.site._registry if not is_global(model) and not rows_b.ids(model))
    assert not unseeded, f"clinic B has no rows of these admin models, so their pages are not really asked: {unseeded}"


def test_no_role_of_one_clinic_reaches_another_clinics_rows(world, clients_a):
    rows_a, rows_b = ClinicRows(world.a), ClinicRows(world.b)
    probes, _unknown = matrix(rows_b, rows_a)
    before = fingerprint(world.b)
    started = time.monotonic()
    answers = run(clients_a, [probe for group in probes.values() for probe in group], Evidence(rows_b, world.tag_b))
    leaks = leaks_in(clients_a, answers, rows_b)
    after = fingerprint(world.b)
    leaks += [f"clinic B's {label} rows changed while A's staff asked" for label in before if after[label] != before[label]]
    statuses = dict(sorted(Counter(answer.status for answer in answers).items()))
    summary = (
        f"isolation matrix: {len(answers)} tried, {len(leaks)} leaked "
        f"({len(probes)} routes, {len(clients_a)} roles, {time.monotonic() - started:.0f} s; statuses {statuses})"
    )
    print("\n" + summary + "".join(f"\n  LEAK {leak}" for leak in leaks))
    assert not leaks, summary + "".join(f"\n  {leak}" for leak in leaks)


def test_the_same_requests_reach_the_clinics_own_rows(world, clients_a):
    """The positive control: with clinic A's own ids the same pages answer, so the 404s above mean something."""
    rows_a = ClinicRows(world.a, per_kind=1)
    probes, _unknown = matrix(rows_a, rows_a)
    # Reads only (nothing of clinic A's is changed); of the pages' filters only the API's (they are cheap).
    asked = [
        p for group in probes.values() for p in group if p.method == "GET" and (p.kind == OBJECT or p.api or "?" not in p.path)
    ]
    answers = run(clients_a, asked, Evidence(rows_a, world.tag_a))
    by_route = defaultdict(list)
    for answer in answers:
        by_route[answer.probe.key].append(answer)

    change_pages = [
        f"admin:{model._meta.app_label}_{model._meta.model_name}_change"
        for model, model_admin in admin.site._registry.items() if is_clinic_facing(model_admin)
    ]
    refused = [key for key in change_pages if not any(a.status == 200 for a in by_route[key] if a.role == "clinic_admin")]
    assert not refused, f"clinic A's admin cannot open clinic A's own rows on: {refused}"
    routes = {route.key: route for route in all_routes()}
    api_reads = [key for key, found in by_route.items() if found[0].probe.api and routes[key].params]
    unread = [key for key in api_reads if not any(200 <= a.status < 300 for a in by_route[key])]
    assert api_reads and not unread, f"API routes that no role of clinic A can read for its own rows: {unread}"
    all_404 = sorted({key for key, found in by_route.items() if all(a.status == 404 for a in found)} - no_page_for_any_row())
    assert not all_404, f"routes that answer 404 even for the clinic's own rows (the matrix would prove nothing): {all_404}"
    showing = sum(1 for answer in answers if answer.evidence)
    print(f"\npositive control: {len(answers)} tried with clinic A's own ids, "
          f"{sum(1 for a in answers if a.status < 400)} answered, {showing} showed clinic A's data")
    assert showing > len(answers) // 4, "the pages asked show too little of the clinic's own data to prove anything"
