"""Written reasons: one bar for all (at least 10 characters, said the same way), and no pasted documents.

A correction of "typo" was accepted while a cancellation needed 10 characters and an override 15; an override
reason of 20,000 characters was stored. A refused reason changes nothing, in the service, the admin and the API.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from clinic import reasons
from patients import outcomes, treatments
from patients.models import AdverseEvent, OutcomeAssessment, Reminder, ScreeningOverride, Treatment
from patients.screenings import override_screening
from protocols import lots
from protocols.models import ProtocolVersion
from tests.factories import (
    LotFactory,
    PatientFactory,
    ProductFactory,
    ProtocolFactory,
    ScreeningFactory,
    TreatmentFactory,
    VersionFactory,
    treatable_patient,
)

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
TOO_SHORT = "at least 10 characters"
LONG_OVERRIDE = "Antiviral prophylaxis prescribed and started. " * 440  # about 20,000 characters


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- screening overrides -------------------------------------------------------------------------


@pytest.fixture
def needs_override(clinic_a):
    version = VersionFactory(protocol=ProtocolFactory(clinic=clinic_a), status=ProtocolVersion.Status.PUBLISHED)
    return ScreeningFactory(patient=PatientFactory(clinic=clinic_a), protocol_version=version, outcome="needs_override")


def test_an_override_reason_of_20000_characters_is_refused_and_nothing_is_stored(needs_override, clinician):
    assert len(LONG_OVERRIDE) > 20000 - 300
    with pytest.raises(ValidationError) as refused:
        override_screening(screening=needs_override, clinician=clinician, reason=LONG_OVERRIDE)
    assert refused.value.message_dict["reason"] == [f"Keep the reason to 2000 characters (it has {len(LONG_OVERRIDE.strip())})."]
    assert not ScreeningOverride.objects.exists()


def test_an_override_reason_of_2000_characters_is_kept_whole(needs_override, clinician):
    reason = ("HSV prophylaxis prescribed. " * 80)[:2000]
    override = override_screening(screening=needs_override, clinician=clinician, reason=reason)
    assert len(override.reason) == reasons.REASON_MAX_LENGTH == 2000


def test_the_api_refuses_a_long_override_reason_with_400_on_the_reason(needs_override, clinician):
    response = api_for(clinician).post(
        f"/api/v1/screenings/{needs_override.pk}/override/", {"reason": LONG_OVERRIDE}, format="json"
    )
    assert response.status_code == 400
    assert "Keep the reason to 2000 characters" in response.json()["reason"][0]
    assert not ScreeningOverride.objects.exists()


def test_the_admin_refuses_a_long_override_reason_on_the_form(client, needs_override, clinician):
    client.force_login(clinician)
    url = reverse("admin:patients_patient_screening", args=[needs_override.patient_id, needs_override.pk])
    response = client.post(url, {"reason": LONG_OVERRIDE})
    assert response.status_code == 400
    assert "Keep the reason to 2000 characters" in response.context["form"].errors["reason"][0]
    assert not ScreeningOverride.objects.exists()


def test_an_override_needs_the_same_10_characters_as_every_other_reason(needs_override, clinician):
    with pytest.raises(ValidationError) as refused:
        override_screening(screening=needs_override, clinician=clinician, reason="Fine, ok.")
    assert TOO_SHORT in refused.value.message_dict["reason"][0]
    assert override_screening(screening=needs_override, clinician=clinician, reason="Valacyclovir").reason == (
        "Valacyclovir"  # 12 characters: it was refused below 15
    )


# --- corrections of outcomes and adverse events ----------------------------------------------------


@pytest.fixture
def treatment(clinic_a):
    ended = NOW - dt.timedelta(days=10)
    return TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended)


@pytest.fixture
def entry(treatment, clinician):
    return outcomes.record_assessment(treatment=treatment, by=clinician, time_point_day=3, scores={"erythema": 2})


@pytest.fixture
def event(treatment, clinician):
    return outcomes.record_adverse_event(
        treatment=treatment, by=clinician, kind="infection", severity="mild", onset_date=dt.date(2026, 3, 18),
    )


@pytest.mark.parametrize("reason", ["typo", "  no  ", "", "x" * 9])
def test_a_correction_reason_under_10_characters_is_refused_and_nothing_changes(entry, event, clinician, reason):
    with pytest.raises(ValidationError) as refused:
        outcomes.correct_assessment(assessment=entry, by=clinician, changes={"erythema": 1}, reason=reason)
    assert refused.value.message_dict["correction_reason"] == [
        "Say why the entry is corrected, in a few words (at least 10 characters), e.g. “pain entered as 7, patient "
        "said 1”: the reason stays with the record."
    ]
    with pytest.raises(ValidationError) as refused:
        outcomes.correct_adverse_event(event=event, by=clinician, changes={"severity": "moderate"}, reason=reason)
    assert TOO_SHORT in refused.value.message_dict["correction_reason"][0]
    assert OutcomeAssessment.objects.get(pk=entry.pk).erythema == 2
    assert AdverseEvent.objects.get(pk=event.pk).severity == "mild"


def test_a_correction_reason_of_100_characters_is_kept_whole_in_the_history(entry, clinician):
    reason = ("Scored before cleansing; redness was the cleanser. " * 2)[:100]
    outcomes.correct_assessment(assessment=entry, by=clinician, changes={"erythema": 1}, reason=reason)
    assert entry.history.first().history_change_reason == reason


def test_a_correction_reason_over_the_history_column_is_refused(entry, clinician):
    reason = "Scored before cleansing, " * 5  # 125 characters; the history keeps 100
    with pytest.raises(ValidationError) as refused:
        outcomes.correct_assessment(assessment=entry, by=clinician, changes={"erythema": 1}, reason=reason)
    assert refused.value.message_dict["correction_reason"] == ["Keep the reason to 100 characters (it has 124)."]
    assert OutcomeAssessment.objects.get(pk=entry.pk).erythema == 2


def test_the_api_refuses_typo_as_a_correction_of_an_outcome_or_an_adverse_event(entry, event, clinician):
    api = api_for(clinician)
    revision = api.get(f"/api/v1/outcomes/{entry.pk}/").json()["revision"]
    response = api.patch(f"/api/v1/outcomes/{entry.pk}/",
                         {"erythema": 1, "correction_reason": "typo", "revision": revision}, format="json")
    assert response.status_code == 400
    assert TOO_SHORT in response.json()["correction_reason"][0]
    revision = api.get(f"/api/v1/adverse-events/{event.pk}/").json()["revision"]
    response = api.patch(f"/api/v1/adverse-events/{event.pk}/",
                         {"severity": "moderate", "correction_reason": "typo", "revision": revision}, format="json")
    assert response.status_code == 400
    assert TOO_SHORT in response.json()["correction_reason"][0]
    assert (OutcomeAssessment.objects.get(pk=entry.pk).erythema, AdverseEvent.objects.get(pk=event.pk).severity) == (
        2, "mild"
    )


def correction_form(client, url, **changes: str) -> dict[str, str]:
    """The change page's form as a clinician sends it back, with ``changes``."""
    opened = client.get(url).context["adminform"].form["opened_revision"].value()
    return {
        "arm": "", "time_point_day": "3", "phase": "", "erythema": "2", "oedema": "",
        "reepithelialisation_complete": "unknown", "reepithelialisation_percent": "", "pain": "", "pruritus": "",
        "gais": "", "notes": "", "correction_reason": "", "opened_revision": opened,
        "photos-TOTAL_FORMS": "0", "photos-INITIAL_FORMS": "0", "photos-MIN_NUM_FORMS": "0",
        "photos-MAX_NUM_FORMS": "1000", **changes,
    }


