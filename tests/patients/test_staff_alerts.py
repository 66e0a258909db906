"""Alerts to clinicians go through an outbox: nothing lost when the broker, the mail server or a worker fails.

An adverse event (moderate or worse) or a problem a patient flags writes an
alert row in its own transaction; a Celery task sends it after commit, one email
per clinician; who got it is kept; a temporary failure is retried for the
others only; a refused address or a clinic with nobody to email is "not
delivered" on the dashboard until someone sends it again.
"""

from __future__ import annotations

import datetime as dt
import smtplib

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from clinic.models import AuditEvent, Membership, Role
from patients import staff_alerts
from patients.links import create_link
from patients.models import AdverseEvent, PatientLink, StaffAlert
from patients.outcomes import record_adverse_event, record_self_report
from patients.reminders import SendOutcome
from tests.factories import TreatmentFactory, staff

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
Status = StaffAlert.Status


@pytest.fixture(autouse=True)
def setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AFTERCARE_REMINDER_MAX_ATTEMPTS = 3
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def treatment(clinic_a):
    ended = NOW - dt.timedelta(days=3)
    return TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended)


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """The alert ids handed to the broker, in order (nothing is sent until a test sends them)."""
    ids: list[int] = []
    monkeypatch.setattr(staff_alerts, "enqueue", ids.extend)
    return ids


def _event(treatment, by, severity="severe"):
    return record_adverse_event(treatment=treatment, by=by, kind="infection", severity=severity,
                                onset_date=NOW.date() - dt.timedelta(days=1), description="Pustules, chin")


class Refusing:
    """A mail backend whose server refuses some addresses for good (550) or for now (451), and accepts the rest."""

    refused: dict[str, tuple[int, bytes]] = {}
    accepted: list[str] = []

    def __init__(self, *args, **kwargs):
        pass

    def open(self):
        pass

    def send_messages(self, messages):
        for message in messages:
            (address,) = message.to
            if address in self.refused:
                raise smtplib.SMTPRecipientsRefused({address: self.refused[address]})
            type(self).accepted.append(address)
            mail.outbox.append(message)
        return len(messages)

    def close(self):
        pass


@pytest.fixture
def refusing(settings):
    settings.EMAIL_BACKEND = "tests.patients.test_staff_alerts.Refusing"
    Refusing.refused, Refusing.accepted = {}, []
    return Refusing


