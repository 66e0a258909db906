"""Treatment services: record with its timeline in one transaction, reschedule, cancel, resend, cancel one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError

from clinic.models import AuditEvent, Clinic, Role
from patients import treatments
from patients.models import ExosomeApplication, Reminder, Treatment, TreatmentArm
from patients.screenings import override_screening
from patients.treatments import ApplicationInput, ArmInput
from protocols.models import ProtocolVersion
from tests.factories import (
    ClinicFactory,
    LotFactory,
    ProductFactory,
    ScreeningFactory,
    StepFactory,
    staff,
    treatable_patient,
)

pytestmark = pytest.mark.django_db

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
ENDED = dt.datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # 11:00 in Berlin
Status = Reminder.Status

STEPS = [
    {"title": "Cleanse tonight", "day": 0, "local_time": dt.time(20, 0)},
    {"title": "Serum nightly", "kind": "home_application", "day": 1, "local_time": dt.time(20, 0),
     "repeat_count": 3, "repeat_every_days": 1},
    {"title": "Apply exosomes in clinic", "kind": "in_clinic_application", "timing": "offset", "offset_value": 0,
     "day": None, "local_time": None, "sends_reminder": False},
    {"title": "Check-in visit", "kind": "follow_up_visit", "day": 7, "local_time": dt.time(15, 0),
     "remind_minutes_before": 24 * 60},
]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def plan(clinic_a):
    return treatable_patient(clinic_a, steps=STEPS, time_zone="Europe/Berlin")


@pytest.fixture
def lot(clinic_a):
    return LotFactory(product=ProductFactory(clinic=clinic_a))


def record(plan, clinician, **overrides):
    patient, version, screening = plan
    values = {
        "patient": patient, "protocol_version": version, "screening": screening, "clinician": clinician,
        "started_at": ENDED - dt.timedelta(minutes=45), "ended_at": ENDED, "areas": "full face",
    }
    return treatments.record_treatment(**{**values, **overrides})


def local(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(BERLIN).replace(tzinfo=None)


# --- recording ----------------------------------------------------------------------------


def test_it_records_the_treatment_with_its_application_and_the_patients_timeline(plan, clinician, lot):
    treatment = record(plan, clinician, applications=[ApplicationInput(lot=lot, volume_ml=Decimal("2.5"))],
                       needle_depth_mm=Decimal("1.5"), passes=2)
    assert treatment.status == Treatment.Status.RECORDED
    application = ExosomeApplication.objects.get(treatment=treatment)
    assert (application.lot, application.volume_ml, application.applied_by) == (lot, Decimal("2.50"), clinician)
    rows = list(Reminder.objects.filter(treatment=treatment).select_related("step").order_by("occurs_at"))
    assert [(r.step.title, r.occurrence) for r in rows] == [
        ("Cleanse tonight", 0), ("Serum nightly", 0), ("Serum nightly", 1), ("Serum nightly", 2),
        ("Check-in visit", 0),
    ]
    assert {r.status for r in rows} == {Status.SCHEDULED}
    assert local(rows[0].occurs_at) == dt.datetime(2026, 5, 4, 20, 0)
    assert local(rows[3].occurs_at) == dt.datetime(2026, 5, 7, 20, 0)
    visit = rows[4]
    assert local(visit.occurs_at) == dt.datetime(2026, 5, 11, 15, 0)
    assert local(visit.due_at) == dt.datetime(2026, 5, 10, 15, 0)  # a day before
    assert AuditEvent.objects.filter(action="treatment.record", object_id=str(treatment.pk)).exists()


def test_it_never_duplicates_reminder_rows_when_scheduling_again(plan, clinician):
    treatment = record(plan, clinician)
    before = list(Reminder.objects.filter(treatment=treatment).values_list("pk", "due_at"))
    assert treatments.schedule_reminders(treatment=treatment) == 5
    assert treatments.schedule_reminders(treatment=treatment) == 5
    assert list(Reminder.objects.filter(treatment=treatment).values_list("pk", "due_at")) == before


def test_it_stores_steps_already_past_at_recording_as_skipped(plan, clinician, frozen):
    frozen.move_to(dt.datetime(2026, 5, 6, 10, 0, tzinfo=UTC))  # recorded two days late
    treatment = record(plan, clinician)
    statuses = dict(
        Reminder.objects.filter(treatment=treatment).values_list("occurs_at", "status")
    )
    assert statuses[dt.datetime(2026, 5, 4, 18, 0, tzinfo=UTC)] == Status.SKIPPED
    assert statuses[dt.datetime(2026, 5, 5, 18, 0, tzinfo=UTC)] == Status.SKIPPED
    assert statuses[dt.datetime(2026, 5, 6, 18, 0, tzinfo=UTC)] == Status.SCHEDULED


def test_it_refuses_a_coordinator_and_writes_nothing(plan, coordinator):
    with pytest.raises(PermissionDenied):
        record(plan, coordinator)
    assert not Treatment.objects.exists()


def test_it_refuses_a_clinician_of_another_clinic(plan, clinician_b):
    with pytest.raises(PermissionDenied):
        record(plan, clinician_b)
    assert not Treatment.objects.exists()


@pytest.mark.parametrize(
    ("outcome", "age_days", "message"),
    [
        ("blocked", 0, "blocks this procedure"),
        ("needs_override", 0, "override"),
        ("clear", 31, "older than 30 days"),
    ],
)
def test_it_refuses_a_screening_that_does_not_allow_treatment(plan, clinician, outcome, age_days, message):
    patient, version, _ = plan
    screening = ScreeningFactory(
        patient=patient, protocol_version=version, outcome=outcome, run_at=NOW - dt.timedelta(days=age_days)
    )
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, screening=screening)
    assert message in " ".join(caught.value.message_dict["screening"])
    assert not Treatment.objects.exists()
    assert not Reminder.objects.exists()


def test_it_refuses_another_patients_screening(plan, clinician, clinic_a):
    other, _version, other_screening = treatable_patient(clinic_a)
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, screening=other_screening)
    assert "screening" in caught.value.message_dict



def test_it_refuses_a_screening_run_after_the_procedure_started_and_writes_nothing(plan, clinician):
    patient, version, _ = plan
    # The procedure started at 08:15 UTC (09:15 at the London clinic; the patient lives in Berlin).
    late = ScreeningFactory(patient=patient, protocol_version=version, run_at=ENDED - dt.timedelta(minutes=30))
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, screening=late)
    assert caught.value.message_dict == {"screening": [
        "The screening was run at 09:30, after the procedure started (09:15); a screening must precede treatment. "
        "Clinic time (Europe/London)."
    ]}
    assert not Treatment.objects.exists()
    assert not Reminder.objects.exists()


def test_a_screening_run_in_the_minute_the_procedure_started_precedes_it(plan, clinician):
    patient, version, _ = plan
    started = ENDED - dt.timedelta(minutes=45)
    same_minute = ScreeningFactory(patient=patient, protocol_version=version, run_at=started + dt.timedelta(seconds=40))
    assert record(plan, clinician, screening=same_minute).screening == same_minute


def test_it_refuses_an_override_recorded_after_the_procedure_started(plan, clinician):
    patient, version, _ = plan
    screening = ScreeningFactory(patient=patient, protocol_version=version, outcome="needs_override",
                                 run_at=NOW - dt.timedelta(days=1))
    override_screening(screening=screening, clinician=clinician, reason="Antiviral prophylaxis started.")  # at NOW
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, screening=screening)
    assert "The override was recorded at 10:30, after the procedure started (09:15)" in caught.value.messages[0]
    assert not Treatment.objects.exists()
    started = NOW + dt.timedelta(seconds=20)  # the override's minute
    assert record(plan, clinician, screening=screening, started_at=started, ended_at=started + dt.timedelta(minutes=5))

@pytest.mark.parametrize(
    ("lot_kwargs", "message"),
    [
        ({"recalled": True, "recall_reason": "sterility", "recalled_at": ENDED - dt.timedelta(days=1)},
         "has been recalled (since 2026-05-03)"),
        ({"expiry_date": dt.date(2026, 5, 1)}, "expired on 2026-05-01"),
    ],
)
def test_it_refuses_an_unusable_lot_and_writes_nothing(plan, clinician, clinic_a, lot_kwargs, message):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a), received_date=dt.date(2026, 1, 1), **lot_kwargs)
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, applications=[ApplicationInput(lot=lot, volume_ml=Decimal("1"))])
    assert message in caught.value.message_dict["applications"][0]
    assert not Treatment.objects.exists()


def test_it_records_a_lot_recalled_only_after_it_was_applied(plan, clinician, clinic_a):
    """Recorded after the fact: the patient must be on the recall's list, so the real lot is kept."""
    lot = LotFactory(product=ProductFactory(clinic=clinic_a), recalled=True, recall_reason="sterility",
                     recalled_at=ENDED + dt.timedelta(minutes=20))
    treatment = record(plan, clinician, applications=[ApplicationInput(lot=lot, volume_ml=Decimal("1"),
                                                                       minutes_after_procedure=10)])
    assert treatment.applications.get().lot == lot
    assert treatments.recalled_lots(treatment) == [lot]


