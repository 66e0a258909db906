"""The treatment page reads top to bottom: the record (its arms and applications), the timeline, the
patient's reports, then "Close". A browser walk-through found a stray "2.50 ml of lot …" caption above the
application, an empty "Treatment arms" table, and "Close" between the record and the timeline."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from patients.models import ExosomeApplication, TreatmentArm
from tests.factories import LotFactory, TreatmentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def treatment(clinic_a, clinician):
    ended = timezone.now() - dt.timedelta(days=3)
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1),
                                 ended_at=ended)
    ExosomeApplication.objects.create(treatment=treatment, lot=LotFactory(lot_number="LOT-77"), volume_ml="2.5",
                                      applied_by=clinician)
    return treatment


def _page(client, user, treatment) -> str:
    client.force_login(user)
    response = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_it_says_a_treatment_without_arms_has_none(client, clinician, treatment):
    body = _page(client, clinician, treatment)
    assert "No arms (one product on the whole area)." in body
    assert 'class="column-label"' not in body  # no empty table of arms


def test_it_lists_the_arms_of_a_split_face_treatment(client, clinician, treatment):
    TreatmentArm.objects.create(treatment=treatment, label="left side")
    body = _page(client, clinician, treatment)
    assert "left side" in body
    assert "No arms" not in body


def test_it_shows_the_application_without_a_caption_naming_it(client, clinician, treatment):
    body = _page(client, clinician, treatment)
    assert "LOT-77" in body  # in the lot's column
    assert "2.50 ml of lot" not in body


def test_close_comes_after_the_timeline_and_the_patient_reports(client, clinician, treatment):
    body = _page(client, clinician, treatment)
    assert body.count('class="closelink"') == 1
    assert body.index('id="timeline"') < body.index('id="patient-reports"') < body.index('class="closelink"')
