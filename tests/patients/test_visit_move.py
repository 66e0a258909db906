"""Moving one follow-up visit (the patient rebooked): its reminder follows, a sent one goes out again and the
calendar event moves, and recomputing the treatment's timeline keeps the visit where staff put it."""

from __future__ import annotations

import datetime as dt
import re
import smtplib
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from icalendar import Calendar
from rest_framework.test import APIClient

from clinic.api.strict import NO_OFFSET
from clinic.models import AuditEvent, Role
from patients import reminders, treatments
from patients.models import Reminder, Treatment
from tests.factories import ScreeningFactory, staff, treatable_patient

pytestmark = pytest.mark.django_db

UTC = dt.UTC
LONDON = ZoneInfo("Europe/London")
# Monday 4 May 2026, 10:30 in London. The procedure ended at 09:30 London.
NOW = dt.datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
ENDED = NOW - dt.timedelta(hours=1)
Status = Reminder.Status
# The visit two days after the procedure at its time of day, reminded of a day before; an instruction tonight.
STEPS = [
    {"title": "Check-in visit", "kind": "follow_up_visit", "timing": "offset", "offset_value": 2,
     "offset_unit": "days", "day": None, "local_time": None, "remind_minutes_before": 24 * 60},
    {"title": "Cleanse tonight", "day": 0, "local_time": dt.time(20, 0)},
]
# The patient rebooked from Wednesday 09:30 to Thursday 10:00 on the clinic's (London) clock.
WEDNESDAY = dt.datetime(2026, 5, 6, 9, 30, tzinfo=LONDON)
THURSDAY = dt.datetime(2026, 5, 7, 10, 0, tzinfo=LONDON)
REASON = "Patient rebooked by phone"


