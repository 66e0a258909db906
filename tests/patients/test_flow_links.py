"""The links that carry staff from one step of the clinical flow to the next.

Found missing in the browser walk-through: a clear screening offered no way to
record the treatment, the patient page no way to its treatments, and the
treatment page no way to log its outcomes.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from patients.models import Treatment
from tests.factories import ScreeningFactory, TreatmentFactory, treatable_patient

pytestmark = pytest.mark.django_db


def screening_page(client, screening):  # noqa: ANN001, ANN201
    return client.get(reverse("admin:patients_patient_screening", args=[screening.patient_id, screening.pk]))


def test_it_offers_to_record_a_treatment_from_a_screening_that_allows_one(client, clinician, clinic_a):
    patient, _version, screening = treatable_patient(clinic_a)
    client.force_login(clinician)
    page = screening_page(client, screening).content.decode()
    assert f'href="/admin/patients/treatment/add/?patient={patient.pk}&amp;screening={screening.pk}"' in page
    assert "Record a treatment…" in page


def test_it_offers_no_treatment_from_a_blocked_screening(client, clinician, clinic_a):
    patient, version, _clear = treatable_patient(clinic_a)
    blocked = ScreeningFactory(patient=patient, protocol_version=version, outcome="blocked")
    client.force_login(clinician)
    assert "Record a treatment…" not in screening_page(client, blocked).content.decode()


def test_it_offers_no_treatment_to_a_coordinator_who_may_not_record_one(client, coordinator, clinic_a):
    _patient, _version, screening = treatable_patient(clinic_a)
    client.force_login(coordinator)
    page = screening_page(client, screening)
    assert page.status_code == 200
    assert "Record a treatment…" not in page.content.decode()


def test_the_record_form_starts_from_the_screening_it_was_opened_from(client, clinician, clinic_a):
    patient, version, _first = treatable_patient(clinic_a)
    second = ScreeningFactory(patient=patient, protocol_version=version)
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_treatment_add"), {"patient": patient.pk, "screening": second.pk})
    assert page.context["form"]["screening"].value() == str(second.pk)


def test_the_patient_page_links_to_the_patients_treatments(client, clinician, clinic_a):
    patient, _version, _screening = treatable_patient(clinic_a)
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_patient_change", args=[patient.pk])).content.decode()
    assert f'href="/admin/patients/treatment/?patient__id__exact={patient.pk}"' in page


def test_the_treatment_page_links_to_logging_its_outcomes(client, clinician, clinic_a):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk])).content.decode()
    assert f'href="/admin/patients/outcomeassessment/add/?treatment={treatment.pk}"' in page


@pytest.mark.parametrize("who", ["coordinator", "auditor"])
def test_only_clinicians_are_offered_to_log_outcomes(client, clinic_a, who, request):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a)
    client.force_login(request.getfixturevalue(who))
    page = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk]))
    assert page.status_code == 200
    assert "Log outcomes…" not in page.content.decode()


def test_a_cancelled_treatment_offers_no_outcome_logging(client, clinician, clinic_a):
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, status=Treatment.Status.CANCELLED)
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk])).content.decode()
    assert "Log outcomes…" not in page
