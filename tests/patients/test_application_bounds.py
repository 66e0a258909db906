"""An in-clinic application's volume and delay: plausible bounds, the same message in the admin and the API."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from patients import treatments
from patients.models import ExosomeApplication, Treatment
from tests.factories import LotFactory, ProductFactory, treatable_patient
from tests.patients.conftest import NOW, TWO_EVENING_STEPS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_at_now")]

ADD = "/admin/patients/treatment/add/"
TOO_MUCH = "500 ml is more than an application in clinic takes (at most 20 ml); check the volume for a typing mistake."
TOO_LATE = ("an application in clinic is given during the visit, at most 1440 minutes (24 hours) after the "
            "procedure; check 100000 for a typing mistake.")


@pytest.fixture
def plan(clinic_a):
    return treatable_patient(clinic_a, steps=TWO_EVENING_STEPS, time_zone="Europe/Berlin")


@pytest.fixture
def lot(clinic_a):
    return LotFactory(product=ProductFactory(clinic=clinic_a))


def errors_for(plan, lot, *, volume_ml: str, minutes: int) -> dict:
    patient, version, screening = plan
    return treatments.treatment_errors(
        patient=patient, protocol_version=version, screening=screening, areas="full face",
        started_at=NOW - dt.timedelta(hours=1), ended_at=NOW - dt.timedelta(minutes=15),
        applications=[treatments.ApplicationInput(lot=lot, volume_ml=Decimal(volume_ml), minutes_after_procedure=minutes)],
    )


@pytest.mark.parametrize(
    ("volume_ml", "minutes", "message"),
    [
        ("500", 0, f"Application 1: {TOO_MUCH}"),
        ("20.01", 0, "Application 1: 20.01 ml is more than an application in clinic takes (at most 20 ml)"),
        ("0", 0, "Application 1: give the volume applied in ml (more than 0)."),
        ("2", 100000, f"Application 1: {TOO_LATE}"),
        ("2", 1441, "Application 1: an application in clinic is given during the visit, at most 1440 minutes"),
    ],
)
def test_the_service_refuses_an_implausible_volume_or_delay(plan, lot, volume_ml, minutes, message):
    assert message in " ".join(errors_for(plan, lot, volume_ml=volume_ml, minutes=minutes)["applications"])


def test_the_service_takes_the_limits_themselves(plan, lot):
    assert errors_for(plan, lot, volume_ml="20", minutes=1440) == {}
    assert errors_for(plan, lot, volume_ml="0.01", minutes=0) == {}


def _admin_post(client, plan, lot, *, volume_ml: str, minutes: str):
    _patient, _version, screening = plan
    return client.post(f"{ADD}?patient={screening.patient_id}", {
        "patient": screening.patient_id, "screening": screening.pk,
        "started_at": "2026-05-04T09:15", "ended_at": "2026-05-04T10:00", "areas": "full face",
        "applications-TOTAL_FORMS": "2", "applications-INITIAL_FORMS": "0",
        "arms-TOTAL_FORMS": "2", "arms-INITIAL_FORMS": "0",
        "applications-0-lot": lot.pk, "applications-0-volume_ml": volume_ml,
        "applications-0-minutes_after_procedure": minutes,
    })


@pytest.mark.parametrize(
    ("volume_ml", "minutes", "field", "message"),
    [
        ("500", "5", "volume_ml", TOO_MUCH[0].upper() + TOO_MUCH[1:]),
        ("0", "5", "volume_ml", "Give the volume applied in ml (more than 0)."),
        ("2", "100000", "minutes_after_procedure", TOO_LATE[0].upper() + TOO_LATE[1:]),
        ("2", "-1", "minutes_after_procedure", "Minutes after the procedure cannot be negative."),
    ],
)
def test_the_admin_shows_the_error_on_the_field_and_records_nothing(client, clinician, plan, lot, volume_ml, minutes,
                                                                    field, message):
    client.force_login(clinician)
    response = _admin_post(client, plan, lot, volume_ml=volume_ml, minutes=minutes)
    assert response.status_code == 400
    assert response.context["applications"].forms[0].errors[field] == [message]
    assert not Treatment.objects.exists()
    assert not ExosomeApplication.objects.exists()


def test_the_admin_records_an_application_at_the_limits(client, clinician, plan, lot):
    client.force_login(clinician)
    response = _admin_post(client, plan, lot, volume_ml="20", minutes="1440")
    assert response.status_code == 302
    application = Treatment.objects.get().applications.get()
    assert (application.volume_ml, application.minutes_after_procedure) == (Decimal("20"), 1440)


def _api_post(clinician, plan, application: dict):
    patient, version, screening = plan
    api = APIClient()
    api.force_authenticate(clinician)
    return api.post("/api/v1/treatments/", {
        "patient": patient.pk, "protocol_version": version.pk, "screening": screening.pk,
        "started_at": "2026-05-04T08:15:00Z", "ended_at": "2026-05-04T09:00:00Z", "areas": "full face",
        "applications": [application],
    }, format="json")


@pytest.mark.parametrize(
    ("volume_ml", "minutes", "message"),
    [("500.00", 5, "Application 1: " + TOO_MUCH.replace("500 ml", "500.00 ml")),
     ("2.00", 100000, f"Application 1: {TOO_LATE}")],
)
def test_the_api_answers_400_with_the_field_error_and_records_nothing(clinician, plan, lot, volume_ml, minutes, message):
    response = _api_post(clinician, plan, {"lot": lot.pk, "volume_ml": volume_ml, "minutes_after_procedure": minutes})
    assert response.status_code == 400
    assert response.json()["applications"] == [message]
    assert not Treatment.objects.exists()
    assert not ExosomeApplication.objects.exists()


def test_a_delay_too_large_for_a_date_is_a_400_not_a_500(clinician, plan, lot):
    response = _api_post(clinician, plan, {"lot": lot.pk, "volume_ml": "2.00", "minutes_after_procedure": 10**12})
    assert response.status_code == 400
    assert "at most 1440 minutes" in response.json()["applications"][0]
    assert not Treatment.objects.exists()
