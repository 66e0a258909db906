"""Adverse events are recorded with who and when; moderate or worse emails the clinic's clinicians after commit."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from clinic.models import Role
from patients.models import AdverseEvent, StaffAlert, TreatmentArm
from patients.outcomes import (
    AdverseEventAlreadyRecorded,
    ChangedSinceOpened,
    correct_adverse_event,
    current_revision,
    record_adverse_event,
)
from patients.reminders import SendOutcome
from patients.staff_alerts import alert_again_about, send_alert
from tests.factories import TreatmentFactory, staff

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # Staff factories set a password; the production hasher makes each one take seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def alerts_go_out_on_commit(alerts_sent_at_once):
    pass


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def treatment(clinic_a):
    ended = NOW - dt.timedelta(days=10)
    return TreatmentFactory(
        screening__patient__clinic=clinic_a, screening__patient__reference="H-0042",
        started_at=ended - dt.timedelta(hours=1), ended_at=ended,
    )


def _record(treatment, by, **overrides):
    values = {"kind": "pih", "severity": "moderate", "onset_date": TODAY - dt.timedelta(days=2)}
    return record_adverse_event(treatment=treatment, by=by, **{**values, **overrides})


def test_it_emails_every_clinician_of_the_clinic_after_commit(
    treatment, clinician, clinic_a, clinician_b, coordinator, django_capture_on_commit_callbacks
):
    colleague = staff(Role.CLINICIAN, clinic_a, email="colleague@staff.example")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        event = _record(treatment, clinician, action_taken="Hydroquinone 4 % started")
    assert mail.outbox == []  # nothing leaves before the transaction commits
    for callback in callbacks:
        callback()
    assert sorted(m.to[0] for m in mail.outbox) == sorted([clinician.email, colleague.email])
    message = mail.outbox[0]
    assert message.subject == "Adverse event (moderate) recorded at Harbour Skin Clinic"
    assert "Post-inflammatory hyperpigmentation" in message.body
    assert "H-0042" in message.body
    assert "Hydroquinone 4 % started" in message.body
    assert f"/admin/patients/adverseevent/{event.pk}/change/" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert "Post-inflammatory hyperpigmentation" in html
    assert f"/admin/patients/adverseevent/{event.pk}/change/" in html
    assert treatment.patient.family_name not in message.body + html  # minimal health data over email
    event.refresh_from_db()
    assert event.notified_at == NOW


def test_it_does_not_email_about_a_mild_event(treatment, clinician, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        event = _record(treatment, clinician, severity="mild")
    assert mail.outbox == []
    event.refresh_from_db()
    assert event.notified_at is None


def test_it_does_not_email_when_the_transaction_rolls_back(treatment, clinician, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        _record(treatment, clinician, severity="severe")
        raise RuntimeError("something later in the same request failed")
    assert callbacks == []
    assert mail.outbox == []
    assert not AdverseEvent.objects.exists()


def test_it_notifies_once_however_often_it_is_asked(treatment, clinician, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        event = _record(treatment, clinician, severity="severe")
    assert len(mail.outbox) == 1
    alert = StaffAlert.objects.get(adverse_event=event)
    assert send_alert(alert_id=alert.pk) == SendOutcome.NOT_CLAIMED  # a duplicated task message
    with django_capture_on_commit_callbacks(execute=True):
        assert alert_again_about(event=event, by=clinician) is None  # the admin's "email them" on a notified event
    assert len(mail.outbox) == 1
    assert StaffAlert.objects.count() == 1


def test_a_failed_send_leaves_the_event_not_notified_and_the_alert_waiting(
    treatment, clinician, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.patients.test_adverse_events.BrokenBackend"
    with django_capture_on_commit_callbacks(execute=True):
        event = _record(treatment, clinician, severity="severe")
    event.refresh_from_db()
    assert event.notified_at is None
    alert = StaffAlert.objects.get(adverse_event=event)
    assert (alert.status, alert.attempts, alert.sent_to) == (StaffAlert.Status.PENDING, 1, [])
    assert alert.last_error == "Could not talk to the mail server: connection refused"
    assert alert.due_at > NOW  # tried again later, with back-off


class BrokenBackend:
    def __init__(self, *args, **kwargs):
        pass

    def open(self):
        raise OSError("connection refused")

    def send_messages(self, messages):
        raise OSError("connection refused")

    def close(self):
        pass


def test_raising_the_severity_later_notifies(treatment, clinician, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        event = _record(treatment, clinician, severity="mild")
        correct_adverse_event(event=event, by=clinician, changes={"severity": "severe"}, reason="Spread to the cheeks")
    assert len(mail.outbox) == 1
    assert "(severe)" in mail.outbox[0].subject
    previous = event.history.order_by("history_id").first()
    assert previous.severity == "mild"


def test_the_same_event_recorded_again_is_refused_naming_the_first(
    treatment, clinician, clinic_a, django_capture_on_commit_callbacks
):
    colleague = staff(Role.CLINICIAN, clinic_a, username="dr_okafor")
    with django_capture_on_commit_callbacks(execute=True):
        first = _record(treatment, clinician, kind="infection", severity="severe", description="Pustules, chin")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(AdverseEventAlreadyRecorded) as raised:
        _record(treatment, colleague, kind="infection", severity="severe", description="Pustules, chin",
                action_taken="Something else typed this time")
    assert raised.value.event == first
    assert raised.value.message.startswith(
        "This adverse event is already recorded: Infection (severe), onset 18 Mar 2026, recorded by clinician_a on "
        "20 Mar 2026 at 12:00. Nothing was saved."
    )
    assert AdverseEvent.objects.count() == 1
    assert len(mail.outbox) == 2  # the first event's emails (two clinicians), none for the refused one


@pytest.mark.parametrize(
    "difference",
    [{"kind": "contact_dermatitis"}, {"severity": "mild"}, {"description": "A second site"},
     {"onset_date": TODAY - dt.timedelta(days=1)}, {"arm": "left"}],
)
def test_different_events_of_one_treatment_are_all_recorded(treatment, clinician, difference):
    if "arm" in difference:
        difference = {"arm": TreatmentArm.objects.create(treatment=treatment, label="left")}
    _record(treatment, clinician)
    _record(treatment, clinician, **difference)
    assert AdverseEvent.objects.count() == 2


def test_a_change_based_on_an_older_revision_of_an_event_is_refused(treatment, clinician):
    event = _record(treatment, clinician, severity="mild")
    opened = current_revision(event)
    correct_adverse_event(event=event, by=clinician, changes={"resolution_date": TODAY}, reason="Resolved at review",
                          based_on=opened)
    with pytest.raises(ChangedSinceOpened):
        correct_adverse_event(
            event=AdverseEvent.objects.get(), by=clinician, changes={"severity": "severe", "resolution_date": None},
            reason="Worse at the review", based_on=opened,
        )
    event.refresh_from_db()
    assert (event.severity, event.resolution_date) == ("mild", TODAY)


def test_a_resolution_is_recorded_as_a_correction_with_history(treatment, clinician):
    event = _record(treatment, clinician, severity="mild")
    correct_adverse_event(event=event, by=clinician, changes={"resolution_date": TODAY}, reason="Resolved at review")
    event.refresh_from_db()
    assert event.resolution_date == TODAY
    assert event.history.count() == 2
    assert event.history.first().history_change_reason == "Resolved at review"


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"kind": "sunburn"}, "kind", "Choose the kind"),
        ({"severity": "catastrophic"}, "severity", "Choose mild"),
        ({"onset_date": TODAY - dt.timedelta(days=30)}, "onset_date", "cannot start before it"),
        ({"onset_date": TODAY + dt.timedelta(days=1)}, "onset_date", "in the future"),
        ({"resolution_date": TODAY - dt.timedelta(days=5)}, "resolution_date", "cannot resolve before it started"),
        ({"kind": "other", "description": ""}, "description", "Describe the event"),
    ],
)
def test_it_refuses_bad_input_and_stores_nothing(treatment, clinician, overrides, field, words):
    with pytest.raises(ValidationError) as raised:
        _record(treatment, clinician, **overrides)
    assert words in raised.value.message_dict[field][0]
    assert not AdverseEvent.objects.exists()


def test_it_links_an_event_to_an_arm_of_the_same_treatment_only(treatment, clinician, clinic_a):
    arm = TreatmentArm.objects.create(treatment=treatment, label="left")
    event = _record(treatment, clinician, severity="mild", arm=arm)
    assert event.arm == arm
    other = TreatmentFactory(screening__patient__clinic=clinic_a, ended_at=treatment.ended_at, started_at=treatment.started_at)
    with pytest.raises(ValidationError):
        _record(other, clinician, severity="mild", arm=arm)


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.AUDITOR, Role.CLINIC_ADMIN])
def test_only_clinicians_record_adverse_events(treatment, clinic_a, role):
    with pytest.raises(PermissionDenied):
        _record(treatment, staff(role, clinic_a))


def test_a_clinician_of_another_clinic_cannot_record_one(treatment, clinician_b):
    with pytest.raises(PermissionDenied):
        _record(treatment, clinician_b)