def test_it_refuses_a_lot_applied_after_its_recall_even_within_the_procedure_day(plan, clinician, clinic_a):
    lot = LotFactory(product=ProductFactory(clinic=clinic_a), recalled=True, recall_reason="sterility",
                     recalled_at=ENDED + dt.timedelta(minutes=20))
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, applications=[ApplicationInput(lot=lot, volume_ml=Decimal("1"),
                                                               minutes_after_procedure=25)])
    assert caught.value.message_dict["applications"] == [
        f"Application 1: Lot {lot.lot_number} has been recalled (since 2026-05-04)."
    ]
    assert not Treatment.objects.exists()


def test_it_refuses_another_clinics_lot(plan, clinician, clinic_b):
    lot = LotFactory(product=ProductFactory(clinic=clinic_b))
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, applications=[ApplicationInput(lot=lot, volume_ml=Decimal("1"))])
    assert "another clinic" in caught.value.message_dict["applications"][0]


def test_it_refuses_impossible_times_with_field_errors(plan, clinician):
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, started_at=ENDED + dt.timedelta(minutes=5))
    assert "cannot end before it started" in caught.value.message_dict["ended_at"][0]
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, started_at=NOW + dt.timedelta(hours=2), ended_at=NOW + dt.timedelta(hours=3))
    assert "future" in caught.value.message_dict["ended_at"][0]