def test_the_alert_is_written_with_the_event_and_queued_only_after_commit(
    treatment, clinician, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        event = _event(treatment, clinician)
    alert = StaffAlert.objects.get()
    assert (alert.kind, alert.adverse_event, alert.clinic, alert.status) == (
        StaffAlert.Kind.ADVERSE_EVENT, event, treatment.clinic, Status.PENDING)
    assert queued == []
    for callback in callbacks:
        callback()
    assert queued == [alert.pk]


def test_a_mild_event_raises_no_alert(treatment, clinician, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician, severity="mild")
    assert not StaffAlert.objects.exists()


def test_a_broker_that_is_down_at_commit_loses_nothing(treatment, clinician, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(ids):
        raise ConnectionError("Redis is not answering")

    monkeypatch.setattr(staff_alerts, "enqueue", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        event = _event(treatment, clinician)  # the request still succeeds: the callback is robust
    assert AdverseEvent.objects.filter(pk=event.pk).exists()
    queued: list[int] = []
    assert staff_alerts.dispatch_due(enqueue_ids=queued.extend) == 0  # leased to the lost message for a while
    later = NOW + dt.timedelta(minutes=16)
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_alerts.dispatch_due(now=later, enqueue_ids=queued.extend) == 1
    assert staff_alerts.send_alert(alert_id=queued[0], now=later) == SendOutcome.SENT
    assert [m.to for m in mail.outbox] == [[clinician.email]]
    event.refresh_from_db()
    assert event.notified_at == later


def test_each_clinician_gets_one_email_with_a_stable_message_id(
    treatment, clinician, clinic_a, queued, django_capture_on_commit_callbacks
):
    colleague = staff(Role.CLINICIAN, clinic_a, email="colleague@staff.example")
    staff(Role.COORDINATOR, clinic_a, email="front-desk@staff.example")  # not a clinician: not alerted
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.SENT
    assert sorted(m.to[0] for m in mail.outbox) == sorted([clinician.email, colleague.email])
    alert = StaffAlert.objects.get()
    assert (alert.status, alert.sent_at, sorted(alert.sent_to)) == (
        Status.SENT, NOW, sorted([clinician.email, colleague.email]))
    ids = {m.to[0]: m.extra_headers["Message-ID"] for m in mail.outbox}
    assert ids[clinician.email] == alert.message_id(clinician.email) != ids[colleague.email]


def test_a_temporary_failure_is_retried_later_for_those_who_did_not_get_it(
    treatment, clinician, clinic_a, queued, refusing, django_capture_on_commit_callbacks
):
    colleague = staff(Role.CLINICIAN, clinic_a, email="zz-colleague@staff.example")  # sorted after clinician_a's
    refusing.refused = {colleague.email: (451, b"4.3.0 Try again later")}
    with django_capture_on_commit_callbacks(execute=True):
        event = _event(treatment, clinician)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.RETRY
    alert = StaffAlert.objects.get()
    assert (alert.status, alert.sent_to, alert.last_error) == (
        Status.PENDING, [clinician.email], "451 4.3.0 Try again later")
    assert alert.due_at == NOW + dt.timedelta(seconds=60)
    event.refresh_from_db()
    assert event.notified_at == NOW  # a clinician knows
    assert staff_alerts.send_alert(alert_id=alert.pk) == SendOutcome.NOT_CLAIMED  # not due yet
    refusing.refused = {}
    later = NOW + dt.timedelta(minutes=2)
    assert staff_alerts.send_alert(alert_id=alert.pk, now=later) == SendOutcome.SENT
    assert refusing.accepted == [clinician.email, colleague.email]  # clinician_a emailed once, not twice
    alert.refresh_from_db()
    assert (alert.status, alert.attempts, alert.last_error, alert.sent_at) == (Status.SENT, 2, "", later)


def test_a_refused_address_leaves_the_alert_not_delivered_and_on_the_dashboard(
    client, treatment, clinician, clinic_a, queued, refusing, django_capture_on_commit_callbacks
):
    colleague = staff(Role.CLINICIAN, clinic_a, email="gone@staff.example")
    refusing.refused = {colleague.email: (550, b"5.1.1 No such user")}
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.FAILED
    alert = StaffAlert.objects.get()
    assert alert.status == Status.FAILED
    assert alert.sent_to == [clinician.email]
    assert alert.last_error == "The mail server refused gone@staff.example: 550 5.1.1 No such user"

    client.force_login(clinician)
    page = client.get(reverse("admin:index")).content.decode()
    assert 'data-metric="alerts_undelivered"><a href=' in page
    listing = client.get(reverse("admin:patients_staffalert_changelist") + "?status__exact=failed").content.decode()
    assert "gone@staff.example: 550 5.1.1 No such user" in listing
    assert "Infection (severe)" in listing

    # The address is mended; "Send again" emails the one who did not get it.
    Membership.objects.filter(user=colleague).update(is_active=False)
    mended = staff(Role.CLINICIAN, clinic_a, email="new@staff.example")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:patients_staffalert_changelist"),
                               {"action": "send_again_selected", "_selected_action": [alert.pk]})
    assert response.status_code == 302
    assert queued == [alert.pk, alert.pk]
    assert staff_alerts.send_alert(alert_id=alert.pk) == SendOutcome.SENT
    assert refusing.accepted == [clinician.email, mended.email]
    assert AuditEvent.objects.filter(action="staff_alert.send_again", actor=clinician).count() == 1
    page = client.get(reverse("admin:index")).content.decode()
    assert 'data-metric="alerts_undelivered">0<' in page


def test_a_clinic_with_no_clinician_to_email_is_told_not_silent(
    client, treatment, clinic_a, coordinator, queued, django_capture_on_commit_callbacks
):
    nurse = staff(Role.CLINICIAN, clinic_a, email="")  # records the event, has no address
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, nurse)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.FAILED
    alert = StaffAlert.objects.get()
    assert (alert.status, alert.last_error) == (Status.FAILED, staff_alerts.NOBODY_TO_EMAIL)
    assert mail.outbox == []
    client.force_login(coordinator)
    page = client.get(reverse("admin:index")).content.decode()
    assert 'data-metric="alerts_undelivered"><a href=' in page


def test_attempts_used_up_leave_it_not_delivered(treatment, clinician, queued, refusing,
                                                  django_capture_on_commit_callbacks):
    refusing.refused = {clinician.email: (421, b"4.7.0 Too busy")}
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    moment = NOW
    for _ in range(3):
        outcome = staff_alerts.send_alert(alert_id=queued[0], now=moment)
        moment += dt.timedelta(hours=7)
    assert outcome == SendOutcome.FAILED
    alert = StaffAlert.objects.get()
    assert (alert.status, alert.attempts) == (Status.FAILED, 3)
    assert alert.last_error == "421 4.7.0 Too busy (gave up after 3 attempts)"


def test_a_worker_that_died_while_sending_is_swept_and_nobody_is_emailed_twice(
    treatment, clinician, clinic_a, queued, refusing, monkeypatch, django_capture_on_commit_callbacks
):
    colleague = staff(Role.CLINICIAN, clinic_a, email="zz-colleague@staff.example")
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)

    accept = Refusing.send_messages

    def killed_after_the_first(self, messages):
        if Refusing.accepted:
            raise SystemExit("worker killed")  # not an Exception: nothing in the task records it
        return accept(self, messages)

    monkeypatch.setattr(Refusing, "send_messages", killed_after_the_first)
    with pytest.raises(SystemExit):
        staff_alerts.send_alert(alert_id=queued[0])
    assert StaffAlert.objects.get().status == Status.SENDING
    monkeypatch.undo()
    monkeypatch.setattr(staff_alerts, "enqueue", queued.extend)
    assert staff_alerts.dispatch_due(now=NOW + dt.timedelta(minutes=5)) == 0  # still leased to the worker
    later = NOW + dt.timedelta(minutes=11)
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_alerts.dispatch_due(now=later) == 1
    assert staff_alerts.send_alert(alert_id=queued[-1], now=later) == SendOutcome.SENT
    assert Refusing.accepted == [clinician.email, colleague.email]