@pytest.fixture(autouse=True)
def frozen(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


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


def move(reminder: Reminder, by, occurs_at: dt.datetime = THURSDAY, reason: str = REASON) -> Reminder:
    return treatments.move_visit(reminder=reminder, occurs_at=occurs_at, reason=reason, by=by)


def send_due(frozen, reminder: Reminder) -> None:
    frozen.move_to(reminder.due_at)
    assert reminders.send_due_inline() == 1


def invite(message) -> Calendar:
    [(name, content, _mimetype)] = message.attachments
    assert name == "visit.ics"
    return Calendar.from_ical(content)


# --- the service ----------------------------------------------------------------------------------------


def test_it_moves_a_pending_visit_and_times_its_reminder_as_the_step_does(treatment, coordinator):
    visit = row(treatment)
    assert visit.occurs_at == WEDNESDAY

    moved = move(visit, coordinator)

    assert (moved.occurs_at, moved.due_at, moved.status) == (THURSDAY, THURSDAY - dt.timedelta(days=1), Status.SCHEDULED)
    assert (moved.moved_at, moved.moved_from, moved.move_reason, moved.move_count) == (NOW, WEDNESDAY, REASON, 1)
    assert moved.resend_count == 0  # never sent: nothing to send again
    event = AuditEvent.objects.get(action="reminder.visit_moved", object_id=str(visit.pk))
    assert event.actor == coordinator
    assert event.detail["previous_occurs_at"] == "2026-05-06T08:30:00Z"
    assert event.detail["occurs_at"] == "2026-05-07T09:00:00Z"
    assert (event.detail["reason"], event.detail["sent_again"]) == (REASON, False)


def test_the_reminder_of_a_moved_visit_keeps_out_of_the_quiet_hours(treatment, coordinator):
    # A day before 07:30 is inside the clinic's quiet hours (21:00–08:00, patient's clock): it waits until 08:00.
    moved = move(row(treatment), coordinator, occurs_at=dt.datetime(2026, 5, 7, 7, 30, tzinfo=LONDON))

    assert moved.due_at == dt.datetime(2026, 5, 6, 8, 0, tzinfo=LONDON)


def test_a_visit_moved_to_within_its_lead_time_is_reminded_of_at_once(treatment, coordinator):
    moved = move(row(treatment), coordinator, occurs_at=NOW + dt.timedelta(hours=3))

    assert moved.due_at == NOW


def test_a_sent_visit_is_sent_again_and_its_invitation_moves_the_calendar_event(treatment, coordinator, frozen):
    Reminder.objects.filter(treatment=treatment, step__title="Cleanse tonight").update(status=Status.CANCELLED)
    visit = row(treatment)
    send_due(frozen, visit)
    visit.refresh_from_db()
    assert visit.status == Status.SENT
    first_sent_at = visit.sent_at
    [first] = mail.outbox

    moved = move(visit, coordinator)

    assert (moved.status, moved.sent_at, moved.attempts, moved.resend_count) == (Status.SCHEDULED, None, 0, 1)
    assert (moved.previous_status, moved.previous_sent_at) == (Status.SENT, first_sent_at)
    assert AuditEvent.objects.get(action="reminder.visit_moved").detail["sent_again"] is True
    send_due(frozen, moved)
    second = mail.outbox[1]
    assert second.extra_headers["Message-ID"] != first.extra_headers["Message-ID"]
    [old_event], [new_event] = (invite(message).walk("VEVENT") for message in (first, second))
    assert new_event["UID"] == old_event["UID"]
    assert (int(old_event.get("SEQUENCE", 0)), int(new_event["SEQUENCE"])) == (0, 1)
    assert new_event.decoded("DTSTART") == THURSDAY
    assert new_event.decoded("DTSTAMP") == moved.moved_at
    assert "on Thursday 7 May 2026 at 10:00" in second.body


class BusyConnection:
    def send_messages(self, messages: list) -> int:
        raise smtplib.SMTPDataError(451, b"4.3.0 Try again later")


def test_moving_a_visit_awaiting_retry_keeps_the_delivery_it_replaces(treatment, coordinator, frozen):
    Reminder.objects.filter(treatment=treatment, step__title="Cleanse tonight").update(status=Status.CANCELLED)
    visit = row(treatment)
    frozen.move_to(visit.due_at)
    assert reminders.claim_due(now=visit.due_at, limit=2) == [visit.pk]
    assert reminders.send_reminder(reminder_id=visit.pk, connection=BusyConnection()) == reminders.SendOutcome.RETRY
    visit.refresh_from_db()
    tried_at, first_message_id = visit.last_attempt_at, visit.message_id
    assert (visit.status, visit.attempts, visit.last_error) == (Status.AWAITING_RETRY, 1, "451 4.3.0 Try again later")

    moved = move(visit, coordinator)

    assert (moved.status, moved.attempts, moved.last_error, moved.occurs_at) == (Status.SCHEDULED, 0, "", THURSDAY)
    assert (moved.previous_status, moved.previous_attempts, moved.previous_attempt_at, moved.previous_error) == (
        Status.AWAITING_RETRY, 1, tried_at, "451 4.3.0 Try again later"
    )
    assert moved.message_id != first_message_id  # the attempt may have arrived with the old time
    detail = AuditEvent.objects.get(action="reminder.visit_moved").detail
    assert (detail["previous_status"], detail["previous_attempts"], detail["previous_last_error"]) == (
        "awaiting_retry", 1, "451 4.3.0 Try again later"
    )
    assert detail["sent_again"] is False


@pytest.mark.parametrize(
    ("status", "message"),
    [(Status.FAILED, "this one is failed"), (Status.CANCELLED, "this one is cancelled"),
     (Status.SKIPPED, "this one is skipped"), (Status.SENDING, "being sent right now")],
)
def test_it_moves_only_a_visit_whose_reminder_is_pending_or_sent(treatment, coordinator, status, message):
    visit = row(treatment)
    Reminder.objects.filter(pk=visit.pk).update(status=status)

    with pytest.raises(ValidationError) as refused:
        move(visit, coordinator)

    assert message in refused.value.message_dict["reminder"][0]
    visit.refresh_from_db()
    assert (visit.occurs_at, visit.moved_at) == (WEDNESDAY, None)
    assert not AuditEvent.objects.filter(action="reminder.visit_moved").exists()


def test_it_refuses_another_step_a_past_time_a_cancelled_treatment_and_no_reason(treatment, coordinator, clinician):
    with pytest.raises(ValidationError) as refused:
        move(row(treatment, "Cleanse tonight"), coordinator)
    assert "Only a follow-up visit can be moved" in refused.value.message_dict["reminder"][0]

    with pytest.raises(ValidationError) as refused:
        move(row(treatment), coordinator, occurs_at=NOW - dt.timedelta(minutes=1), reason="ok")
    assert "already past" in refused.value.message_dict["occurs_at"][0]
    assert "at least 10 characters" in refused.value.message_dict["reason"][0]

    treatments.cancel_treatment(treatment=treatment, by=clinician, reason="Recorded on the wrong patient")
    with pytest.raises(ValidationError) as refused:
        move(row(treatment), coordinator)
    assert "The treatment was cancelled" in refused.value.message_dict["reminder"][0]
    assert row(treatment).moved_at is None


def test_an_auditor_may_not_move_a_visit(treatment, auditor):
    with pytest.raises(PermissionDenied):
        move(row(treatment), auditor)


# --- recomputing the timeline ---------------------------------------------------------------------------


def test_rescheduling_the_procedure_leaves_a_moved_visit_at_its_time(clinic_a, clinician, coordinator):
    patient, version, _ = treatable_patient(clinic_a, steps=STEPS, time_zone="Europe/London")
    # Screened three days before, so the procedure may be moved an hour earlier.
    screening = ScreeningFactory(patient=patient, protocol_version=version, run_at=NOW - dt.timedelta(days=3))
    treatment = treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ENDED - dt.timedelta(minutes=45), ended_at=ENDED, areas="face",
    )
    move(row(treatment), coordinator)

    earlier = ENDED - dt.timedelta(hours=1)
    treatments.reschedule_treatment(
        treatment=treatment, started_at=earlier - dt.timedelta(minutes=45), ended_at=earlier, by=clinician
    )

    visit = row(treatment)
    assert (visit.occurs_at, visit.due_at, visit.status) == (THURSDAY, THURSDAY - dt.timedelta(days=1), Status.SCHEDULED)
    assert visit.moved_at == NOW


