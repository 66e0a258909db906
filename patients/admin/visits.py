"""Follow-up visits in the reminder outbox: filters by step kind and by the clinic's day, and the "Move visit" form.

The front desk asks "who comes in today?": the reminder list filtered to
follow-up visits happening today on the clinic's clock (a visit happens at the
clinic, whatever the patient's own zone). ``patients.treatments.move_visit``
moves one; this module only collects the new time, typed on the clinic's clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from clinic.local_days import within_clinic_days_from_today
from clinic.scoping import clinics_for
from patients import treatments
from protocols.models import StepKind

DayRange = Callable[[dt.date], tuple[dt.date, dt.date]]

#: The days each choice picks, counted from the clinic's today (first and last day, both included).
STEP_DAYS: dict[str, tuple[str, DayRange]] = {
    "today": ("Today", lambda today: (today, today)),
    "tomorrow": ("Tomorrow", lambda today: (today + dt.timedelta(days=1),) * 2),
    "this_week": ("This week (Monday to Sunday)", lambda today: (
        today - dt.timedelta(days=today.weekday()), today + dt.timedelta(days=6 - today.weekday())
    )),
    "past_7_days": ("Past 7 days (with today)", lambda today: (today - dt.timedelta(days=6), today)),
}


class StepKindFilter(admin.SimpleListFilter):
    """By the kind of the reminder's step: follow-up visits, outcome checks, …"""

    title = "step kind"
    parameter_name = "step_kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(StepKind.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset if value is None else queryset.filter(step__kind=value)


class StepDayFilter(admin.SimpleListFilter):
    """By the day the step happens (``occurs_at``: a visit's time), on the calendar of the row's own clinic."""

    title = "step happens (clinic's day)"
    parameter_name = "occurs"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, (label, _days) in STEP_DAYS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if value not in STEP_DAYS:
            return queryset.none()
        return queryset.filter(within_clinic_days_from_today(
            "occurs_at", clinic_field="treatment__clinic_id", clinics=clinics_for(request.user), now=timezone.now(),
            days=STEP_DAYS[value][1],
        ))


class MoveVisitForm(forms.Form):
    # Typed on the clinic's clock: the admin view renders and reads it under the clinic's zone.
    occurs_at = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        label="New date and time",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), max_length=treatments.MOVE_REASON_MAX_LENGTH,
        help_text=(f"Why, in a few words (at least {treatments.MOVE_REASON_MIN_LENGTH} characters), e.g. “patient "
                   "rebooked by phone”. Kept with the reminder; the old time is kept too."),
    )
    # Offered only once the page asks for it (the view drops it otherwise): a box ticked in advance confirms nothing.
    confirm_time = forms.BooleanField(
        required=False, label="Move it to this time all the same",
        help_text="Tick only after reading why the time above is doubtful.",
    )
    # The time the page asked about: a box ticked for it confirms nothing about another time typed since.
    confirmed_for = forms.CharField(widget=forms.HiddenInput, required=False)
