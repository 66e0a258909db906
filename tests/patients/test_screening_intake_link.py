"""A screening's page says which intake it read, to the minute (several can be answered in a day), with a link."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from tests.factories import IntakeFactory, PatientFactory, ScreeningFactory

pytestmark = pytest.mark.django_db


def test_the_screening_names_its_intake_to_the_minute_on_the_clinics_clock_and_links_to_it(client, clinician, clinic_a):
    patient = PatientFactory(clinic=clinic_a)
    answered = dt.datetime(2026, 7, 1, 13, 5, tzinfo=dt.UTC)  # 14:05 in London (summer time)
    intake = IntakeFactory(patient=patient, answered_at=answered)
    screening = ScreeningFactory(patient=patient, intake=intake)
    client.force_login(clinician)

    page = client.get(reverse("admin:patients_patient_screening", args=[patient.pk, screening.pk])).content.decode()

    url = reverse("admin:patients_patient_intake", args=[patient.pk, intake.pk])
    assert f'<a href="{url}">intake of 2026-07-01 14:05</a>' in page