def test_a_problem_the_patient_flags_alerts_the_clinicians(treatment, clinician, queued,
                                                          django_capture_on_commit_callbacks):
    link = create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=3)
    with django_capture_on_commit_callbacks(execute=True):
        assessment, _ = record_self_report(link=link, answers={"pain": 8, "problem_flagged": True,
                                                               "notes": "Yellow crusts"})
    alert = StaffAlert.objects.get()
    assert (alert.kind, alert.assessment) == (StaffAlert.Kind.PROBLEM_FLAG, assessment)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.SENT
    assert "flagged a problem" in mail.outbox[0].subject


def test_an_auditor_sees_the_alerts_but_cannot_send_them_again(
    client, treatment, clinician, auditor, queued, django_capture_on_commit_callbacks
):
    type(clinician).objects.filter(pk=clinician.pk).update(email="")  # nobody to email: the alert fails
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    staff_alerts.send_alert(alert_id=queued[0])
    alert = StaffAlert.objects.get()
    client.force_login(auditor)
    listing = client.get(reverse("admin:patients_staffalert_changelist"))
    assert listing.status_code == 200
    assert "send_again_selected" not in listing.content.decode()
    with pytest.raises(Exception, match="Only clinicians and clinic admins"):
        staff_alerts.send_again(alert=alert, by=auditor)
    alert.refresh_from_db()
    assert alert.status == Status.FAILED