@pytest.mark.parametrize(
    ("device_settings", "field", "message"),
    [
        ({"needle_depth_mm": Decimal("-1")}, "needle_depth_mm", "A needle depth is more than 0 mm"),
        ({"needle_depth_mm": Decimal("0")}, "needle_depth_mm", "A needle depth is more than 0 mm"),
        ({"needle_depth_mm": Decimal("8.01")}, "needle_depth_mm", "No microneedling reaches deeper than 8 mm"),
        ({"needle_depth_mm": Decimal("1.255")}, "needle_depth_mm", "decimal places"),
        ({"passes": 0}, "passes", "A treatment has at least one pass"),
        ({"passes": -2}, "passes", "A treatment has at least one pass"),
    ],
)
def test_it_refuses_impossible_device_settings_and_writes_nothing(plan, clinician, device_settings, field, message):
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, **device_settings)
    assert list(caught.value.message_dict) == [field]
    assert message in " ".join(caught.value.message_dict[field])
    assert not Treatment.objects.exists()
    assert not Reminder.objects.exists()


@pytest.mark.parametrize(("depth", "passes"), [(Decimal("0.25"), 1), (Decimal("8"), 4), (None, None)])
def test_it_records_any_needle_depth_a_device_reaches(plan, clinician, depth, passes):
    treatment = record(plan, clinician, needle_depth_mm=depth, passes=passes)
    assert (treatment.needle_depth_mm, treatment.passes) == (depth, passes)


def test_the_treatment_model_refuses_a_needle_depth_of_zero_or_less_and_no_passes(plan, clinician):
    treatment = record(plan, clinician)
    treatment.needle_depth_mm, treatment.passes = Decimal("-1"), 0
    with pytest.raises(ValidationError) as caught:
        treatment.full_clean()
    assert set(caught.value.message_dict) == {"needle_depth_mm", "passes"}


def test_it_records_split_face_arms_with_the_application_on_the_exosome_side(plan, clinician, lot):
    treatment = record(
        plan, clinician,
        arms=[ArmInput(label="left", product=lot.product), ArmInput(label="right", is_control=True,
                                                                    control_description="saline")],
        applications=[ApplicationInput(lot=lot, volume_ml=Decimal("1.5"), arm_label="Left")],
    )
    arms = {arm.label: arm for arm in TreatmentArm.objects.filter(treatment=treatment)}
    assert set(arms) == {"left", "right"}
    assert arms["right"].is_control
    assert ExosomeApplication.objects.get(treatment=treatment).arm == arms["left"]