def test_a_new_time_zone_keeps_a_moved_visit_and_times_its_reminder_on_the_new_clock(treatment, coordinator):
    move(row(treatment), coordinator)
    patient = treatment.patient
    patient.time_zone = "America/New_York"
    patient.save()

    treatments.recompute_for_new_time_zone(patient=patient, previous_zone="Europe/London", by=coordinator)

    visit = row(treatment)
    assert visit.occurs_at == THURSDAY
    # A day before is 05:00 in New York, inside the quiet hours: the reminder waits until 08:00 there.
    assert visit.due_at == dt.datetime(2026, 5, 6, 8, 0, tzinfo=ZoneInfo("America/New_York"))
    # The visit not moved by hand follows the new zone as before.
    assert row(treatment, "Cleanse tonight").occurs_at == dt.datetime(2026, 5, 4, 20, 0, tzinfo=ZoneInfo("America/New_York"))


# --- the treatment page ---------------------------------------------------------------------------------


def move_url(reminder: Reminder) -> str:
    return reverse("admin:patients_treatment_move_visit", args=[reminder.treatment_id, reminder.pk])


def test_the_timeline_offers_to_move_the_visit_only(treatment, coordinator, client):
    client.force_login(coordinator)
    page = client.get(reverse("admin:patients_treatment_change", args=[treatment.pk])).content.decode()

    assert page.count('class="move-visit"') == 1
    assert f'href="{move_url(row(treatment))}"' in page


