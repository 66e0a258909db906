"""Moving a visit to a doubtful time: a reminder the quiet hours would hold back until after the visit, or a visit
at night on the clinic's clock, needs staff to confirm it; a time more than a year after the procedure is refused."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from clinic.models import AuditEvent
from patients import treatments
from patients.models import Reminder, Treatment
from tests.factories import treatable_patient

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
# Monday 4 May 2026, 10:30 in London; the procedure ended at 09:30 London. Quiet hours: 21:00 to 08:00.
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=dt.UTC)
ENDED = NOW - dt.timedelta(hours=1)
STEPS = [
    # Reminded an hour before: a visit at 07:30 would be reminded at 06:30, held back until 08:00.
    {"title": "Check-in visit", "kind": "follow_up_visit", "timing": "offset", "offset_value": 2,
     "offset_unit": "days", "day": None, "local_time": None, "remind_minutes_before": 60},
    # Reminded a day before: never late, whatever the hour of the visit.
    {"title": "Review visit", "kind": "follow_up_visit", "timing": "offset", "offset_value": 14,
     "offset_unit": "days", "day": None, "local_time": None, "remind_minutes_before": 24 * 60},
]
EARLY = dt.datetime(2026, 5, 6, 7, 30, tzinfo=LONDON)  # Wednesday 07:30: reminder at 08:00, after the visit
NIGHT = dt.datetime(2026, 5, 7, 3, 0, tzinfo=LONDON)  # Thursday 03:00
REASON = "Patient rebooked by phone"


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def treatment(clinic_a, clinician) -> Treatment:
    patient, version, screening = treatable_patient(clinic_a, steps=STEPS, time_zone="Europe/London")
    return treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ENDED - dt.timedelta(minutes=45), ended_at=ENDED, areas="face",
    )


def row(treatment: Treatment, title: str = "Check-in visit") -> Reminder:
    return Reminder.objects.select_related("step", "treatment__patient", "treatment__clinic").get(
        treatment=treatment, step__title=title
    )


def move(reminder: Reminder, by, occurs_at: dt.datetime, **kwargs) -> Reminder:
    return treatments.move_visit(reminder=reminder, occurs_at=occurs_at, reason=REASON, by=by, **kwargs)


def assert_not_moved(visit: Reminder) -> None:
    before = (visit.occurs_at, visit.due_at)
    visit.refresh_from_db()
    assert (visit.occurs_at, visit.due_at, visit.moved_at, visit.move_count) == (*before, None, 0)
    assert not AuditEvent.objects.filter(action="reminder.visit_moved").exists()


# --- the service --------------------------------------------------------------------------------------------


def test_it_refuses_a_time_whose_reminder_would_arrive_after_the_visit(treatment, coordinator):
    visit = row(treatment)

    with pytest.raises(ValidationError) as refused:
        move(visit, coordinator, EARLY)

    errors = refused.value.message_dict
    assert errors["occurs_at"] == [
        "Its reminder would go out Wed 2026-05-06 08:00 (patient's time, Europe/London), after the visit itself "
        "(07:30 on their clock): the quiet hours, 21:00 to 08:00, hold reminders back. Choose a later time, or "
        "confirm this one and tell the patient yourself."
    ]
    assert errors["confirm_time"] == [treatments.CONFIRM_TIME]
    assert_not_moved(visit)


def test_it_moves_a_late_reminded_visit_once_confirmed_and_logs_what_was_confirmed(treatment, coordinator):
    moved = move(row(treatment), coordinator, EARLY, confirm_time=True)

    assert (moved.occurs_at, moved.due_at) == (EARLY, dt.datetime(2026, 5, 6, 8, 0, tzinfo=LONDON))
    detail = AuditEvent.objects.get(action="reminder.visit_moved").detail
    assert len(detail["confirmed_doubts"]) == 1 and "after the visit itself" in detail["confirmed_doubts"][0]


def test_it_asks_to_confirm_a_visit_at_night_on_the_clinics_clock(treatment, coordinator):
    visit = row(treatment, "Review visit")  # reminded a day before: at 08:00 on Wednesday, well before

    with pytest.raises(ValidationError) as refused:
        move(visit, coordinator, NIGHT)

    assert refused.value.message_dict["occurs_at"] == [
        "Thu 2026-05-07 03:00 is at night on the clinic's clock (Europe/London): check the hour (a.m. or p.m.?), "
        "or confirm that the patient comes then."
    ]
    assert_not_moved(visit)
    assert move(visit, coordinator, NIGHT, confirm_time=True).occurs_at == NIGHT


@pytest.mark.parametrize("at", [dt.time(5, 59), dt.time(22, 1)])
def test_night_is_before_six_and_after_ten(treatment, coordinator, at):
    occurs_at = dt.datetime.combine(dt.date(2026, 5, 7), at, tzinfo=LONDON)
    with pytest.raises(ValidationError, match="at night"):
        move(row(treatment, "Review visit"), coordinator, occurs_at)


@pytest.mark.parametrize("at", [dt.time(6, 0), dt.time(22, 0)])
def test_six_and_ten_are_not_night(treatment, coordinator, at):
    occurs_at = dt.datetime.combine(dt.date(2026, 5, 7), at, tzinfo=LONDON)
    assert move(row(treatment, "Review visit"), coordinator, occurs_at).occurs_at == occurs_at


def test_night_is_read_on_the_clinics_clock_not_the_patients(clinic_a, clinician, coordinator):
    patient, version, screening = treatable_patient(clinic_a, steps=STEPS, time_zone="America/New_York")
    treatment = treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ENDED - dt.timedelta(minutes=45), ended_at=ENDED, areas="face",
    )
    # 10:00 in London is 05:00 in New York: a morning visit at the clinic, not a night one.
    morning = dt.datetime(2026, 5, 7, 10, 0, tzinfo=LONDON)
    assert move(row(treatment, "Review visit"), coordinator, morning).occurs_at == morning


def test_it_refuses_a_time_more_than_a_year_after_the_procedure_even_confirmed(treatment, coordinator):
    visit = row(treatment, "Review visit")
    next_year = dt.datetime(2027, 5, 5, 10, 0, tzinfo=LONDON)

    with pytest.raises(ValidationError) as refused:
        move(visit, coordinator, next_year, confirm_time=True)

    assert refused.value.message_dict == {"occurs_at": [
        "Wed 2027-05-05 is 366 days after the procedure (on Mon 2026-05-04, clinic's time); a follow-up visit is at "
        f"most {treatments.MOVE_MAX_DAYS_AFTER_PROCEDURE} days after it. Check the year."
    ]}
    assert_not_moved(visit)
    last_day = dt.datetime(2027, 5, 4, 10, 0, tzinfo=LONDON)
    assert move(visit, coordinator, last_day).occurs_at == last_day


# --- the admin page ---------------------------------------------------------------------------------------


def move_url(reminder: Reminder) -> str:
    return reverse("admin:patients_treatment_move_visit", args=[reminder.treatment_id, reminder.pk])


def test_the_page_asks_for_confirmation_only_once_the_time_is_doubtful(treatment, coordinator, client):
    visit = row(treatment)
    client.force_login(coordinator)
    assert 'name="confirm_time"' not in client.get(move_url(visit)).content.decode()

    refused = client.post(move_url(visit), {"occurs_at": "2026-05-06T07:30", "reason": REASON})

    assert refused.status_code == 400
    page = refused.content.decode()
    assert "after the visit itself (07:30 on their clock)" in page
    assert 'name="confirm_time"' in page and "Move it to this time all the same" in page
    assert_not_moved(visit)


def test_the_page_moves_a_confirmed_time_and_repeats_why_it_was_doubtful(treatment, coordinator, client):
    visit = row(treatment)
    client.force_login(coordinator)

    # The walk-through's case: 03:00 on the clinic's clock, the reminder held back until 08:00.
    asked = client.post(move_url(visit), {"occurs_at": "2026-05-07T03:00", "reason": REASON}).content.decode()
    assert 'name="confirmed_for" value="2026-05-07T03:00"' in asked
    response = client.post(move_url(visit), {
        "occurs_at": "2026-05-07T03:00", "reason": REASON, "confirm_time": "on", "confirmed_for": "2026-05-07T03:00",
    }, follow=True)

    assert response.redirect_chain[-1][0].endswith(f"/{treatment.pk}/change/#timeline")
    page = response.content.decode()
    assert 'class="warning"' in page
    assert ("its reminder goes out Thu 2026-05-07 08:00 (patient&#x27;s time). That is after the visit itself (the "
            "quiet hours hold it back): tell the patient yourself. The visit is at night on the clinic&#x27;s "
            "clock.") in page
    visit.refresh_from_db()
    assert visit.occurs_at == NIGHT


def test_the_page_refuses_a_time_a_year_ahead(treatment, coordinator, client):
    visit = row(treatment)
    client.force_login(coordinator)

    response = client.post(
        move_url(visit), {"occurs_at": "2027-12-09T10:00", "reason": REASON, "confirm_time": "on"}
    )

    assert response.status_code == 400
    assert "Check the year." in response.content.decode()
    assert_not_moved(visit)


# --- the API -----------------------------------------------------------------------------------------------


def post(user, visit: Reminder, **body):
    api = APIClient()
    api.force_authenticate(user)
    return api.post(f"/api/v1/reminders/{visit.pk}/move-visit/", {"reason": REASON, **body}, format="json")


def test_the_api_refuses_a_doubtful_time_with_field_errors_unless_confirmed(treatment, coordinator):
    visit = row(treatment)

    refused = post(coordinator, visit, occurs_at="2026-05-06T07:30:00+01:00")

    assert refused.status_code == 400
    assert "after the visit itself" in refused.json()["occurs_at"][0]
    assert refused.json()["confirm_time"] == [treatments.CONFIRM_TIME]
    assert_not_moved(visit)
    moved = post(coordinator, visit, occurs_at="2026-05-06T07:30:00+01:00", confirm_time=True)
    assert moved.status_code == 200 and moved.json()["occurs_at"] == "2026-05-06T06:30:00Z"


def test_the_api_refuses_a_time_a_year_ahead(treatment, coordinator):
    visit = row(treatment)

    refused = post(coordinator, visit, occurs_at="2027-12-09T10:00:00+00:00", confirm_time=True)

    assert refused.status_code == 400
    assert list(refused.json()) == ["occurs_at"] and "Check the year." in refused.json()["occurs_at"][0]
    assert_not_moved(visit)


def test_a_box_ticked_for_one_doubtful_time_does_not_confirm_another_typed_since(treatment, coordinator, client):
    visit = row(treatment)
    client.force_login(coordinator)

    # Asked about 03:00; staff change it to 04:00 and tick the box: 04:00 is asked about in its turn.
    response = client.post(move_url(visit), {
        "occurs_at": "2026-05-07T04:00", "reason": REASON, "confirm_time": "on", "confirmed_for": "2026-05-07T03:00",
    })

    assert response.status_code == 400
    page = response.content.decode()
    assert 'name="confirmed_for" value="2026-05-07T04:00"' in page
    assert 'name="confirm_time" id="id_confirm_time" checked' not in page  # not ticked for the new time
    assert_not_moved(visit)
