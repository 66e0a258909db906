"""Reminder emails: text and HTML from ``templates/emails/``, in the patient's language where one exists.

What goes into a reminder and why:

* the sender is the clinic (its sender name, our address) and replies go to the clinic;
* the subject says only that it is a reminder from the clinic and for which day (for a
  follow-up visit staff moved, that the visit moved and to when): a subject is shown on
  lock screens, so no procedure or health detail goes there;
* a ``Message-ID`` derived from the reminder row, the same on every attempt, so
  the one possible duplicate (a crash after the server accepted the message) is
  recognisable as a copy;
* ``List-Unsubscribe`` with ``List-Unsubscribe-Post`` (RFC 8058) so mail
  clients offer a one-click unsubscribe that works without the patient logging in;
* signed links: "I did this" ("Got it" for something to avoid), "Report how my skin looks" (outcome checks)
  and "Unsubscribe";
* for an avoidance, until when: the date of its "avoid until" day on the patient's clock, and the day;
* an ``.ics`` invitation for follow-up visits;
* for a follow-up visit staff moved, first of all that it moved, from when to when on the patient's clock:
  the patient may have the old time in their calendar (a resend of it says so again).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import TemplateDoesNotExist
from django.template.loader import select_template
from django.utils import timezone, translation
from icalendar import Calendar, Event

from clinic.senders import clinic_sender
from patients.links import new_link, url_for
from patients.models import Reminder
from patients.models.link import PatientLink
from patients.outcomes import step_days
from patients.timeline import avoidance_end, protocol_day
from protocols.models import StepKind

if TYPE_CHECKING:
    pass

VISIT_LENGTH = dt.timedelta(minutes=30)
# A link older than this is not reused for a new attempt: the patient should
# get a link that stays valid for a while after the email arrives.
_LINK_REUSE_MIN_REMAINING = dt.timedelta(days=3)


@dataclass(frozen=True)
class ReminderLinks:
    done: str
    unsubscribe: str
    self_report: str | None = None


def _links_for(
    *, reminder: Reminder, now: dt.datetime, wanted: dict[str, dict[str, Any]], first_attempt: bool
) -> dict[str, PatientLink]:
    """The reminder's links by purpose (``wanted`` maps each purpose to its ``new_link`` options).

    Retries reuse the links of the first attempt, so a retried email does not
    leave a trail of unused links behind it. One query reads them and one
    writes the missing ones, however many links the email carries: the
    worker sends thousands of these. A first attempt has nothing to reuse and
    skips the read.
    """
    links: dict[str, PatientLink] = {}
    if not first_attempt:
        reusable = PatientLink.objects.filter(
            reminder=reminder, purpose__in=list(wanted), expires_at__gt=now + _LINK_REUSE_MIN_REMAINING
        ).order_by("expires_at")
        links = {link.purpose: link for link in reusable}  # the one expiring last wins
    treatment = reminder.treatment
    missing = [
        new_link(patient=treatment.patient, purpose=purpose, treatment=treatment, reminder=reminder, **options)
        for purpose, options in wanted.items()
        if purpose not in links
    ]
    links.update({link.purpose: link for link in PatientLink.objects.bulk_create(missing)})
    return links


def reminder_links(*, reminder: Reminder, now: dt.datetime | None = None, first_attempt: bool = False) -> ReminderLinks:
    """The signed links one reminder email carries (created on first use, reused by retries).

    ``first_attempt``: the caller knows no attempt before this one made links (saves a query).
    """
    now = now or timezone.now()
    Purpose = PatientLink.Purpose  # noqa: N806
    wanted: dict[str, dict[str, Any]] = {
        Purpose.DONE: {},
        Purpose.UNSUBSCRIBE: {"valid_for": dt.timedelta(days=settings.AFTERCARE_REMINDER_UNSUBSCRIBE_LINK_DAYS)},
    }
    if reminder.step.kind == StepKind.OUTCOME_CHECK:
        wanted[Purpose.SELF_REPORT] = {"time_point_day": time_point_day(reminder)}
    links = _links_for(reminder=reminder, now=now, wanted=wanted, first_attempt=first_attempt)
    self_report = links.get(Purpose.SELF_REPORT)
    return ReminderLinks(
        done=url_for(links[Purpose.DONE]), unsubscribe=url_for(links[Purpose.UNSUBSCRIBE]),
        self_report=url_for(self_report) if self_report else None,
    )


def _template_names(*, name: str, kind: str, language: str, extension: str) -> list[str]:
    # English templates carry no language suffix. The patient's language wins
    # over a kind-specific English template: a patient should read their own
    # language even if the wording is the generic one.
    english = [f"emails/{name}_{kind}.{extension}", f"emails/{name}.{extension}"]
    if language == "en":
        return english
    return [f"emails/{name}_{kind}.{language}.{extension}", f"emails/{name}.{language}.{extension}", *english]


def _render(*, name: str, kind: str, language: str, extension: str, context: dict) -> str:
    template = select_template(_template_names(name=name, kind=kind, language=language, extension=extension))
    return template.render(context)


def email_language(*, language: str, kind: str) -> str:
    """The language of the reminder: the patient's when a translation exists, else English."""
    if language == "en":
        return "en"
    try:
        select_template(_template_names(name="reminder", kind=kind, language=language, extension="txt")[:2])
    except TemplateDoesNotExist:
        return "en"
    return language


