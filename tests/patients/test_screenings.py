"""Screening services: running, overriding, immutability and the treatment gate."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError

from clinic.models import AuditEvent, Role
from patients.intake import reconfirm_intake, record_intake
from patients.models import Screening, ScreeningOverride
from patients.screenings import (
    SCREENING_MAX_DAYS_AHEAD,
    assert_screening_allows_treatment,
    assert_screening_usable,
    override_screening,
    run_screening,
)
from protocols import defaults
from protocols.facts import FACTS
from protocols.models import ProtocolVersion
from tests.factories import (
    ClinicFactory,
    IntakeFactory,
    PatientFactory,
    ProtocolFactory,
    ScreeningFactory,
    VersionFactory,
    negative_answers,
    staff,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=ZoneInfo("UTC"))
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def versions(clinic_a):
    defaults.install_default_rules()
    return defaults.install_example_protocols(clinic=clinic_a)


@pytest.fixture
def microneedling(versions) -> ProtocolVersion:
    return versions["microneedling"]


@pytest.fixture
def ablative(versions) -> ProtocolVersion:
    return versions["fractional_ablative"]


@pytest.fixture
def patient(clinic_a):
    return PatientFactory(clinic=clinic_a)


PLANNED = TODAY + dt.timedelta(days=3)


def screen(patient, version, user, *, planned_for=PLANNED, **answers):
    """Record an intake answering every question "no" but ``answers`` (None: unanswered) and screen it."""
    IntakeFactory(patient=patient, answers=negative_answers(**answers))
    return run_screening(patient=patient, protocol_version=version, planned_for=planned_for, run_by=user)


# --- running ----------------------------------------------------------------------


def test_it_stores_the_outcome_with_findings_who_and_when(patient, microneedling, clinician):
    screening = screen(patient, microneedling, clinician, pregnant=True)
    screening.refresh_from_db()
    assert screening.outcome == "blocked"
    assert screening.run_by == clinician
    assert screening.run_at == NOW
    assert screening.planned_for == TODAY + dt.timedelta(days=3)
    codes = {f["rule_code"] for f in screening.findings}
    assert {"pregnancy-exosome", "pregnancy-procedure"} <= codes
    finding = next(f for f in screening.findings if f["rule_code"] == "pregnancy-exosome")
    assert finding["severity"] == "absolute"
    assert finding["answer"] is True
    assert finding["fact"] == "pregnant"
    assert finding["message"]


def test_it_writes_the_access_log(patient, microneedling, clinician):
    screening = screen(patient, microneedling, clinician)
    event = AuditEvent.objects.get(action="screening.run")
    assert event.actor == clinician
    assert event.clinic == patient.clinic
    assert event.object_id == str(screening.pk)


def test_it_is_clear_when_nothing_applies(patient, microneedling, clinician):
    screening = screen(patient, microneedling, clinician, pregnant=False, hsv_history=True)
    assert screening.outcome == "clear"
    assert screening.findings == []


def test_it_needs_an_override_for_hsv_history_before_an_ablative_laser(patient, ablative, clinician):
    screening = screen(patient, ablative, clinician, hsv_history=True)
    assert screening.outcome == "needs_override"
    (finding,) = screening.findings
    assert "antiviral" in finding["mitigation"].lower()


def test_it_screens_the_latest_intake_unless_told_otherwise(patient, microneedling, clinician, frozen):
    frozen.move_to(NOW - dt.timedelta(days=2))
    old = IntakeFactory(patient=patient, answers=negative_answers(pregnant=True))
    frozen.move_to(NOW)
    IntakeFactory(patient=patient, answers=negative_answers(pregnant=False))
    latest = run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY, run_by=clinician)
    chosen = run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY, run_by=clinician,
                           intake=old)
    assert latest.outcome == "clear"
    assert chosen.outcome == "blocked"
    assert chosen.intake == old


def test_it_refuses_to_screen_without_an_intake(patient, microneedling, clinician):
    with pytest.raises(ValidationError) as error:
        run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY, run_by=clinician)
    assert "intake" in error.value.message_dict
    assert not Screening.objects.exists()


def test_it_refuses_another_patients_intake(patient, microneedling, clinician, clinic_a):
    other = IntakeFactory(patient=PatientFactory(clinic=clinic_a))
    IntakeFactory(patient=patient)
    with pytest.raises(ValidationError) as error:
        run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY, run_by=clinician,
                      intake=other)
    assert "intake" in error.value.message_dict


@pytest.mark.parametrize("planned_for", [dt.date(2020, 1, 1), TODAY - dt.timedelta(days=1), dt.date(2099, 1, 1),
                                         TODAY + dt.timedelta(days=SCREENING_MAX_DAYS_AHEAD + 1)])
def test_it_refuses_a_planned_day_before_today_or_too_far_ahead_and_stores_nothing(
    patient, microneedling, clinician, planned_for
):
    IntakeFactory(patient=patient)
    with pytest.raises(ValidationError) as refused:
        run_screening(patient=patient, protocol_version=microneedling, planned_for=planned_for, run_by=clinician)
    (message,) = refused.value.message_dict["planned_for"]
    assert f"{planned_for:%Y-%m-%d}" in message
    assert "Europe/London" in message
    assert not Screening.objects.exists()
    assert not AuditEvent.objects.filter(action="screening.run").exists()


@pytest.mark.parametrize("days_ahead", [0, 1, SCREENING_MAX_DAYS_AHEAD])
def test_it_accepts_today_up_to_the_limit_ahead(patient, microneedling, clinician, days_ahead):
    IntakeFactory(patient=patient)
    planned_for = TODAY + dt.timedelta(days=days_ahead)
    screening = run_screening(patient=patient, protocol_version=microneedling, planned_for=planned_for,
                              run_by=clinician)
    assert screening.planned_for == planned_for


def test_today_is_the_clinics_date(clinician, versions, frozen):
    # 23:30 UTC on 3 May is 00:30 on 4 May in London: 3 May is yesterday there.
    frozen.move_to(dt.datetime(2026, 5, 3, 23, 30, tzinfo=dt.UTC))
    london = PatientFactory(clinic=versions["microneedling"].protocol.clinic)
    IntakeFactory(patient=london)
    with pytest.raises(ValidationError) as refused:
        run_screening(patient=london, protocol_version=versions["microneedling"], planned_for=dt.date(2026, 5, 3),
                      run_by=clinician)
    assert "before today (2026-05-04, clinic time, Europe/London)" in refused.value.message_dict["planned_for"][0]
    assert run_screening(patient=london, protocol_version=versions["microneedling"], planned_for=dt.date(2026, 5, 4),
                         run_by=clinician).pk


def test_a_backdated_screening_is_judged_on_the_day_it_was_run(patient, microneedling, clinician):
    IntakeFactory(patient=patient)
    run_at = NOW - dt.timedelta(days=200)
    screening = run_screening(patient=patient, protocol_version=microneedling, planned_for=run_at.date(),
                              run_by=clinician, run_at=run_at)
    assert screening.run_at == run_at


def test_it_refuses_drafts_and_other_clinics_versions(patient, clinician, clinic_b, versions):
    IntakeFactory(patient=patient)
    theirs = VersionFactory(protocol=ProtocolFactory(clinic=clinic_b))
    draft = VersionFactory(protocol=ProtocolFactory(clinic=patient.clinic), status=ProtocolVersion.Status.DRAFT)
    for version in (theirs, draft):
        with pytest.raises(ValidationError) as error:
            run_screening(patient=patient, protocol_version=version, planned_for=TODAY, run_by=clinician)
        assert "protocol_version" in error.value.message_dict
    assert not Screening.objects.exists()


def test_it_accepts_a_shared_template_version(patient, clinician, versions):
    IntakeFactory(patient=patient)
    shared = VersionFactory(protocol=ProtocolFactory(clinic=None))
    assert run_screening(patient=patient, protocol_version=shared, planned_for=TODAY, run_by=clinician).pk


def test_it_lets_coordinators_screen_but_not_auditors_or_other_clinics(
    patient, microneedling, coordinator, auditor, clinician_b
):
    IntakeFactory(patient=patient)
    assert run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY, run_by=coordinator)
    for user in (auditor, clinician_b):
        with pytest.raises(PermissionDenied):
            run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY, run_by=user)
    assert Screening.objects.count() == 1


def test_it_asks_to_reconfirm_an_intake_older_than_the_clinics_limit(patient, microneedling, clinician, frozen):
    frozen.move_to(NOW - dt.timedelta(days=40))
    intake = IntakeFactory(patient=patient, answers=negative_answers(pregnant=False))
    frozen.move_to(NOW)
    stale = run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY, run_by=clinician)
    assert stale.outcome == "needs_override"
    assert [f["rule_code"] for f in stale.findings] == ["reconfirm-intake"]
    reconfirm_intake(intake=intake, confirmed_by=clinician)
    fresh = run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY, run_by=clinician)
    assert fresh.outcome == "clear"


def test_a_clinic_with_a_longer_intake_limit_accepts_older_answers(patient, microneedling, clinician, frozen):
    patient.clinic.intake_max_age_days = 60
    patient.clinic.save()
    frozen.move_to(NOW - dt.timedelta(days=40))
    IntakeFactory(patient=patient)
    frozen.move_to(NOW)
    assert run_screening(patient=patient, protocol_version=microneedling, planned_for=TODAY,
                         run_by=clinician).outcome == "clear"


def test_it_reads_the_skin_type_from_the_patient_record_for_lasers(clinic_a, versions, clinician):
    patient = PatientFactory(clinic=clinic_a, fitzpatrick_type=5)
    screening = screen(patient, versions["fractional_nonablative"], clinician, fitzpatrick_type=None)
    assert screening.outcome == "caution"
    assert screening.findings[0]["answer"] == "V"


def test_an_intake_left_on_not_asked_is_not_clear(patient, ablative, clinician):
    # What the staff form sends when every question stays on "Not asked": nothing is stored.
    intake = record_intake(patient=patient, answers={fact.code: "" for fact in FACTS}, recorded_by=clinician)
    assert intake.answers == {}
    screening = run_screening(patient=patient, protocol_version=ablative, planned_for=TODAY, run_by=clinician)
    screening.refresh_from_db()
    assert screening.outcome == "needs_override"
    (finding,) = screening.findings
    assert finding["rule_code"] == "unanswered"
    assert finding["severity"] == "relative"
    assert finding["message"].startswith("Not answered on the intake: Active infection in the treatment area")
    assert "; Pregnant?; Breastfeeding?;" in finding["message"]
    assert "Fitzpatrick skin type" in finding["message"]
    assert "isotretinoin" not in finding["message"]  # an empty date means "never"
    assert finding["mitigation"] == "Ask the patient and record the intake again, or override with what they said."
    assert (finding["fact"], finding["answer"]) == ("", None)


def test_the_unanswered_finding_lists_only_what_the_procedure_needs(patient, microneedling, ablative, clinician):
    IntakeFactory(patient=patient, answers=negative_answers(hsv_history=None, pregnant=None))
    planned = {"planned_for": TODAY, "run_by": clinician}
    (finding,) = run_screening(patient=patient, protocol_version=ablative, **planned).findings
    assert finding["message"] == "Not answered on the intake: Pregnant?; History of HSV (cold sores)?"
    # The HSV rule is for ablative lasers only: microneedling does not need the answer.
    (finding,) = run_screening(patient=patient, protocol_version=microneedling, **planned).findings
    assert finding["message"] == "Not answered on the intake: Pregnant?"


def test_a_skin_type_on_the_patient_record_answers_the_intakes_gap(clinic_a, versions, clinician):
    patient = PatientFactory(clinic=clinic_a, fitzpatrick_type=2)
    IntakeFactory(patient=patient, answers=negative_answers(fitzpatrick_type=None))
    laser = versions["fractional_nonablative"]
    assert run_screening(patient=patient, protocol_version=laser, planned_for=TODAY, run_by=clinician).outcome == "clear"
    unknown = PatientFactory(clinic=clinic_a, fitzpatrick_type=None)
    IntakeFactory(patient=unknown, answers=negative_answers(fitzpatrick_type=None))
    gap = run_screening(patient=unknown, protocol_version=laser, planned_for=TODAY, run_by=clinician)
    assert gap.outcome == "needs_override"
    assert gap.findings[0]["message"] == "Not answered on the intake: Fitzpatrick skin type"


def test_answering_the_questions_clears_what_the_gap_held_up(patient, ablative, clinician, frozen):
    frozen.move_to(NOW - dt.timedelta(minutes=10))
    IntakeFactory(patient=patient, answers=negative_answers(pregnant=None))
    assert run_screening(patient=patient, protocol_version=ablative, planned_for=TODAY,
                         run_by=clinician).outcome == "needs_override"
    frozen.move_to(NOW)
    IntakeFactory(patient=patient, answers=negative_answers(pregnant=False))
    again = run_screening(patient=patient, protocol_version=ablative, planned_for=TODAY, run_by=clinician)
    assert again.outcome == "clear"
    gate(again, on=NOW + dt.timedelta(minutes=5))


def test_a_gap_needs_a_clinicians_override_before_treatment(patient, ablative, clinician):
    IntakeFactory(patient=patient, answers=negative_answers(pregnant=None, breastfeeding=None))
    screening = run_screening(patient=patient, protocol_version=ablative, planned_for=TODAY, run_by=clinician)
    with pytest.raises(ValidationError) as error:
        gate(screening, on=NOW + dt.timedelta(minutes=5))
    assert "override" in error.value.message_dict["screening"][0]
    override_screening(screening=screening, clinician=clinician,
                       reason="Asked in person: not pregnant, not breastfeeding.")
    gate(screening, on=NOW + dt.timedelta(minutes=5))


# --- overriding ----------------------------------------------------------------------------


@pytest.fixture
def needs_override(patient, ablative, clinician):
    return screen(patient, ablative, clinician, hsv_history=True)


def test_a_clinician_overrides_with_a_reason_and_it_is_logged(needs_override, clinician):
    override = override_screening(screening=needs_override, clinician=clinician, reason="Valacyclovir prescribed.")
    assert override.clinician == clinician
    assert override.created_at == NOW
    assert override.reason == "Valacyclovir prescribed."
    assert AuditEvent.objects.filter(action="screening.override", object_id=str(needs_override.pk)).exists()


def test_a_coordinator_or_another_clinics_clinician_cannot_override(needs_override, coordinator, clinician_b):
    for user in (coordinator, clinician_b):
        with pytest.raises(PermissionDenied):
            override_screening(screening=needs_override, clinician=user, reason="Looks fine")
    assert not ScreeningOverride.objects.exists()


def test_a_clinic_admin_cannot_override(needs_override, clinic_admin):
    with pytest.raises(PermissionDenied):
        override_screening(screening=needs_override, clinician=clinic_admin, reason="Looks fine")


def test_a_blocked_or_clear_screening_cannot_be_overridden(patient, microneedling, clinician):
    blocked = screen(patient, microneedling, clinician, pregnant=True)
    clear = screen(patient, microneedling, clinician, pregnant=False)
    for screening in (blocked, clear):
        with pytest.raises(ValidationError) as error:
            override_screening(screening=screening, clinician=clinician, reason="I accept the risk")
        assert "screening" in error.value.message_dict
    assert not ScreeningOverride.objects.exists()


@pytest.mark.parametrize("reason", ["", "   \n"])
def test_an_override_needs_a_written_reason(needs_override, clinician, reason):
    with pytest.raises(ValidationError) as error:
        override_screening(screening=needs_override, clinician=clinician, reason=reason)
    assert "reason" in error.value.message_dict
    assert not ScreeningOverride.objects.exists()


def test_a_screening_is_overridden_once(needs_override, clinician, clinic_a):
    other = staff(Role.CLINICIAN, clinic_a)
    override_screening(screening=needs_override, clinician=clinician, reason="Prophylaxis started.")
    with pytest.raises(ValidationError):
        override_screening(screening=needs_override, clinician=other, reason="Again")
    assert ScreeningOverride.objects.get().clinician == clinician


# --- immutability -------------------------------------------------------------------------------


def test_a_screening_and_its_override_never_change_and_are_never_deleted(needs_override, clinician):
    override = override_screening(screening=needs_override, clinician=clinician, reason="Prophylaxis started.")
    needs_override.outcome = "clear"
    with pytest.raises(PermissionDenied):
        needs_override.save()
    with pytest.raises(PermissionDenied):
        needs_override.delete()
    with pytest.raises(PermissionDenied):
        Screening.objects.filter(pk=needs_override.pk).update(outcome="clear")
    with pytest.raises(PermissionDenied):
        Screening.objects.all().delete()
    override.reason = "edited"
    with pytest.raises(PermissionDenied):
        override.save()
    with pytest.raises(PermissionDenied):
        ScreeningOverride.objects.all().update(reason="edited")
    needs_override.refresh_from_db()
    assert needs_override.outcome == "needs_override"
    assert ScreeningOverride.objects.get().reason == "Prophylaxis started."


# --- the treatment gate --------------------------------------------------------------------------------


def gate(screening, *, patient=None, version=None, on=None):
    assert_screening_allows_treatment(
        screening=screening, patient=patient or screening.patient,
        protocol_version=version or screening.protocol_version, on=on or NOW,
    )


@pytest.mark.parametrize("outcome", ["clear", "caution"])
def test_the_gate_lets_clear_and_caution_screenings_through(outcome):
    gate(ScreeningFactory(outcome=outcome))


def test_the_gate_needs_an_override_for_a_needs_override_screening(needs_override, clinician):
    on_the_planned_day = NOW + dt.timedelta(days=3)
    with pytest.raises(ValidationError) as error:
        gate(needs_override, on=on_the_planned_day)
    assert "override" in error.value.message_dict["screening"][0]
    override_screening(screening=needs_override, clinician=clinician, reason="Prophylaxis started.")
    gate(needs_override, on=on_the_planned_day)


def test_the_gate_never_lets_a_blocked_screening_through():
    with pytest.raises(ValidationError) as error:
        gate(ScreeningFactory(outcome="blocked"))
    assert list(error.value.message_dict) == ["screening"]


def test_the_gate_needs_the_same_patient_and_protocol_version(clinic_a):
    screening = ScreeningFactory(patient=PatientFactory(clinic=clinic_a))
    with pytest.raises(ValidationError):
        gate(screening, patient=PatientFactory(clinic=clinic_a))
    with pytest.raises(ValidationError):
        gate(screening, version=VersionFactory(protocol=screening.protocol_version.protocol))
    with pytest.raises(ValidationError):
        assert_screening_allows_treatment(
            screening=None, patient=screening.patient, protocol_version=screening.protocol_version, on=NOW
        )


def test_the_gate_accepts_a_screening_up_to_30_days_old_and_not_a_second_more():
    screening = ScreeningFactory(run_at=NOW, planned_for=TODAY + dt.timedelta(days=30))
    gate(screening, on=NOW + dt.timedelta(days=30))
    with pytest.raises(ValidationError) as error:
        gate(screening, on=NOW + dt.timedelta(days=30, seconds=1))
    assert "30 days" in error.value.message_dict["screening"][0]


# NOW is 09:30 UTC, 10:30 in London (summer time), where clinic_a is.


def test_the_gate_refuses_a_screening_run_after_the_procedure_started(clinic_a):
    screening = ScreeningFactory(patient=PatientFactory(clinic=clinic_a), run_at=NOW)
    with pytest.raises(ValidationError) as error:
        gate(screening, on=NOW - dt.timedelta(minutes=55))
    assert error.value.message_dict == {"screening": [
        "The screening was run at 10:30, after the procedure started (09:35); a screening must precede treatment. "
        "Clinic time (Europe/London)."
    ]}


def test_the_gate_names_the_dates_when_the_screening_was_run_on_a_later_day(clinic_a):
    screening = ScreeningFactory(patient=PatientFactory(clinic=clinic_a), run_at=NOW)
    with pytest.raises(ValidationError) as error:
        gate(screening, on=NOW - dt.timedelta(days=1))
    assert "run at 2026-05-04 10:30, after the procedure started (2026-05-03 10:30)" in error.value.messages[0]


def test_the_gate_compares_to_the_minute_the_procedure_start_is_entered_in():
    screening = ScreeningFactory(run_at=NOW + dt.timedelta(seconds=40))  # 09:30:40
    gate(screening, on=NOW)  # started "09:30": the same minute
    with pytest.raises(ValidationError):
        gate(screening, on=NOW - dt.timedelta(seconds=1))  # started 09:29:59
    later = ScreeningFactory(run_at=NOW + dt.timedelta(minutes=1))  # 09:31:00
    with pytest.raises(ValidationError) as error:
        gate(later, on=NOW + dt.timedelta(seconds=59))
    assert "must precede treatment" in error.value.messages[0]


def test_the_gate_lets_a_screening_run_before_the_procedure_started_through():
    gate(ScreeningFactory(run_at=NOW - dt.timedelta(hours=2)), on=NOW)
    gate(ScreeningFactory(run_at=NOW - dt.timedelta(minutes=1)), on=NOW)


def test_the_gate_refuses_an_override_recorded_after_the_procedure_started(patient, ablative, clinician, frozen):
    frozen.move_to(NOW - dt.timedelta(hours=2))
    needs_override = screen(patient, ablative, clinician, planned_for=TODAY, hsv_history=True)  # 07:30 UTC, 08:30 in London
    frozen.move_to(NOW)
    override_screening(screening=needs_override, clinician=clinician, reason="Valacyclovir prescribed.")  # 10:30
    with pytest.raises(ValidationError) as error:
        gate(needs_override, on=NOW - dt.timedelta(hours=1))
    assert error.value.message_dict == {"screening": [
        "The override was recorded at 10:30, after the procedure started (09:30); the override must precede "
        "treatment too. Clinic time (Europe/London)."
    ]}
    gate(needs_override, on=NOW + dt.timedelta(seconds=30))  # the override's minute
    gate(needs_override, on=NOW + dt.timedelta(hours=1))


# --- the gate: screened for the day of the procedure ------------------------------------------------


def test_a_screening_planned_for_a_later_day_does_not_clear_a_procedure_today(patient, microneedling, clinician):
    # Last isotretinoin dose 160 days ago: inside the 6-month window today, outside it in 30 days.
    last_dose = (TODAY - dt.timedelta(days=160)).isoformat()
    today = screen(patient, microneedling, clinician, planned_for=TODAY, isotretinoin_last_dose=last_dose)
    later = screen(patient, microneedling, clinician, planned_for=TODAY + dt.timedelta(days=30),
                   isotretinoin_last_dose=last_dose)
    assert (today.outcome, later.outcome) == ("needs_override", "clear")
    with pytest.raises(ValidationError) as error:
        gate(later, on=NOW + dt.timedelta(minutes=10))
    assert error.value.message_dict == {"screening": [
        "The screening was run for a procedure on 2026-06-03, but this procedure started on 2026-05-04 "
        "(clinic time, Europe/London); screen the patient again for 2026-05-04."
    ]}


def test_a_screening_planned_for_an_earlier_day_does_not_clear_a_later_procedure(clinic_a):
    # Windows only get safer later, but the answers (medication, pregnancy) and the intake's age do not.
    screening = ScreeningFactory(patient=PatientFactory(clinic=clinic_a), run_at=NOW, planned_for=TODAY)
    with pytest.raises(ValidationError) as error:
        gate(screening, on=NOW + dt.timedelta(days=1))
    assert "screen the patient again for 2026-05-05" in error.value.messages[0]


def test_the_procedures_day_is_the_clinics_date_of_its_start():
    tokyo = ClinicFactory(slug="tokyo", time_zone="Asia/Tokyo")
    patient = PatientFactory(clinic=tokyo, time_zone="Europe/London")  # the patient's zone does not count
    # 23:30 UTC on 3 May is 08:30 on 4 May in Tokyo.
    started = dt.datetime(2026, 5, 3, 23, 30, tzinfo=ZoneInfo("UTC"))
    screening = ScreeningFactory(patient=patient, run_at=started - dt.timedelta(hours=1), planned_for=TODAY)
    gate(screening, on=started)
    utc_day = ScreeningFactory(patient=patient, run_at=started - dt.timedelta(hours=1),
                               planned_for=started.date())
    with pytest.raises(ValidationError) as error:
        gate(utc_day, on=started)
    assert "this procedure started on 2026-05-04 (clinic time, Asia/Tokyo)" in error.value.messages[0]


def test_a_screening_run_after_the_start_says_so_rather_than_to_screen_again(clinic_a):
    # Screening again for the procedure's day would not help: it would still come after the start.
    screening = ScreeningFactory(patient=PatientFactory(clinic=clinic_a), run_at=NOW, planned_for=TODAY)
    with pytest.raises(ValidationError) as error:
        gate(screening, on=NOW - dt.timedelta(days=1))
    assert "a screening must precede treatment" in error.value.messages[0]


def test_a_listed_screening_need_not_be_for_today_but_the_gate_judges_its_day(clinic_a):
    # A procedure done yesterday is recorded today on yesterday's screening.
    yesterday = NOW - dt.timedelta(days=1)
    screening = ScreeningFactory(patient=PatientFactory(clinic=clinic_a), run_at=yesterday - dt.timedelta(hours=1),
                                 planned_for=yesterday.date())
    assert_screening_usable(
        screening=screening, patient=screening.patient, protocol_version=screening.protocol_version, on=NOW
    )
    gate(screening, on=yesterday)
    with pytest.raises(ValidationError):
        gate(screening, on=NOW)
