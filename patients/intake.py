"""Intake services: validate answers, record a new intake, re-confirm one, send the intake link.

An intake is what the patient said on a day; new answers always make a new
intake, so the screening that read an old one can still be explained.
"""

from __future__ import annotations

import datetime as dt
import smtplib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django import forms
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import models, transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone

from clinic.audit import record_event
from clinic.history import INTAKE_BY_PATIENT
from clinic.models import AuditEvent
from clinic.senders import clinic_sender
from patients.links import consume_link, create_link, url_for
from patients.models import Intake, Patient, PatientLink
from patients.reminders import classify_send_error
from protocols.facts import FACTS, FACTS_BY_CODE, Fact, FactType

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


# --- answers ------------------------------------------------------------------


def _check_answer(fact: Fact, value: Any, *, on: dt.date, born: dt.date | None) -> str | None:
    """Why ``value`` is not a valid answer to ``fact`` on ``on`` by someone born on ``born``, or None when it is."""
    if fact.type == FactType.BOOLEAN:
        return None if isinstance(value, bool) else "must be true or false"
    if fact.type == FactType.DATE:
        if not isinstance(value, str):
            return "must be a date as YYYY-MM-DD"
        try:
            when = dt.date.fromisoformat(value)
        except ValueError:
            return "must be a date as YYYY-MM-DD"
        if when > on:
            return f"cannot be in the future (after {on.isoformat()})"
        if born is not None and when < born:
            return f"cannot be before the patient's date of birth ({born.isoformat()})"
        return None
    if fact.type == FactType.CHOICE:
        allowed = [code for code, _label in fact.choices]
        return None if value in allowed else f"must be one of {', '.join(allowed)}"
    return None if isinstance(value, str) else "must be text"


def validate_answers(answers: Any, *, on: dt.date, born: dt.date | None = None) -> dict[str, Any]:
    """Clean intake answers or raise ``ValidationError`` keyed by fact code.

    Unknown facts, values of the wrong type, dates after ``on`` (the day the
    answers were given) and dates before ``born`` (the patient's date of birth:
    an isotretinoin course in 1850 is a typing mistake) are errors.  Unanswered facts (None or "") are
    dropped: the engine treats a missing answer as "not said".
    """
    if not isinstance(answers, dict):
        raise ValidationError({"answers": "Answers must be an object of fact code → answer."})
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for code, value in answers.items():
        fact = FACTS_BY_CODE.get(code)
        if fact is None:
            errors[code] = f"Unknown fact {code!r}."
            continue
        if value is None or value == "":
            continue
        problem = _check_answer(fact, value, on=on, born=born)
        if problem:
            errors[code] = f"{fact.question} — the answer {problem}."
        else:
            cleaned[code] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


# --- recording --------------------------------------------------------------------

#: How far ahead of this server's clock an answer's time may be (another device's clock running fast).
CLOCK_SKEW = dt.timedelta(minutes=5)



def record_intake(
    *,
    patient: Patient,
    answers: dict[str, Any],
    recorded_by: AbstractBaseUser | None,
    source: str = Intake.Source.STAFF,
    answered_at: dt.datetime | None = None,
    request: HttpRequest | None = None,
) -> Intake:
    """Validate and store a new intake for ``patient``; earlier intakes are untouched."""
    now = timezone.now()
    answered_at = answered_at or now
    if answered_at > now + CLOCK_SKEW:
        # The newest intake is the one screening reads: a mistyped year would hide every later answer from it.
        shown = timezone.localtime(answered_at, patient_zone(patient))
        raise ValidationError({"answered_at": f"{shown:%Y-%m-%d %H:%M} is in the future: give when the patient "
                                              "answered (now, or earlier for answers given on paper)."})
    local_day = timezone.localtime(answered_at, patient_zone(patient)).date()
    cleaned = validate_answers(answers, on=local_day, born=patient.date_of_birth)
    with transaction.atomic():
        intake = Intake(
            patient=patient, answers=cleaned, source=source, recorded_by=recorded_by, answered_at=answered_at
        )
        if source == Intake.Source.PATIENT_LINK:
            intake._change_reason = INTAKE_BY_PATIENT  # the history page names the patient
        intake.save()
        record_event(
            actor=recorded_by or "patient (signed link)", action="intake.record", clinic=patient.clinic,
            obj=intake, detail={"source": source, "patient": patient.pk}, request=request,
        )
    return intake


