"""The admin's "Screen for protocol…" page, the findings page and the override form."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from clinic.models import AuditEvent
from patients.models import Screening, ScreeningOverride
from protocols.models import ProtocolVersion
from tests.factories import (
    IntakeFactory,
    PatientFactory,
    ProtocolFactory,
    RuleFactory,
    ScreeningFactory,
    StepFactory,
    VersionFactory,
    clinic_date,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(clinic_a):
    RuleFactory(code="pregnancy-exosome", fact="pregnant", severity="absolute", applies_to="exosome",
                message="No safety data for exosomes in pregnancy.")
    RuleFactory(code="hsv", fact="hsv_history", severity="relative", message="HSV history",
                mitigation="Antiviral prophylaxis.")
    RuleFactory(code="peel", fact="recent_peel_date", severity="caution", condition="within_days", window_days=30,
                message="Recent peel")
    draft = VersionFactory(protocol=ProtocolFactory(clinic=clinic_a, name="Microneedling + exosome"),
                           status=ProtocolVersion.Status.DRAFT)
    StepFactory(version=draft, kind="in_clinic_application", timing="offset", offset_value=10, day=None,
                local_time=None)
    draft.status = ProtocolVersion.Status.PUBLISHED
    draft.save()
    return draft


@pytest.fixture
def patient(clinic_a):
    return PatientFactory(clinic=clinic_a, given_name="Maya", family_name="Okafor")


def clinic_today(patient) -> dt.date:
    return clinic_date(timezone.now(), patient)


def screen_url(patient) -> str:
    return reverse("admin:patients_patient_screen", args=[patient.pk])


def screening_url(screening) -> str:
    return reverse("admin:patients_patient_screening", args=[screening.patient_id, screening.pk])


def test_the_screen_page_offers_only_published_versions_the_clinic_can_use(client, coordinator, patient, version,
                                                                           clinic_b):
    VersionFactory(protocol=ProtocolFactory(clinic=clinic_b, name="Their protocol"))
    VersionFactory(protocol=ProtocolFactory(clinic=patient.clinic, name="Draft protocol"),
                   status=ProtocolVersion.Status.DRAFT)
    client.force_login(coordinator)
    page = client.get(screen_url(patient)).content.decode()
    assert "Microneedling + exosome" in page
    assert "Their protocol" not in page
    assert "Draft protocol" not in page


def test_a_coordinator_runs_a_screening_and_sees_findings_coloured_by_severity(client, coordinator, patient,
                                                                             version):
    today = clinic_today(patient)
    peel = today - dt.timedelta(days=19)
    IntakeFactory(patient=patient, answers={"hsv_history": True, "recent_peel_date": peel.isoformat()})
    client.force_login(coordinator)
    response = client.post(screen_url(patient), {"protocol_version": version.pk, "planned_for": today})
    screening = Screening.objects.get()
    assert response.status_code == 302
    assert response["Location"] == screening_url(screening)
    page = client.get(screening_url(screening)).content.decode()
    assert 'class="outcome outcome-needs_override"' in page
    assert 'class="finding finding-relative"' in page
    assert 'class="finding finding-caution"' in page
    assert "Antiviral prophylaxis." in page
    assert "<script>" not in page  # CSP: no inline script


def test_a_coordinator_sees_the_override_form_disabled_and_a_post_is_refused(client, coordinator, patient, version):
    screening = ScreeningFactory(patient=patient, protocol_version=version, outcome="needs_override")
    client.force_login(coordinator)
    page = client.get(screening_url(screening)).content.decode()
    assert "Only a clinician can override" in page
    assert 'value="Record override" disabled' in page
    response = client.post(screening_url(screening), {"reason": "I think it's fine"})
    assert response.status_code == 403
    assert not ScreeningOverride.objects.exists()


def test_a_clinician_records_an_override_with_a_reason(client, clinician, patient, version):
    screening = ScreeningFactory(patient=patient, protocol_version=version, outcome="needs_override")
    client.force_login(clinician)
    page = client.get(screening_url(screening)).content.decode()
    assert 'name="reason"' in page
    assert client.post(screening_url(screening), {"reason": ""}).status_code == 400
    short = client.post(screening_url(screening), {"reason": "  ok  "})
    assert short.status_code == 400
    assert "at least 10 characters" in short.content.decode()
    assert not ScreeningOverride.objects.exists()
    response = client.post(screening_url(screening), {"reason": "Valacyclovir from the day before."})
    assert response.status_code == 302
    override = ScreeningOverride.objects.get()
    assert override.clinician == clinician
    page = client.get(screening_url(screening)).content.decode()
    assert "Valacyclovir from the day before." in page
    # The result at the top says it was overridden, not that it still needs an override.
    assert f'class="outcome outcome-overridden">Overridden by {clinician}' in page
    assert 'class="outcome outcome-needs_override"' not in page
    # …and so does the list of screenings to record a treatment on.
    record = client.get(reverse("admin:patients_treatment_add") + f"?patient={patient.pk}&screening={screening.pk}")
    assert f"Screening for {version}, run " in record.content.decode()
    assert ": Overridden</option>" in record.content.decode()


def test_a_blocked_screening_shows_no_override_form(client, clinician, patient, version):
    screening = ScreeningFactory(patient=patient, protocol_version=version, outcome="blocked")
    client.force_login(clinician)
    page = client.get(screening_url(screening)).content.decode()
    assert "cannot be overridden" in page
    assert 'name="reason"' not in page
    assert client.post(screening_url(screening), {"reason": "Accept"}).status_code == 400
    assert not ScreeningOverride.objects.exists()


def test_viewing_a_screening_is_logged(client, clinician, patient, version):
    screening = ScreeningFactory(patient=patient, protocol_version=version)
    client.force_login(clinician)
    client.get(screening_url(screening))
    assert AuditEvent.objects.filter(action="screening.view", actor=clinician, object_id=str(screening.pk)).exists()


def test_the_patient_page_shows_the_screening_history(client, clinician, patient, version):
    ScreeningFactory(patient=patient, protocol_version=version, outcome="caution")
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_patient_change", args=[patient.pk])).content.decode()
    assert "Screening history" in page
    assert 'outcome outcome-caution' in page
    assert "Screen for protocol…" in page


def test_another_clinics_staff_get_404_on_every_screening_page(client, clinician_b, patient, version):
    screening = ScreeningFactory(patient=patient, protocol_version=version, outcome="needs_override")
    client.force_login(clinician_b)
    assert client.get(screen_url(patient)).status_code == 404
    screen = {"protocol_version": version.pk, "planned_for": clinic_today(patient)}
    assert client.post(screen_url(patient), screen).status_code == 404
    assert client.get(screening_url(screening)).status_code == 404
    assert client.post(screening_url(screening), {"reason": "x"}).status_code == 404
    assert Screening.objects.count() == 1
    assert not ScreeningOverride.objects.exists()


def test_an_auditor_may_not_run_a_screening(client, auditor, patient, version):
    IntakeFactory(patient=patient)
    client.force_login(auditor)
    screen = {"protocol_version": version.pk, "planned_for": clinic_today(patient)}
    assert client.post(screen_url(patient), screen).status_code == 403
    assert not Screening.objects.exists()


def test_a_screening_error_shows_on_the_form(client, clinician, patient, version):
    client.force_login(clinician)
    response = client.post(screen_url(patient), {"protocol_version": version.pk, "planned_for": clinic_today(patient)})
    assert response.status_code == 400
    assert "no intake yet" in response.content.decode()
    assert not Screening.objects.exists()


@pytest.mark.parametrize("planned_for", ["2020-01-01", "2099-01-01"])
def test_a_planned_date_out_of_range_is_refused_on_its_field_and_nothing_is_stored(client, clinician, patient, version,
                                                                                  planned_for):
    IntakeFactory(patient=patient)
    client.force_login(clinician)
    response = client.post(screen_url(patient), {"protocol_version": version.pk, "planned_for": planned_for})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["planned_for"]
    assert planned_for in errors["planned_for"][0]
    assert not Screening.objects.exists()
    assert not AuditEvent.objects.filter(action="screening.run").exists()