def test_it_refuses_exosomes_on_the_control_arm_and_a_single_arm(plan, clinician, lot):
    with pytest.raises(ValidationError) as caught:
        record(
            plan, clinician,
            arms=[ArmInput(label="left", product=lot.product), ArmInput(label="right", is_control=True)],
            applications=[ApplicationInput(lot=lot, volume_ml=Decimal("1"), arm_label="right")],
        )
    assert "control" in caught.value.message_dict["applications"][0]
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, arms=[ArmInput(label="left", product=lot.product)])
    assert "exactly two arms" in caught.value.message_dict["arms"][0]
    assert not Treatment.objects.exists()


def test_it_writes_the_history_of_the_treatment_its_arms_and_its_application(plan, clinician, lot):
    treatment = record(
        plan, clinician,
        arms=[ArmInput(label="left", product=lot.product), ArmInput(label="right", is_control=True)],
        applications=[ApplicationInput(lot=lot, volume_ml=Decimal("1.5"), arm_label="left")],
    )
    assert list(treatment.history.values_list("history_type", "areas", "history_change_reason")) == [
        ("+", "full face", None)
    ]
    arms = TreatmentArm.history.filter(treatment_id=treatment.pk)
    assert sorted(arms.values_list("label", "history_type")) == [("left", "+"), ("right", "+")]
    application = ExosomeApplication.objects.get(treatment=treatment)
    assert list(application.history.values_list("arm_id", "history_type")) == [(application.arm_id, "+")]


def test_a_lots_expiry_is_judged_on_the_clinics_date_of_the_procedure(clinic_b, clinician_b):
    # 22:00 in New York on 3 May is already 4 May in UTC: the lot that expires on 3 May is still usable
    # that evening, as the form says (the model once judged by the UTC date and refused what the form allowed).
    patient, version, _ = treatable_patient(clinic_b, steps=STEPS)
    plan = (patient, version, ScreeningFactory(patient=patient, protocol_version=version, planned_for=dt.date(2026, 5, 3)))
    lot = LotFactory(product=ProductFactory(clinic=clinic_b), expiry_date=dt.date(2026, 5, 3),
                     received_date=dt.date(2026, 1, 1))
    evening = dt.datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
    treatment = record(plan, clinician_b, started_at=evening - dt.timedelta(minutes=45), ended_at=evening,
                       applications=[ApplicationInput(lot=lot, volume_ml=Decimal("1"))])
    assert treatment.applications.get().lot == lot
    older = LotFactory(product=lot.product, expiry_date=dt.date(2026, 5, 2), received_date=dt.date(2026, 1, 1))
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician_b, started_at=evening - dt.timedelta(minutes=45), ended_at=evening,
               applications=[ApplicationInput(lot=older, volume_ml=Decimal("1"))])
    assert "expired on 2026-05-02" in str(caught.value)
    assert Treatment.objects.count() == 1


def test_it_refuses_a_version_retired_since_it_was_loaded_and_another_clinics_version(plan, clinician, clinic_b):
    _patient, version, _screening = plan
    _other_patient, other_version, _other_screening = treatable_patient(clinic_b)
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, protocol_version=other_version)
    assert "published protocol version" in caught.value.message_dict["protocol_version"][0]
    ProtocolVersion.objects.filter(pk=version.pk).update(status=ProtocolVersion.Status.RETIRED)
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician)  # the instance still says published
    assert "published protocol version" in caught.value.message_dict["protocol_version"][0]
    assert not Treatment.objects.exists()


def test_it_times_the_reminders_by_the_steps_the_version_has_now(plan, clinician):
    first = record(plan, clinician)
    patient, version, _screening = plan
    StepFactory(version=version, title="Sunscreen", day=2, local_time=dt.time(9, 0))
    # Another procedure, screened for itself: one screening clears one treatment.
    second = record(plan, clinician, screening=ScreeningFactory(patient=patient, protocol_version=version))
    assert first.reminders.count() == 5
    assert "Sunscreen" in set(second.reminders.values_list("step__title", flat=True))