def reconfirm_intake(*, intake: Intake, confirmed_by: AbstractBaseUser, request: HttpRequest | None = None) -> Intake:
    """Staff re-confirmed the answers with the patient today; history keeps the earlier state."""
    with transaction.atomic():
        intake.confirmed_at = timezone.now()
        intake.confirmed_by = confirmed_by
        intake.save(update_fields=["confirmed_at", "confirmed_by"])
        record_event(
            actor=confirmed_by, action="intake.confirm", clinic=intake.patient.clinic, obj=intake, request=request
        )
    return intake


def latest_intake(patient: Patient) -> Intake | None:
    """The intake whose answers count now: the most recently given one (one dated in the future is not it)."""
    return (patient.intakes.filter(answered_at__lte=timezone.now() + CLOCK_SKEW)
            .order_by("-answered_at", "-pk").first())


def patient_zone(patient: Patient) -> ZoneInfo:
    return ZoneInfo(patient.zone_name)


# --- the intake link -------------------------------------------------------------

#: How long after an intake link was sent a second one needs staff to confirm it (a double click, going back).
INTAKE_LINK_RESEND_AFTER = dt.timedelta(minutes=10)
#: ``ValidationError.code`` when a working link went out within ``INTAKE_LINK_RESEND_AFTER``
RECENT_INTAKE_LINK = "recent_intake_link"


def _open_intake_links(patient: Patient, now: dt.datetime) -> models.QuerySet[PatientLink]:
    return PatientLink.objects.filter(
        patient=patient, purpose=PatientLink.Purpose.INTAKE, used_at__isnull=True, superseded_at__isnull=True,
        expires_at__gt=now,
    )


def recent_intake_link(patient: Patient, *, now: dt.datetime | None = None) -> PatientLink | None:
    """An intake link sent to ``patient`` in the last ``INTAKE_LINK_RESEND_AFTER`` that still works, if any."""
    now = now or timezone.now()
    recent = _open_intake_links(patient, now).filter(created_at__gt=now - INTAKE_LINK_RESEND_AFTER)
    return recent.order_by("-created_at", "-pk").first()


def send_intake_link(
    *, patient: Patient, sent_by: AbstractBaseUser, even_if_recent: bool = False, request: HttpRequest | None = None
) -> PatientLink:
    """Email ``patient`` a single-use signed link to fill in the intake on their phone.

    The patient's other open intake links stop working: only the newest email's
    link is answered. A link sent minutes ago that still works is not sent again
    unless ``even_if_recent`` (``ValidationError`` with code ``RECENT_INTAKE_LINK``).
    """
    if not patient.email:
        raise ValidationError({"email": "The patient has no email address."})
    clinic = patient.clinic
    now = timezone.now()
    if not even_if_recent and (recent := recent_intake_link(patient, now=now)):
        sent_at = timezone.localtime(recent.created_at, ZoneInfo(clinic.time_zone))
        raise ValidationError(
            f"An intake link was sent to {patient.email} at {sent_at:%H:%M}; it still works.", code=RECENT_INTAKE_LINK
        )
    with transaction.atomic():
        link = create_link(patient=patient, purpose=PatientLink.Purpose.INTAKE)
    # Sent outside any transaction (a slow mail server must not hold the database). A link the patient never
    # received is not kept, nor logged as sent, and the links it would have replaced keep working.
    context = {"patient": patient, "clinic": clinic, "url": url_for(link), "expires_at": link.expires_at}
    message = EmailMultiAlternatives(
        subject=f"{clinic.name}: a few health questions before your visit",
        body=render_to_string("emails/intake_link.txt", context),
        from_email=clinic_sender(clinic),
        to=[patient.email],
        reply_to=[clinic.contact_email],
    )
    message.attach_alternative(render_to_string("emails/intake_link.html", context), "text/html")
    try:
        message.send(fail_silently=False)
    except (smtplib.SMTPException, OSError) as error:
        link.delete()
        raise ValidationError(_not_sent(patient.email, error)) from error
    with transaction.atomic():
        _open_intake_links(patient, now).exclude(pk=link.pk).update(superseded_at=now)
        record_event(
            actor=sent_by, action="intake.link_sent", clinic=clinic, obj=patient, detail={"link": link.pk},
            request=request,
        )
    return link


def _not_sent(address: str, error: BaseException) -> str:
    """Why the link did not go out, and what to do: mend the address, the mail settings, or wait."""
    problem = classify_send_error(error)
    if isinstance(error, smtplib.SMTPRecipientsRefused) and problem.permanent:
        advice = "; check the address, then try again."
    elif problem.permanent:
        advice = "."  # the clinic's sender or sign-in: the server's answer says what to mend
    else:
        advice = "; try again in a few minutes."
    return f"The intake link could not be emailed to {address}: {problem.message.rstrip('.')}. Nothing was sent{advice}"