def test_the_admin_refuses_typo_as_a_correction(client, entry, clinician):
    client.force_login(clinician)
    url = reverse("admin:patients_outcomeassessment_change", args=[entry.pk])
    response = client.post(url, correction_form(client, url, erythema="1", correction_reason="typo"))
    assert response.status_code == 200
    assert TOO_SHORT in response.context["adminform"].form.errors["correction_reason"][0]
    assert OutcomeAssessment.objects.get(pk=entry.pk).erythema == 2
    response = client.post(url, correction_form(client, url, erythema="1", correction_reason="Scored too early"))
    assert response.status_code == 302
    assert OutcomeAssessment.objects.get(pk=entry.pk).erythema == 1


# --- the same bar everywhere ---------------------------------------------------------------------------


@pytest.fixture
def recorded(clinic_a, clinician) -> Treatment:
    steps = [{"title": "Check-in visit", "kind": "follow_up_visit", "timing": "offset", "offset_value": 2,
              "offset_unit": "days", "day": None, "local_time": None, "remind_minutes_before": 24 * 60}]
    patient, version, screening = treatable_patient(clinic_a, steps=steps, time_zone="Europe/London")
    return treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=NOW - dt.timedelta(hours=2), ended_at=NOW - dt.timedelta(hours=1), areas="face",
    )


def test_cancelling_moving_and_lifting_say_the_same_as_a_correction(recorded, clinician, coordinator, clinic_admin):
    visit = Reminder.objects.get(treatment=recorded, step__title="Check-in visit")
    refusals = []
    for refuse in (
        lambda: treatments.cancel_treatment(treatment=recorded, by=clinician, reason="typo"),
        lambda: treatments.move_visit(reminder=visit, occurs_at=NOW + dt.timedelta(days=3), reason="typo",
                                      by=coordinator),
        lambda: lots.check_lift(lot=LotFactory(product=ProductFactory(clinic=recorded.clinic), recalled=True,
                                               recall_reason="Supplier recall"), by=clinic_admin, reason="typo"),
    ):
        with pytest.raises(ValidationError) as refused:
            refuse()
        [message] = next(iter(refused.value.message_dict.values()))
        refusals.append(message)
    assert all(", in a few words (at least 10 characters), e.g. “" in message for message in refusals), refusals
    assert all(message.endswith("”: the reason stays with the record.") for message in refusals), refusals


def test_a_recall_is_lifted_with_a_reason_of_10_characters(clinic_admin, clinic_a):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a), recalled=True, recall_reason="Supplier recall")
    assert lots.check_lift(lot=lot, by=clinic_admin, reason="Retest passed") == "Retest passed"  # 13: refused below 15


def test_a_cancel_reason_over_2000_characters_or_a_move_reason_over_500_is_refused(recorded, clinician, coordinator):
    essay = "Recorded on the wrong patient. " * 70  # 2,170 characters
    with pytest.raises(ValidationError) as refused:
        treatments.cancel_treatment(treatment=recorded, by=clinician, reason=essay)
    assert refused.value.message_dict["reason"] == [f"Keep the reason to 2000 characters (it has {len(essay.strip())})."]
    assert Treatment.objects.get(pk=recorded.pk).status != Treatment.Status.CANCELLED
    visit = Reminder.objects.get(treatment=recorded, step__title="Check-in visit")
    with pytest.raises(ValidationError) as refused:
        treatments.move_visit(reminder=visit, occurs_at=NOW + dt.timedelta(days=3), reason=essay, by=coordinator)
    assert refused.value.message_dict["reason"] == [f"Keep the reason to 500 characters (it has {len(essay.strip())})."]
    assert Reminder.objects.get(pk=visit.pk).moved_at is None