def test_it_refuses_a_procedure_today_on_a_screening_planned_for_a_later_day(plan, clinician):
    patient, version, _ = plan
    later = ScreeningFactory(patient=patient, protocol_version=version, planned_for=dt.date(2026, 6, 3))
    with pytest.raises(ValidationError) as caught:
        record(plan, clinician, screening=later)
    assert caught.value.message_dict == {"screening": [
        "The screening was run for a procedure on 2026-06-03, but this procedure started on 2026-05-04 "
        "(clinic time, Europe/London); screen the patient again for 2026-05-04."
    ]}
    assert not Treatment.objects.exists()


# --- rescheduling and cancelling ----------------------------------------------------------------


def test_it_moves_pending_reminders_when_the_procedure_time_changes_and_keeps_sent_ones():
    # A clinic in Tokyo and a patient in Berlin: moved from 18:00 to 06:00 in Tokyo, the procedure stays
    # on the day it was screened for there, and moves to the evening before on the patient's clock.
    tokyo = ClinicFactory(slug="tokyo", time_zone="Asia/Tokyo")
    clinician = staff(Role.CLINICIAN, tokyo, username="clinician_tokyo")
    patient, version, _ = treatable_patient(tokyo, steps=STEPS, time_zone="Europe/Berlin")
    # Screened three days before, so the procedure may be moved earlier.
    early = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(days=3),
                             planned_for=dt.date(2026, 5, 4))
    treatment = record((patient, version, early), clinician)
    tonight = Reminder.objects.get(treatment=treatment, step__title="Cleanse tonight")
    Reminder.objects.filter(pk=tonight.pk).update(status=Status.SENT, sent_at=NOW)
    queued = Reminder.objects.get(treatment=treatment, step__title="Serum nightly", occurrence=0)
    Reminder.objects.filter(pk=queued.pk).update(status=Status.QUEUED, lease_until=NOW + dt.timedelta(minutes=5))

    moved = treatments.reschedule_treatment(
        treatment=treatment, started_at=ENDED - dt.timedelta(hours=12, minutes=30), ended_at=ENDED - dt.timedelta(hours=12),
        by=clinician,
    )

    assert moved == treatments.Recomputed(scheduled=4)
    assert Reminder.objects.filter(treatment=treatment).count() == 5
    tonight.refresh_from_db()
    assert (tonight.status, tonight.occurs_at) == (Status.SENT, dt.datetime(2026, 5, 4, 18, 0, tzinfo=UTC))
    queued.refresh_from_db()
    assert queued.status == Status.SCHEDULED and queued.lease_until is None
    assert local(queued.occurs_at) == dt.datetime(2026, 5, 4, 20, 0)  # day 1 is now today
    visit = Reminder.objects.get(treatment=treatment, step__title="Check-in visit")
    assert local(visit.occurs_at) == dt.datetime(2026, 5, 10, 15, 0)
    treatment.refresh_from_db()
    assert treatment.ended_at == ENDED - dt.timedelta(hours=12)
    assert treatment.history.count() == 2


def test_it_refuses_to_move_the_procedure_to_another_day_than_its_screening_was_for(plan, clinician):
    patient, version, _ = plan
    # Run early enough to precede either day: only the day it was planned for stands in the way.
    early = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(days=3))
    treatment = record(plan, clinician, screening=early)
    before = list(Reminder.objects.filter(treatment=treatment).values_list("pk", "occurs_at", "status"))
    with pytest.raises(ValidationError) as caught:
        treatments.reschedule_treatment(
            treatment=treatment, started_at=ENDED - dt.timedelta(days=1, minutes=45), ended_at=ENDED - dt.timedelta(days=1),
            by=clinician,
        )
    assert caught.value.message_dict == {"started_at": [
        "The screening was run for a procedure on 2026-05-04, but this procedure started on 2026-05-03 "
        "(clinic time, Europe/London); screen the patient again for 2026-05-03."
    ]}
    treatment.refresh_from_db()
    assert (treatment.started_at, treatment.ended_at) == (ENDED - dt.timedelta(minutes=45), ENDED)
    assert list(Reminder.objects.filter(treatment=treatment).values_list("pk", "occurs_at", "status")) == before