def use_intake_link(link: PatientLink) -> bool:
    """Use up ``link`` and stop the patient's other open intake links; False if it was used or stopped already.

    Call it in the transaction that stores the answers.
    """
    now = timezone.now()
    others = _open_intake_links(link.patient, now).exclude(pk=link.pk)
    # Locked in one order before any is changed: two of a patient's links answered
    # at once wait for each other instead of deadlocking.
    list(_open_intake_links(link.patient, now).select_for_update().order_by("pk").values_list("pk", flat=True))
    if not consume_link(link):
        return False
    others.update(superseded_at=now)
    return True


@dataclass(frozen=True)
class SentIntakeLink:
    """An intake link as the patient's page tells it: when, by whom, and what became of it."""

    sent_at: dt.datetime
    sent_by: str
    expires_at: dt.datetime
    answered_at: dt.datetime | None
    superseded_at: dt.datetime | None
    expired: bool


def intake_links_sent(patient: Patient, *, limit: int = 5) -> list[SentIntakeLink]:
    """The latest intake links sent to ``patient``, newest first: two queries, however many."""
    links = list(
        PatientLink.objects.filter(patient=patient, purpose=PatientLink.Purpose.INTAKE).order_by("-created_at", "-pk")
        [:limit]
    )
    if not links:
        return []
    # Who sent each link is in the access log only (the entry names the link it sent).
    entries = AuditEvent.objects.filter(
        action="intake.link_sent", object_type=Patient._meta.label_lower, object_id=str(patient.pk),
        created_at__gte=links[-1].created_at,
    ).values_list("detail", "actor_label")
    senders = {detail.get("link"): label for detail, label in entries if isinstance(detail, dict)}
    now = timezone.now()
    return [
        SentIntakeLink(
            sent_at=link.created_at, sent_by=senders.get(link.pk, ""), expires_at=link.expires_at,
            answered_at=link.used_at, superseded_at=link.superseded_at, expired=link.expires_at <= now,
        )
        for link in links
    ]


# --- the generated form ----------------------------------------------------------

_YES_NO = [("yes", "Yes"), ("no", "No")]


def _field_for(fact: Fact, *, for_patient: bool) -> forms.Field:
    label = fact.patient_text if for_patient else fact.question
    if fact.type == FactType.BOOLEAN:
        # A radio pair, not a checkbox: "no" and "not asked" must differ.
        choices = _YES_NO if for_patient else [("", "Not asked"), *_YES_NO]
        return forms.TypedChoiceField(
            label=label, choices=choices, widget=forms.RadioSelect, required=for_patient,
            coerce=lambda value: value == "yes", empty_value=None,
        )
    if fact.type == FactType.DATE:
        return forms.DateField(
            label=label, required=False, widget=forms.DateInput(attrs={"type": "date"}),
            help_text="Leave empty if never.",
        )
    if fact.type == FactType.CHOICE:
        return forms.ChoiceField(label=label, choices=[("", "Don't know"), *fact.choices], required=False)
    return forms.CharField(label=label, required=False)


class IntakeForm(forms.Form):
    """One field per fact in ``protocols.facts.FACTS``; ``answers()`` gives the JSON to store."""

    for_patient = False

    def __init__(self, *args: Any, today: dt.date | None = None, born: dt.date | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.today = today or timezone.localdate()
        self.born = born
        for fact in FACTS:
            self.fields[fact.code] = _field_for(fact, for_patient=self.for_patient)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        try:
            validate_answers(self.answers(), on=self.today, born=self.born)
        except ValidationError as error:
            for code, messages in error.message_dict.items():
                self.add_error(code if code in self.fields else None, messages)
        return cleaned

    def answers(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for fact in FACTS:
            value = self.cleaned_data.get(fact.code)
            if value is None or value == "":
                continue
            result[fact.code] = value.isoformat() if isinstance(value, dt.date) else value
        return result


FUTURE_DATE = "The date can't be in the future."
BEFORE_BIRTH = "The date can't be before you were born."


class PatientIntakeForm(IntakeForm):
    for_patient = True

    def clean(self) -> dict[str, Any]:
        # In the patient's words; staff read validate_answers' "<question> — the answer cannot be in the future"
        # (or "before the patient's date of birth").
        for fact in FACTS:
            value = self.cleaned_data.get(fact.code)
            if fact.type != FactType.DATE or value is None:
                continue
            # add_error also drops the answer, so it is not judged again
            if value > self.today:
                self.add_error(fact.code, FUTURE_DATE)
            elif self.born is not None and value < self.born:
                self.add_error(fact.code, BEFORE_BIRTH)
        return super().clean()
