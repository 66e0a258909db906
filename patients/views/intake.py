"""The patient's intake questionnaire, opened from a signed link on a phone, no login."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from patients.intake import PatientIntakeForm, patient_zone, record_intake, use_intake_link
from patients.models import Intake, PatientLink


def _used(request: HttpRequest, link: PatientLink) -> HttpResponse:
    # Answered through this link, or stopped by a newer link or an answer through another one.
    context = {"clinic": link.patient.clinic, "patient": link.patient, "superseded": link.used_at is None}
    return render(request, "patient/intake_used.html", context, status=410)


def intake_link(request: HttpRequest, link: PatientLink) -> HttpResponse:
    """Show the intake form; on a valid submission store a new intake and use up the link.

    A used link, or one a newer link or another answer stopped, shows a friendly
    page and changes nothing; invalid answers re-show the form with the errors
    and leave the link usable.
    """
    patient = link.patient
    if link.used_at is not None or link.superseded_at is not None:
        return _used(request, link)
    today = timezone.localtime(timezone.now(), patient_zone(patient)).date()
    form = PatientIntakeForm(
        request.POST if request.method == "POST" else None, today=today, born=patient.date_of_birth
    )
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            # Claimed first, in the same transaction as the intake, so a
            # double-submitted form stores one intake and a failure stores none.
            if not use_intake_link(link):
                link.refresh_from_db(fields=["used_at", "superseded_at"])
                return _used(request, link)
            record_intake(
                patient=patient, answers=form.answers(), recorded_by=None, source=Intake.Source.PATIENT_LINK,
                request=request,
            )
        return render(request, "patient/intake_done.html", {"clinic": patient.clinic, "patient": patient})
    return render(
        request, "patient/intake_form.html", {"clinic": patient.clinic, "patient": patient, "form": form},
        status=400 if form.is_bound else 200,
    )