def test_a_treatment_whose_day_moved_with_the_clinics_zone_can_still_be_corrected_within_it(plan, clinician):
    # Screened for and done on 4 May in London (08:15-09:00 UTC); the clinic's zone is then corrected to
    # Honolulu, where the procedure started at 22:15 on 3 May. Correcting its time within 3 May changes nothing
    # between its day and its screening; moving it to another day would.
    patient, version, _ = plan
    early = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(days=3))
    treatment = record(plan, clinician, screening=early)
    Clinic.objects.filter(pk=patient.clinic_id).update(time_zone="Pacific/Honolulu")
    treatment = Treatment.objects.select_related("patient__clinic", "screening").get(pk=treatment.pk)

    treatments.reschedule_treatment(
        treatment=treatment, started_at=ENDED - dt.timedelta(minutes=75), ended_at=ENDED - dt.timedelta(minutes=30),
        by=clinician,
    )
    treatment.refresh_from_db()
    assert treatment.ended_at == ENDED - dt.timedelta(minutes=30)

    with pytest.raises(ValidationError) as caught:
        treatments.reschedule_treatment(
            treatment=treatment, started_at=ENDED - dt.timedelta(days=1, minutes=45),
            ended_at=ENDED - dt.timedelta(days=1), by=clinician,
        )
    assert caught.value.message_dict == {"started_at": [
        "The screening was run for a procedure on 2026-05-04, but this procedure started on 2026-05-02 "
        "(clinic time, Pacific/Honolulu); screen the patient again for 2026-05-02."
    ]}


def test_it_refuses_to_move_the_procedure_before_its_screening_and_changes_nothing(plan, clinician):
    treatment = record(plan, clinician)  # screened at 09:30 UTC the day before (10:30 at the London clinic)
    before = list(Reminder.objects.filter(treatment=treatment).values_list("pk", "occurs_at", "status"))
    with pytest.raises(ValidationError) as caught:
        treatments.reschedule_treatment(
            treatment=treatment, started_at=ENDED - dt.timedelta(days=1, minutes=45), ended_at=ENDED - dt.timedelta(days=1),
            by=clinician,
        )
    assert caught.value.message_dict == {"started_at": [
        "The screening was run at 10:30, after the procedure started (09:15); a screening must precede treatment. "
        "Clinic time (Europe/London)."
    ]}
    treatment.refresh_from_db()
    assert (treatment.started_at, treatment.ended_at) == (ENDED - dt.timedelta(minutes=45), ENDED)
    assert list(Reminder.objects.filter(treatment=treatment).values_list("pk", "occurs_at", "status")) == before
    assert treatment.history.count() == 1

def test_it_cancels_a_treatment_and_its_pending_reminders_only(plan, clinician):
    treatment = record(plan, clinician)
    sent = Reminder.objects.filter(treatment=treatment).order_by("occurs_at").first()
    Reminder.objects.filter(pk=sent.pk).update(status=Status.SENT)
    with pytest.raises(ValidationError):
        treatments.cancel_treatment(treatment=treatment, by=clinician, reason="  ")
    assert treatments.cancel_treatment(treatment=treatment, by=clinician, reason="Patient moved away") == 4
    treatment.refresh_from_db()
    assert (treatment.status, treatment.cancelled_by, treatment.cancel_reason) == (
        Treatment.Status.CANCELLED, clinician, "Patient moved away"
    )
    statuses = sorted(Reminder.objects.filter(treatment=treatment).values_list("status", flat=True))
    assert statuses == [Status.CANCELLED] * 4 + [Status.SENT]
    with pytest.raises(ValidationError):
        treatments.reschedule_treatment(treatment=treatment, started_at=ENDED, ended_at=ENDED, by=clinician)


# --- one reminder ---------------------------------------------------------------------------------


def test_it_resends_a_sent_reminder_as_a_new_message(plan, clinician, coordinator):
    treatment = record(plan, clinician)
    reminder = Reminder.objects.filter(treatment=treatment).first()
    Reminder.objects.filter(pk=reminder.pk).update(status=Status.SENT, attempts=1, due_at=NOW - dt.timedelta(hours=1))
    reminder.refresh_from_db()
    first_id = reminder.message_id
    with pytest.raises(ValidationError):
        treatments.resend_reminder(reminder=Reminder.objects.filter(status=Status.SCHEDULED).first(), by=coordinator)
    resent = treatments.resend_reminder(reminder=reminder, by=coordinator)
    assert (resent.status, resent.attempts, resent.due_at) == (Status.SCHEDULED, 0, NOW)
    assert resent.message_id != first_id
    assert AuditEvent.objects.filter(action="reminder.resend", object_id=str(reminder.pk)).exists()