def test_staff_type_the_new_time_on_the_clinics_clock(clinic_a, clinician, coordinator, client):
    patient, version, screening = treatable_patient(clinic_a, steps=STEPS, time_zone="America/New_York")
    treatment = treatments.record_treatment(
        patient=patient, protocol_version=version, screening=screening, clinician=clinician,
        started_at=ENDED - dt.timedelta(minutes=45), ended_at=ENDED, areas="face",
    )
    visit = row(treatment)
    client.force_login(coordinator)
    form = client.get(move_url(visit)).content.decode()
    assert "On the clinic&#x27;s clock (Europe/London)" in form
    assert "on the patient&#x27;s clock (America/New_York)" in form

    response = client.post(move_url(visit), {"occurs_at": "2026-05-07T10:00", "reason": REASON}, follow=True)

    assert response.redirect_chain[-1][0].endswith(f"/{treatment.pk}/change/#timeline")
    visit.refresh_from_db()
    assert visit.occurs_at == THURSDAY  # 10:00 in London, not in New York
    page = response.content.decode()
    assert "moved to Thu 2026-05-07 10:00 (clinic&#x27;s time)" in page
    assert "moved by staff from" in page and REASON in page


def test_the_form_says_why_a_move_was_refused_and_changes_nothing(treatment, coordinator, auditor, client):
    visit = row(treatment)
    client.force_login(coordinator)

    response = client.post(move_url(visit), {"occurs_at": "2026-05-01T10:00", "reason": REASON})

    assert response.status_code == 400
    assert "already past" in response.content.decode()
    client.force_login(auditor)
    assert client.post(move_url(visit), {"occurs_at": "2026-05-07T10:00", "reason": REASON}).status_code == 403
    visit.refresh_from_db()
    assert visit.moved_at is None


# --- the API --------------------------------------------------------------------------------------------


def api_for(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_the_api_moves_a_visit_through_the_same_service(treatment, coordinator, auditor, clinic_b):
    visit = row(treatment)
    url = f"/api/v1/reminders/{visit.pk}/move-visit/"
    body = {"occurs_at": "2026-05-07T10:00:00+01:00", "reason": REASON}

    assert api_for(auditor).post(url, body, format="json").status_code == 403
    assert api_for(staff(Role.COORDINATOR, clinic_b)).post(url, body, format="json").status_code == 404
    other = api_for(coordinator).post(f"/api/v1/reminders/{row(treatment, 'Cleanse tonight').pk}/move-visit/", body,
                                      format="json")
    assert other.status_code == 400 and "follow-up visit" in other.json()["reminder"][0]
    moved = api_for(coordinator).post(url, body, format="json")

    assert moved.status_code == 200
    data = moved.json()
    assert (data["occurs_at"], data["moved_from"], data["move_reason"], data["move_count"]) == (
        "2026-05-07T09:00:00Z", "2026-05-06T08:30:00Z", REASON, 1
    )


@pytest.mark.parametrize("occurs_at", ["2026-05-07T10:00:00", "2026-05-07T10:00", "2026-05-07"])
def test_the_api_refuses_a_time_without_its_offset(treatment, coordinator, occurs_at):
    visit = row(treatment)

    response = api_for(coordinator).post(
        f"/api/v1/reminders/{visit.pk}/move-visit/", {"occurs_at": occurs_at, "reason": REASON}, format="json"
    )

    # Read in the server's zone (UTC), 10:00 would be 11:00 on the clinic's (London) clock.
    assert response.status_code == 400
    assert response.json()["occurs_at"] == [NO_OFFSET]
    visit.refresh_from_db()
    assert (visit.occurs_at, visit.moved_at) == (WEDNESDAY, None)
    assert not AuditEvent.objects.filter(action="reminder.visit_moved").exists()


def test_the_schema_documents_the_move_and_its_refusals():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/reminders/{id}/move-visit/"]["post"]
    resend = schema["paths"]["/api/v1/reminders/{id}/resend/"]["post"]

    assert {"200", "400", "403", "404"} <= set(operation["responses"]) == set(resend["responses"])
    request_schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][request_schema]["required"]) == {"occurs_at", "reason"}
    occurs_at = schema["components"]["schemas"][request_schema]["properties"]["occurs_at"]
    assert (occurs_at["type"], occurs_at["format"]) == ("string", "date-time")  # RFC 3339: the offset is required
    assert re.search(r"\bmove_count\b", str(schema["components"]["schemas"]["Reminder"]))
