"""Correcting a procedure's time: reminders skipped as too late come back, others keep their history."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from clinic.models import AuditEvent
from patients import treatments
from patients.models import Reminder, Treatment
from tests.factories import treatable_patient
from tests.patients.conftest import NOW

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_at_now")]

UTC = dt.UTC
LONDON = ZoneInfo("Europe/London")
Status = Reminder.Status
# Three steps counted from the end of the procedure, and one in the evening.
STEPS = [
    *({"title": title, "timing": "offset", "offset_value": minutes, "offset_unit": "minutes", "day": None,
       "local_time": None} for title, minutes in (("+30 min", 30), ("+2 h", 120), ("+6 h", 360))),
    {"title": "Evening", "day": 0, "local_time": dt.time(20, 0)},
]
# It is 10:30 in London (NOW). The procedure ended at 08:00; the clinician typed 02:00.
TYPED_END = dt.datetime(2026, 5, 4, 1, 0, tzinfo=UTC)
REAL_END = dt.datetime(2026, 5, 4, 7, 0, tzinfo=UTC)


@pytest.fixture
def typo(clinic_a, clinician):
    """A treatment recorded with the mistyped time: its three offset steps were past, so skipped as too late."""
    patient, version, screening = treatable_patient(clinic_a, steps=STEPS, time_zone="Europe/London")
    return treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=TYPED_END - dt.timedelta(minutes=45), ended_at=TYPED_END, areas="face",
    )


def row(treatment: Treatment, title: str) -> Reminder:
    return Reminder.objects.get(treatment=treatment, step__title=title)


def reschedule(treatment: Treatment, by, ended_at: dt.datetime = REAL_END) -> treatments.Recomputed:
    return treatments.reschedule_treatment(
        treatment=treatment, started_at=ended_at - dt.timedelta(minutes=45), ended_at=ended_at, by=by
    )


def test_it_brings_back_reminders_that_the_mistyped_time_had_skipped_as_too_late(typo, clinician):
    assert [row(typo, title).status for title in ("+30 min", "+2 h", "+6 h", "Evening")] == (
        [Status.SKIPPED] * 3 + [Status.SCHEDULED]
    )

    result = reschedule(typo, clinician)

    # "Evening" (day 0 at 20:00) keeps its time: it is not counted as moved.
    assert result == treatments.Recomputed(scheduled=2, revived=2, past=1)
    half_hour = row(typo, "+30 min")  # 08:30 in London: over an hour ago, still too late to remind of
    assert (half_hour.status, half_hour.last_error) == (Status.SKIPPED, treatments.TOO_LATE)
    assert half_hour.occurs_at == REAL_END + dt.timedelta(minutes=30)
    for title, occurs_at in (("+2 h", REAL_END + dt.timedelta(hours=2)), ("+6 h", REAL_END + dt.timedelta(hours=6)),
                             ("Evening", dt.datetime(2026, 5, 4, 20, 0, tzinfo=LONDON))):
        reminder = row(typo, title)
        assert (reminder.status, reminder.last_error, reminder.occurs_at) == (Status.SCHEDULED, "", occurs_at)
    event = AuditEvent.objects.get(action="treatment.reschedule")
    assert event.detail["reminders_moved"] == 2
    assert event.detail["reminders_revived"] == 2
    assert event.detail["reminders_past"] == 1


def test_it_leaves_sent_cancelled_and_otherwise_skipped_reminders_as_they_are(typo, clinician, coordinator):
    opted_out = row(typo, "+2 h")
    Reminder.objects.filter(pk=opted_out.pk).update(last_error="The patient opted out of reminder emails.")
    cancelled = treatments.cancel_reminder(reminder=row(typo, "Evening"), by=coordinator)
    sent = row(typo, "+6 h")
    Reminder.objects.filter(pk=sent.pk).update(status=Status.SENT, sent_at=NOW)
    before = {
        pk: Reminder.objects.filter(pk=pk).values("status", "occurs_at", "due_at", "last_error").get()
        for pk in (opted_out.pk, cancelled.pk, sent.pk)
    }

    result = reschedule(typo, clinician)

    assert result == treatments.Recomputed(scheduled=0, revived=0, past=1)  # only "+30 min" was open
    for pk, values in before.items():
        assert Reminder.objects.filter(pk=pk).values("status", "occurs_at", "due_at", "last_error").get() == values
    assert Reminder.objects.filter(treatment=typo).count() == 4


def test_the_admin_says_how_many_reminders_came_back_and_how_many_are_past(client, typo, clinician):
    client.force_login(clinician)
    response = client.post(
        reverse("admin:patients_treatment_reschedule", args=[typo.pk]),
        {"started_at": "2026-05-04T07:15", "ended_at": "2026-05-04T08:00"},  # clinic time, London
    )
    assert response.status_code == 302
    assert [str(message) for message in get_messages(response.wsgi_request)] == [
        "Procedure time changed; 2 reminders moved to the new times (2 of them had been skipped as too late); "
        "1 skipped: already past at the new times."
    ]


def test_it_refuses_to_reschedule_a_treatment_cancelled_since_the_page_was_loaded(typo, clinician):
    page_copy = Treatment.objects.get(pk=typo.pk)  # the reschedule page, open in one tab
    treatments.cancel_treatment(  # another tab cancels it
        treatment=Treatment.objects.get(pk=typo.pk), by=clinician, reason="Recorded on the wrong patient"
    )
    before = list(Reminder.objects.filter(treatment=typo).values_list("pk", "status", "occurs_at"))

    with pytest.raises(ValidationError) as excinfo:
        reschedule(page_copy, clinician)

    assert excinfo.value.message_dict == {"ended_at": ["A cancelled treatment cannot be rescheduled."]}
    typo.refresh_from_db()
    assert typo.ended_at == TYPED_END
    assert list(Reminder.objects.filter(treatment=typo).values_list("pk", "status", "occurs_at")) == before
    assert not AuditEvent.objects.filter(action="treatment.reschedule").exists()


def test_it_refuses_a_corrected_time_that_puts_an_application_after_its_lots_recall(clinic_a, clinician):
    from decimal import Decimal

    from tests.factories import LotFactory, ProductFactory

    patient, version, screening = treatable_patient(clinic_a, steps=STEPS, time_zone="Europe/London")
    lot = LotFactory(product=ProductFactory(clinic=clinic_a))
    treatment = treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=REAL_END - dt.timedelta(minutes=45), ended_at=REAL_END, areas="face",
        applications=[treatments.ApplicationInput(lot=lot, volume_ml=Decimal("1"))],
    )
    lot.recalled, lot.recalled_at, lot.recall_reason = True, REAL_END + dt.timedelta(hours=1), "Sterility failure"
    lot.save()
    due_before = list(treatment.reminders.order_by("pk").values_list("due_at", flat=True))

    with pytest.raises(ValidationError) as caught:
        reschedule(treatment, clinician, ended_at=REAL_END + dt.timedelta(hours=2))

    assert caught.value.message_dict["ended_at"] == [
        f"At the corrected time the application of lot {lot.lot_number} is refused: "
        f"Lot {lot.lot_number} has been recalled (since 2026-05-04)."
    ]
    treatment.refresh_from_db()
    assert treatment.ended_at == REAL_END
    assert list(treatment.reminders.order_by("pk").values_list("due_at", flat=True)) == due_before
    assert not AuditEvent.objects.filter(action="treatment.reschedule").exists()
    # An earlier correction keeps the application before the recall and goes through.
    reschedule(treatment, clinician, ended_at=REAL_END - dt.timedelta(minutes=30))
    assert Treatment.objects.get(pk=treatment.pk).ended_at == REAL_END - dt.timedelta(minutes=30)


def test_a_reminder_whose_time_does_not_change_is_left_as_it_is(typo, clinician):
    evening = row(typo, "Evening")
    Reminder.objects.filter(pk=evening.pk).update(status=Status.QUEUED, queued_at=NOW)  # a worker is about to send it
    reschedule(typo, clinician)  # the end moves by hours; "day 0 at 20:00" stays where it was
    evening.refresh_from_db()
    assert (evening.status, evening.queued_at) == (Status.QUEUED, NOW)  # not pulled back from the worker
