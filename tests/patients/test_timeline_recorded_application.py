"""The timeline shows an in-clinic exosome application at the time it was recorded, and says so."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from rest_framework.test import APIClient

from patients.treatments import ApplicationInput, ArmInput, record_treatment, timeline_for
from tests.factories import LotFactory, ProductFactory, treatable_patient

pytestmark = pytest.mark.django_db

UTC = dt.UTC
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
ENDED = dt.datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # 11:00 in Berlin
IN_CLINIC = {"kind": "in_clinic_application", "timing": "offset", "offset_unit": "minutes", "day": None,
             "local_time": None, "sends_reminder": False}
TONIGHT = {"title": "Cleanse tonight", "day": 0, "local_time": dt.time(20, 0)}


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def product(clinic_a):
    return ProductFactory(clinic=clinic_a)


@pytest.fixture
def lot(product):
    return LotFactory(product=product)


def treated(clinic, clinician, *, steps, applications=(), arms=()):
    patient, version, screening = treatable_patient(clinic, steps=steps, time_zone="Europe/Berlin")
    return record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ENDED - dt.timedelta(minutes=45), ended_at=ENDED, areas="full face",
        applications=list(applications), arms=list(arms),
    )


def times(treatment) -> dict[str, tuple[dt.datetime, str]]:
    return {entry.step.title: (entry.occurs_at, entry.time_source) for entry in timeline_for(treatment=treatment)}


def applied(lot, minutes: int, arm: str = "") -> ApplicationInput:
    return ApplicationInput(lot=lot, volume_ml=Decimal("1.5"), minutes_after_procedure=minutes, arm_label=arm)


def test_it_shows_the_recorded_time_of_the_application_instead_of_the_planned_one(clinic_a, clinician, product, lot):
    steps = [{**IN_CLINIC, "title": "Exosomes", "offset_value": 10, "product": product}, TONIGHT]
    treatment = treated(clinic_a, clinician, steps=steps, applications=[applied(lot, 25)])
    [entry] = [entry for entry in timeline_for(treatment=treatment) if entry.step.title == "Exosomes"]
    assert (entry.occurs_at, entry.time_source) == (ENDED + dt.timedelta(minutes=25), "recorded")
    assert entry.planned_at == ENDED + dt.timedelta(minutes=10)
    assert times(treatment)["Cleanse tonight"] == (dt.datetime(2026, 5, 4, 18, 0, tzinfo=UTC), "planned")


def test_a_recorded_application_reads_applied_even_when_its_minutes_are_still_ahead(clinic_a, clinician, lot):
    # Recorded at 09:30 with "+45 minutes" after a procedure that ended at 09:00: it was done, not "upcoming".
    treatment = treated(clinic_a, clinician, steps=[{**IN_CLINIC, "title": "Exosomes", "offset_value": 10}],
                        applications=[applied(lot, 45)])
    [entry] = timeline_for(treatment=treatment)
    assert (entry.state, entry.state_label) == ("applied", "Applied (recorded)")
    unrecorded = treated(clinic_a, clinician, steps=[{**IN_CLINIC, "title": "Exosomes", "offset_value": 10}])
    assert timeline_for(treatment=unrecorded)[0].state == "past"


def test_it_keeps_the_planned_time_when_no_application_was_recorded(clinic_a, clinician):
    treatment = treated(clinic_a, clinician, steps=[{**IN_CLINIC, "title": "Exosomes", "offset_value": 10}])
    assert times(treatment)["Exosomes"] == (ENDED + dt.timedelta(minutes=10), "planned")


def test_it_does_not_take_an_application_of_another_product_than_the_steps(clinic_a, clinician, product):
    other_lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    steps = [{**IN_CLINIC, "title": "Exosomes", "offset_value": 10, "product": product}]
    treatment = treated(clinic_a, clinician, steps=steps, applications=[applied(other_lot, 25)])
    assert times(treatment)["Exosomes"] == (ENDED + dt.timedelta(minutes=10), "planned")


def test_each_of_two_in_clinic_steps_takes_its_own_application_in_time_order(clinic_a, clinician, lot):
    steps = [{**IN_CLINIC, "title": "First layer", "offset_value": 0},
             {**IN_CLINIC, "title": "Second layer", "offset_value": 30}]
    treatment = treated(clinic_a, clinician, steps=steps, applications=[applied(lot, 40), applied(lot, 2)])
    assert times(treatment) == {
        "First layer": (ENDED + dt.timedelta(minutes=2), "recorded"),
        "Second layer": (ENDED + dt.timedelta(minutes=40), "recorded"),
    }


def test_a_split_face_step_takes_one_application_per_arm(clinic_a, clinician, product, lot):
    steps = [{**IN_CLINIC, "title": "First layer", "offset_value": 0},
             {**IN_CLINIC, "title": "Second layer", "offset_value": 20}]
    arms = [ArmInput("left", product=product), ArmInput("right", product=product)]
    applications = [applied(lot, 3, "left"), applied(lot, 22, "left"), applied(lot, 5, "right"), applied(lot, 24, "right")]
    treatment = treated(clinic_a, clinician, steps=steps, applications=applications, arms=arms)
    # The right arm's first application belongs to the first layer, not to the second.
    assert times(treatment) == {
        "First layer": (ENDED + dt.timedelta(minutes=3), "recorded"),
        "Second layer": (ENDED + dt.timedelta(minutes=22), "recorded"),
    }


def test_the_treatment_page_shows_the_recorded_time_and_says_it_is_recorded(client, clinic_a, clinician, product, lot):
    steps = [{**IN_CLINIC, "title": "Exosomes", "offset_value": 10, "product": product}]
    treatment = treated(clinic_a, clinician, steps=steps, applications=[applied(lot, 25)])
    client.force_login(clinician)
    body = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk])).content.decode()
    row = body[body.index("<td>Mon 2026-05-04 11:25"):]  # the patient's wall clock
    assert row.index("recorded application time (planned 11:10)") < row.index("</tr>")
    assert row.index("Exosomes") < row.index("</tr>")


def test_the_api_timeline_gives_the_recorded_time_with_its_source_and_the_plan(clinic_a, clinician, product, lot):
    steps = [{**IN_CLINIC, "title": "Exosomes", "offset_value": 10, "product": product}, TONIGHT]
    treatment = treated(clinic_a, clinician, steps=steps, applications=[applied(lot, 25)])
    api = APIClient()
    api.force_authenticate(clinician)
    timeline = api.get(f"/api/v1/treatments/{treatment.pk}/timeline/").json()
    assert [(e["step_title"], e["occurs_at"], e["planned_at"], e["time_source"]) for e in timeline] == [
        ("Exosomes", "2026-05-04T09:25:00Z", "2026-05-04T09:10:00Z", "recorded"),
        ("Cleanse tonight", "2026-05-04T18:00:00Z", "2026-05-04T18:00:00Z", "planned"),
    ]
