"""Patient pages behind the signed links in reminder emails: "I did this" ("Got it" for an avoidance) and "Unsubscribe".

GET only shows a confirmation page with a button (mail scanners and link
previews fetch links, and must not change anything); POST changes the state,
once.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from clinic.audit import record_event
from patients.links import consume_link
from patients.models import PatientLink
from patients.reminders import unsubscribe
from patients.timeline import avoidance_end
from patients.treatments import record_step_done
from protocols.models import StepKind

PATIENT_ACTOR = "patient (signed link)"


def step_done_link(request: HttpRequest, link: PatientLink) -> HttpResponse:
    """Record that the patient did the step; the link is single-use."""
    patient = link.patient
    reminder = link.reminder
    if reminder is None:
        message = "This link is not valid. Please use the link from your most recent email."
        return render(request, "patient/link_error.html", {"message": message, "clinic": patient.clinic}, status=410)
    step = reminder.step
    context = {
        "clinic": patient.clinic, "patient": patient, "step": step, "occurs_at": reminder.occurs_at,
        # An avoidance is confirmed as read ("Got it"), as its email says; nothing was done.
        "is_avoidance": step.kind == StepKind.AVOIDANCE,
        "avoid_until": avoidance_end(
            avoid_until_day=step.avoid_until_day, ended_at=reminder.treatment.ended_at, zone=ZoneInfo(patient.zone_name)
        ),
    }

    def page(state: str) -> HttpResponse:
        # Times on the page are the patient's wall clock.
        with timezone.override(ZoneInfo(patient.zone_name)):
            return render(request, "patient/reminder_done.html", {**context, "state": state})

    if link.used_at is not None or reminder.done_at is not None:
        return page("already")
    if request.method != "POST":
        return page("confirm")
    with transaction.atomic():
        # Claim the link first: a double tap records the step once.
        if not consume_link(link):
            return page("already")
        record_step_done(reminder=reminder)
    return page("thanks")


@csrf_exempt  # RFC 8058 one-click: the mail client POSTs with no cookie or token; the signed URL is the secret
def unsubscribe_link(request: HttpRequest, link: PatientLink) -> HttpResponse:
    """Stop reminder emails for the patient: a confirmation page, or the mail client's one-click POST."""
    patient = link.patient
    context = {"clinic": patient.clinic, "patient": patient}
    if request.method != "POST":
        state = "already" if patient.opted_out_at is not None else "confirm"
        return render(request, "patient/unsubscribe.html", {**context, "state": state})
    if unsubscribe(patient=patient):
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        record_event(
            actor=PATIENT_ACTOR, action="patient.unsubscribe", clinic=patient.clinic, obj=patient, request=request,
            detail={"via": "one-click" if one_click else "page", "link": link.pk},
        )
    return render(request, "patient/unsubscribe.html", {**context, "state": "done"})
