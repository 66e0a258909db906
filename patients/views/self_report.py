"""The patient's self-report, opened from the signed link in a reminder: how the skin looks, on a phone, no login.

One report per treatment and day.  Opening the link again shows the earlier
answers, and sending them again corrects the report (history keeps the
first).  Bad answers or a bad photo re-show the form with the message and
store nothing.  A sent report redirects to its thank-you page (``?sent=``
on the same link), so reloading that page sends nothing again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from patients.models import OutcomeAssessment, PatientLink, Treatment
from patients.outcomes import (
    NOTES_MAX_LENGTH,
    PATIENT_REDNESS,
    record_self_report,
    self_report_answers,
    self_report_for,
)
from patients.photos import prepare_photo

PAIN_WORDS = {0: "no pain", 5: "moderate", 10: "worst pain imaginable"}
ITCH_WORDS = {0: "no itching", 5: "moderate", 10: "worst itching imaginable"}
SERUM_ANSWERS = {"yes": True, "no": False, "unsure": None}
RATINGS = ("erythema", "pain", "pruritus", "applied_as_instructed")
NOTHING_SENT = (
    "You have not answered anything yet. Answer the four questions, or tick "
    '"I have a problem I want the clinic to know about" to tell the clinic about a problem.'
)
# What the thank-you page says, by the ?sent= the form redirects to.
SENT_STATES = ("new", "corrected", "unchanged", "photo")


def _scale(words: dict[int, str]) -> list[tuple[int | str, str]]:
    # An empty first choice: a select shows its first option, and a question the
    # patient skipped must not be stored as "0 — none".
    return [("", "Choose 0–10"), *((n, f"{n} — {words[n]}" if n in words else str(n)) for n in range(11))]


class SelfReportForm(forms.Form):
    erythema = forms.TypedChoiceField(
        label="How red is the treated skin right now?", coerce=int, empty_value=None, required=False,
        widget=forms.RadioSelect,
        choices=[(n, label) for n, (label, _text) in PATIENT_REDNESS.items()],
        error_messages={"required": "Choose the description closest to how your skin looks.",
                        "invalid_choice": "Choose one of the five descriptions."},
    )
    pain = forms.TypedChoiceField(
        label="How much pain do you have? (0 = none, 10 = worst imaginable)", coerce=int, empty_value=None,
        required=False, choices=_scale(PAIN_WORDS),
        error_messages={"required": "Choose a number from 0 to 10.", "invalid_choice": "Choose a number from 0 to 10."},
    )
    pruritus = forms.TypedChoiceField(
        label="How itchy is it? (0 = not at all, 10 = worst imaginable)", coerce=int, empty_value=None,
        required=False, choices=_scale(ITCH_WORDS),
        error_messages={"required": "Choose a number from 0 to 10.", "invalid_choice": "Choose a number from 0 to 10."},
    )
    applied_as_instructed = forms.ChoiceField(
        label="Did you apply the serum as instructed?", widget=forms.RadioSelect, required=False,
        choices=[("yes", "Yes"), ("no", "No, not always"), ("unsure", "Not sure, or no serum in my plan")],
        error_messages={"required": "Please answer yes, no or not sure."},
    )
    problem_flagged = forms.BooleanField(required=False, label="I have a problem I want the clinic to know about")
    notes = forms.CharField(
        required=False, max_length=NOTES_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 4}),
        label="What is happening? (optional)",
        help_text=(f"For example: oozing, crusts, blisters, spreading redness, fever. Up to {NOTES_MAX_LENGTH:,} "
                   "characters (about a page)."),
        error_messages={"max_length": (
            f"This is too long to send: please shorten it to {NOTES_MAX_LENGTH:,} characters or fewer "
            "(yours has %(show_value)s). If there is more to say, call the clinic."
        )},
    )
    photo = forms.FileField(
        required=False, label="A photo of the treated area (optional)",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
        help_text="Only staff of your clinic can see it.",
    )

    def clean_photo(self) -> Any:
        upload = self.cleaned_data.get("photo")
        if not upload:
            return None
        try:
            return prepare_photo(upload)
        except ValidationError as error:
            raise ValidationError(error.message_dict["photo"]) from None

    def clean(self) -> dict[str, Any]:
        # The four questions are required unless the patient flags a problem: a
        # problem must reach the clinic even when the patient answers nothing else.
        data = super().clean()
        if data.get("problem_flagged"):
            return data
        unanswered = [name for name in RATINGS if name not in self.errors and data.get(name) in (None, "")]
        for name in unanswered:
            self.add_error(name, self.fields[name].error_messages["required"])
        if len(unanswered) == len(RATINGS) and not data.get("notes") and not self.files.get("photo"):
            self.add_error(None, NOTHING_SENT)
        return data

    def answers(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "erythema": data["erythema"], "pain": data["pain"], "pruritus": data["pruritus"],
            "applied_as_instructed": SERUM_ANSWERS.get(data["applied_as_instructed"]),
            "problem_flagged": data["problem_flagged"], "notes": data["notes"],
        }

    @staticmethod
    def initial_from(report: OutcomeAssessment | None) -> dict[str, Any]:
        if report is None:
            return {}
        serum = {value: key for key, value in SERUM_ANSWERS.items()}[report.applied_as_instructed]
        if report.problem_flagged and all(getattr(report, name) is None for name in RATINGS):
            serum = ""  # a problem sent without answers: "not sure" was never chosen
        return {
            "erythema": report.erythema, "pain": report.pain, "pruritus": report.pruritus,
            "applied_as_instructed": serum, "problem_flagged": report.problem_flagged, "notes": report.notes,
        }


def _not_usable(request: HttpRequest, link: PatientLink, message: str) -> HttpResponse:
    return render(request, "patient/link_error.html", {"message": message, "clinic": link.patient.clinic}, status=410)


def _treated_on(treatment: Treatment) -> dt.date:
    return treatment.ended_at.astimezone(ZoneInfo(treatment.patient.zone_name)).date()


def self_report_link(request: HttpRequest, link: PatientLink) -> HttpResponse:
    """Show the self-report form for the link's day; store the answers, or correct the earlier ones."""
    clinic = link.patient.clinic
    if link.treatment_id is None or link.time_point_day is None:
        return _not_usable(request, link, f"This link is incomplete. Please contact {clinic.name} at {clinic.contact_email}.")
    treatment = link.treatment
    if treatment.status != Treatment.Status.RECORDED:
        message = f"This treatment was cancelled, so no report is needed. Questions? Write to {clinic.contact_email}."
        return _not_usable(request, link, message)
    earlier = self_report_for(link)
    bound = request.method == "POST"
    form = SelfReportForm(
        request.POST if bound else None, request.FILES if bound else None, initial=SelfReportForm.initial_from(earlier)
    )
    context = {
        "clinic": clinic, "patient": link.patient, "form": form, "earlier": earlier, "day": link.time_point_day,
        "treated_on": _treated_on(treatment), "redness": [(n, label, text) for n, (label, text) in PATIENT_REDNESS.items()],
    }
    sent = request.GET.get("sent")
    if not bound and sent in SENT_STATES and earlier is not None:
        # The thank-you page: read only, so a reload sends and changes nothing.
        return render(request, "patient/self_report_done.html", {**context, "report": earlier, "sent": sent})
    if bound and form.is_valid():
        before = self_report_answers(earlier) if earlier is not None else None
        photo = form.cleaned_data["photo"]
        try:
            report, created = record_self_report(link=link, answers=form.answers(), photo=photo)
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            return redirect(f"{request.path}?sent={_sent_state(report, created=created, before=before, photo=photo)}")
    return render(request, "patient/self_report.html", context, status=400 if bound else 200)


def _sent_state(report: OutcomeAssessment, *, created: bool, before: tuple[Any, ...] | None, photo: Any) -> str:
    if created:
        return "new"
    if self_report_answers(report) != before:
        return "corrected"
    return "photo" if photo is not None else "unchanged"