def test_of_two_tabs_cancelling_one_treatment_the_second_is_refused_and_the_first_reason_stays(plan, clinician):
    treatment = record(plan, clinician)
    stale = Treatment.objects.get(pk=treatment.pk)  # the second tab loaded the treatment before the first cancelled
    first_reason = "Recorded on the wrong patient:\nthe right one is Anna M., born 1990."
    treatments.cancel_treatment(treatment=treatment, by=clinician, reason=first_reason)

    with pytest.raises(ValidationError) as refused:
        treatments.cancel_treatment(treatment=stale, by=clinician, reason="Entered twice by mistake")

    assert refused.value.message_dict == {"status": ["This treatment is already cancelled."]}
    stored = Treatment.objects.get(pk=treatment.pk)
    assert stored.cancel_reason == first_reason  # kept as written, line break included
    assert AuditEvent.objects.filter(action="treatment.cancel").count() == 1


def test_a_reminder_cancelled_before_it_was_due_goes_back_to_its_own_time(plan, clinician, coordinator):
    treatment = record(plan, clinician)
    evening = Reminder.objects.filter(treatment=treatment).order_by("due_at").first()
    due = evening.due_at
    assert due > NOW
    treatments.cancel_reminder(reminder=evening, by=coordinator)
    resent = treatments.resend_reminder(reminder=evening, by=coordinator)
    assert (resent.status, resent.due_at) == (Status.SCHEDULED, due)  # not now: "tonight" must not arrive at 11:30


def test_it_refuses_to_resend_to_a_patient_who_unsubscribed(plan, clinician):
    treatment = record(plan, clinician)
    reminder = Reminder.objects.filter(treatment=treatment).first()
    Reminder.objects.filter(pk=reminder.pk).update(status=Status.SENT)
    treatment.patient.__class__.objects.filter(pk=treatment.patient_id).update(opted_out_at=NOW)
    reminder.refresh_from_db()
    with pytest.raises(ValidationError, match=r"The patient unsubscribed on 2\d{3}-\d\d-\d\d \d\d:\d\d UTC\. The reminder"):
        treatments.resend_reminder(reminder=reminder, by=clinician)


def test_it_cancels_one_pending_reminder_but_not_a_sent_one(plan, clinician, clinic_a):
    treatment = record(plan, clinician)
    first, second = Reminder.objects.filter(treatment=treatment).order_by("occurs_at")[:2]
    assert treatments.cancel_reminder(reminder=first, by=clinician).status == Status.CANCELLED
    Reminder.objects.filter(pk=second.pk).update(status=Status.SENT)
    with pytest.raises(ValidationError):
        treatments.cancel_reminder(reminder=second, by=clinician)
    auditor = staff(Role.AUDITOR, clinic_a, username="auditor_x")
    with pytest.raises(PermissionDenied):
        treatments.cancel_reminder(reminder=Reminder.objects.filter(status=Status.SCHEDULED).first(), by=auditor)


def test_it_shows_the_timeline_with_done_sent_failed_due_and_upcoming(plan, clinician, frozen):
    treatment = record(plan, clinician)
    rows = list(Reminder.objects.filter(treatment=treatment).order_by("occurs_at"))
    Reminder.objects.filter(pk=rows[0].pk).update(status=Status.SENT, done_at=NOW)
    Reminder.objects.filter(pk=rows[1].pk).update(status=Status.SENT)
    Reminder.objects.filter(pk=rows[2].pk).update(status=Status.FAILED, last_error="550 no such user")
    frozen.move_to(dt.datetime(2026, 5, 7, 18, 0, tzinfo=UTC))
    entries = treatments.timeline_for(treatment=treatment)
    assert [(e.step.title, e.state) for e in entries] == [
        ("Apply exosomes in clinic", "past"),
        ("Cleanse tonight", "done"),
        ("Serum nightly", "sent"),
        ("Serum nightly", "failed"),
        ("Serum nightly", "due"),
        ("Check-in visit", "upcoming"),
    ]
    assert entries[3].reminder.last_error == "550 no such user"