def sender_for(reminder: Reminder) -> str:
    return clinic_sender(reminder.treatment.clinic)


def calendar_invite(reminder: Reminder) -> str:
    """An iCalendar (.ics) invitation for a follow-up visit, stable across attempts."""
    clinic = reminder.treatment.clinic
    domain = reminder.message_id.rsplit("@", 1)[-1].rstrip(">")
    calendar = Calendar()
    calendar.add("prodid", "-//Aftercare//Reminders//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = Event()
    # Same UID on every attempt and after a move: a calendar updates one event instead of adding a second.
    # A moved visit's SEQUENCE is higher (RFC 5545: the later revision wins) and DTSTAMP is when it moved;
    # both stay the same across the attempts of one delivery.
    event.add("uid", f"visit-{reminder.pk}@{domain}")
    event.add("sequence", reminder.move_count)
    event.add("dtstamp", reminder.moved_at or reminder.created_at)
    event.add("dtstart", reminder.occurs_at)
    event.add("dtend", reminder.occurs_at + VISIT_LENGTH)
    event.add("summary", f"{clinic.name}: {reminder.step.title}")
    event.add("location", clinic.name)
    if reminder.step.patient_text:
        event.add("description", reminder.step.patient_text)
    calendar.add_component(event)
    return calendar.to_ical().decode()


def time_point_day(reminder: Reminder) -> int:
    """The outcome time point an outcome-check reminder asks about: its step's day as staff's forms count it.

    "+36 hours" is the day-1 check whatever the hour of the procedure, though it
    may fall on the second calendar day after it; the patient's self-report
    must be filed under the day the clinician's entry is.
    """
    days = step_days(reminder.step)
    return days[min(reminder.occurrence, len(days) - 1)]


def _context(*, reminder: Reminder, links: ReminderLinks, zone: ZoneInfo) -> dict:
    treatment = reminder.treatment
    is_follow_up_visit = reminder.step.kind == StepKind.FOLLOW_UP_VISIT
    moved_from = reminder.moved_from
    return {
        "reminder": reminder,
        "clinic": treatment.clinic,
        "patient_first_name": treatment.patient.given_name,
        "step": reminder.step,
        "kind": reminder.step.kind,
        "occurs_at": reminder.occurs_at.astimezone(zone),
        "day": protocol_day(occurs_at=reminder.occurs_at, ended_at=treatment.ended_at, zone=zone),
        "is_follow_up_visit": is_follow_up_visit,
        "is_outcome_check": reminder.step.kind == StepKind.OUTCOME_CHECK,
        # Nothing to do for an avoidance: its link confirms the patient read it ("Got it"), not "I did this".
        "is_avoidance": reminder.step.kind == StepKind.AVOIDANCE,
        "avoid_until": avoidance_end(
            avoid_until_day=reminder.step.avoid_until_day, ended_at=treatment.ended_at, zone=zone
        ),
        # The latest move's old time: the email says the visit moved, from when, before anything else.
        "moved_from": moved_from.astimezone(zone) if is_follow_up_visit and moved_from else None,
        "links": links,
    }


def build_reminder_email(*, reminder: Reminder, links: ReminderLinks) -> EmailMultiAlternatives:
    """The email for ``reminder``: text and HTML, headers, and an invitation for follow-up visits."""
    treatment = reminder.treatment
    patient = treatment.patient
    zone = ZoneInfo(patient.zone_name)
    language = email_language(language=patient.preferred_language or "en", kind=reminder.step.kind)
    context = {**_context(reminder=reminder, links=links, zone=zone), "language": language}
    kind = reminder.step.kind
    # Dates in the templates are the patient's wall clock, in their language.
    with translation.override(language), timezone.override(zone):
        subject = _render(name="reminder_subject", kind=kind, language=language, extension="txt", context=context)
        text = _render(name="reminder", kind=kind, language=language, extension="txt", context=context)
        html = _render(name="reminder", kind=kind, language=language, extension="html", context=context)
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=text,
        from_email=sender_for(reminder),
        to=[patient.email],
        reply_to=[treatment.clinic.contact_email],
        headers={
            "Message-ID": reminder.message_id,
            "List-Unsubscribe": f"<{links.unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
            "Content-Language": language,
        },
    )
    message.attach_alternative(html, "text/html")
    if kind == StepKind.FOLLOW_UP_VISIT:
        message.attach("visit.ics", calendar_invite(reminder), "text/calendar")
    return message