def test_only_a_failed_alert_is_sent_again(treatment, clinician, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    staff_alerts.send_alert(alert_id=queued[0])
    with pytest.raises(Exception, match="This alert is sent; only one not delivered can be sent again."):
        staff_alerts.send_again(alert=StaffAlert.objects.get(), by=clinician)


def test_the_command_that_sends_without_celery_sends_the_alerts_too(
    treatment, clinician, monkeypatch, django_capture_on_commit_callbacks
):
    import io

    from django.core.management import call_command

    def broker_down(ids):
        raise ConnectionError("Redis is not answering")

    monkeypatch.setattr(staff_alerts, "enqueue", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    out = io.StringIO()
    call_command("send_due_reminders", stdout=out)  # at once: it does not wait for the lost message's lease
    assert "and 1 alert to clinicians." in out.getvalue()
    assert [m.to for m in mail.outbox] == [[clinician.email]]
    assert StaffAlert.objects.get().status == Status.SENT


# --- what the review of the outbox found -----------------------------------------------------------


def test_an_event_corrected_to_mild_before_its_alert_went_out_emails_nobody(
    treatment, clinician, queued, django_capture_on_commit_callbacks
):
    from patients.outcomes import correct_adverse_event

    with django_capture_on_commit_callbacks(execute=True):
        event = _event(treatment, clinician)
        correct_adverse_event(event=event, by=clinician, changes={"severity": "mild"},
                              reason="Typed severe by mistake; it is two milia")
    alert = StaffAlert.objects.get()
    assert (alert.status, alert.last_error) == (
        Status.CANCELLED, "Not sent: the event was corrected to mild before it went out.")
    assert staff_alerts.send_alert(alert_id=alert.pk) == SendOutcome.NOT_CLAIMED
    assert mail.outbox == []


def test_the_send_task_checks_the_severity_again_when_it_runs(treatment, clinician, queued,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        event = _event(treatment, clinician)
    AdverseEvent.objects.filter(pk=event.pk).update(severity="mild")  # as a correction racing the task would
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.SKIPPED
    assert StaffAlert.objects.get().status == Status.CANCELLED
    assert mail.outbox == []


def test_a_problem_reviewed_before_its_alert_went_out_emails_nobody(treatment, clinician, queued,
                                                                   django_capture_on_commit_callbacks):
    from patients.outcomes import review_problem_flag

    link = create_link(patient=treatment.patient, purpose=PatientLink.Purpose.SELF_REPORT, treatment=treatment,
                       time_point_day=3)
    with django_capture_on_commit_callbacks(execute=True):
        assessment, _ = record_self_report(link=link, answers={"pain": 8, "problem_flagged": True})
    review_problem_flag(assessment=assessment, by=clinician, note="Called her: a crust, healing")
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.SKIPPED
    assert StaffAlert.objects.get().last_error == "Not sent: a colleague reviewed the problem before it went out."
    assert mail.outbox == []


def test_a_failed_alert_goes_out_again_rather_than_a_second_one_so_nobody_is_emailed_twice(
    client, treatment, clinician, clinic_a, queued, refusing, django_capture_on_commit_callbacks
):
    from patients.outcomes import correct_adverse_event

    colleague = staff(Role.CLINICIAN, clinic_a, email="gone@staff.example")
    refusing.refused = {colleague.email: (550, b"5.1.1 No such user")}
    with django_capture_on_commit_callbacks(execute=True):
        event = _event(treatment, clinician)
    staff_alerts.send_alert(alert_id=queued[0])
    assert StaffAlert.objects.get().status == Status.FAILED
    refusing.refused = {}
    event.refresh_from_db()  # as the admin's page reads it: clinician_a was told
    with django_capture_on_commit_callbacks(execute=True):  # a later correction, or the event list's action
        correct_adverse_event(event=event, by=clinician, changes={"resolution_date": NOW.date()}, reason="Resolved at review")
        staff_alerts.alert_again_about(event=event, by=clinician)
    alert = StaffAlert.objects.get()  # still one alert
    assert alert.status == Status.FAILED  # notified already (clinician_a had it): a correction raises nothing
    with django_capture_on_commit_callbacks(execute=True):
        staff_alerts.send_again(alert=alert, by=clinician)
    staff_alerts.send_alert(alert_id=alert.pk)
    assert refusing.accepted == [clinician.email, colleague.email]  # clinician_a once, the colleague once
    assert StaffAlert.objects.get().status == Status.SENT


def test_a_clinic_admin_who_mended_the_address_sends_the_alert_again(
    client, treatment, clinician, clinic_admin, queued, django_capture_on_commit_callbacks
):
    type(clinician).objects.filter(pk=clinician.pk).update(email="")
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    staff_alerts.send_alert(alert_id=queued[0])
    alert = StaffAlert.objects.get()
    assert alert.status == Status.FAILED
    type(clinician).objects.filter(pk=clinician.pk).update(email="clinician_a@staff.example")
    client.force_login(clinic_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:patients_staffalert_changelist"),
                               {"action": "send_again_selected", "_selected_action": [alert.pk]})
    assert response.status_code == 302
    assert staff_alerts.send_alert(alert_id=alert.pk) == SendOutcome.SENT
    assert [m.to for m in mail.outbox] == [["clinician_a@staff.example"]]


def test_a_worker_whose_lease_went_to_another_attempt_changes_nothing(
    treatment, clinician, clinic_a, queued, refusing, monkeypatch, django_capture_on_commit_callbacks
):
    staff(Role.CLINICIAN, clinic_a, email="zz-colleague@staff.example")
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    accept = Refusing.send_messages

    def slow_first_worker(self, messages):
        # While the first worker talks to the server, its lease ends and the sweep hands the alert to another.
        StaffAlert.objects.update(status=Status.PENDING, lease_until=None)
        StaffAlert.objects.update(status=Status.SENDING, attempts=2)
        return accept(self, messages)

    monkeypatch.setattr(Refusing, "send_messages", slow_first_worker)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.NOT_CLAIMED
    alert = StaffAlert.objects.get()
    assert (alert.status, alert.attempts, alert.sent_to) == (Status.SENDING, 2, [])  # the second attempt's


def test_a_refused_sender_fails_the_alert_once_with_the_clinics_side_named(
    treatment, clinician, clinic_a, queued, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.patients.test_staff_alerts.SenderRefused"
    staff(Role.CLINICIAN, clinic_a, email="zz-colleague@staff.example")
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.FAILED
    alert = StaffAlert.objects.get()
    assert alert.last_error.startswith("The mail server refused the clinic's sender or sign-in (553 5.7.1")
    assert alert.last_error.count("refused") == 1


class SenderRefused(Refusing):
    def send_messages(self, messages):
        raise smtplib.SMTPSenderRefused(553, b"5.7.1 Sender address rejected", "aftercare@localhost")


def test_a_template_error_is_recorded_on_the_alert_and_retried(
    treatment, clinician, queued, monkeypatch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)

    def broken(alert):
        raise RuntimeError("template adverse_event.html is missing")

    monkeypatch.setattr(staff_alerts, "_render", broken)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.RETRY
    alert = StaffAlert.objects.get()
    assert alert.status == Status.PENDING
    assert "template adverse_event.html is missing" in alert.last_error


def test_a_correction_of_an_event_nobody_was_told_of_sends_its_failed_alert_again_not_a_second(
    treatment, clinic_a, queued, django_capture_on_commit_callbacks
):
    from patients.outcomes import correct_adverse_event

    nurse = staff(Role.CLINICIAN, clinic_a, email="")
    with django_capture_on_commit_callbacks(execute=True):
        event = _event(treatment, nurse)
    staff_alerts.send_alert(alert_id=queued[0])
    with django_capture_on_commit_callbacks(execute=True):
        correct_adverse_event(event=event, by=nurse, changes={"resolution_date": NOW.date()}, reason="Resolved today")
    alert = StaffAlert.objects.get()  # one alert, waiting again: the dashboard's "not delivered" is not doubled
    assert (alert.status, alert.attempts) == (Status.PENDING, 0)
    assert queued == [alert.pk, alert.pk]


def test_the_alerts_page_lists_who_was_emailed_in_words(client, treatment, clinician, queued,
                                                       django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    staff_alerts.send_alert(alert_id=queued[0])
    client.force_login(clinician)
    page = client.get(reverse("admin:patients_staffalert_change", args=[queued[0]])).content.decode()
    assert "clinician_a@staff.example" in page
    assert "[&quot;clinician_a@staff.example&quot;]" not in page and '["clinician_a' not in page


class RefusedAtData(Refusing):
    """A server that takes every RCPT and refuses one clinician's message after DATA (550), as some do."""

    def send_messages(self, messages):
        (address,) = messages[0].to
        if address == "gone@staff.example":
            raise smtplib.SMTPDataError(550, b"5.1.1 No such user")
        return Refusing.send_messages(self, messages)


def test_an_address_refused_after_data_is_that_address_not_the_whole_alert(
    treatment, clinician, clinic_a, queued, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.patients.test_staff_alerts.RefusedAtData"
    Refusing.refused, Refusing.accepted = {}, []
    staff(Role.CLINICIAN, clinic_a, email="gone@staff.example")
    staff(Role.CLINICIAN, clinic_a, email="zz-colleague@staff.example")
    with django_capture_on_commit_callbacks(execute=True):
        _event(treatment, clinician)
    assert staff_alerts.send_alert(alert_id=queued[0]) == SendOutcome.FAILED
    alert = StaffAlert.objects.get()
    assert sorted(alert.sent_to) == [clinician.email, "zz-colleague@staff.example"]  # the one after it too
    assert alert.last_error == "The mail server refused gone@staff.example: 550 5.1.1 No such user"
