"""Step timing arithmetic and the step validator, one message per impossible timing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from protocols import versioning
from protocols.models import ProtocolStep
from protocols.steps import StepInput, day_number, occurrence_days, start_day, step_errors, validate_step
from tests.factories import ProductFactory


def local(day: int, hour: int, minute: int = 0, **extra) -> StepInput:
    return StepInput(kind=extra.pop("kind", "instruction"), timing="local_time", day=day,
                     local_time=dt.time(hour, minute), **extra)


def offset(value: int, unit: str = "minutes", **extra) -> StepInput:
    return StepInput(kind=extra.pop("kind", "instruction"), timing="offset", offset_value=value, offset_unit=unit,
                     **extra)


# --- arithmetic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (offset(0), 0.0),
        (offset(30), 30 / 1440),
        (offset(36, "hours"), 1.5),
        (offset(3, "days"), 3.0),
        (offset(-1, "days"), -1.0),
        (local(0, 19), 19 / 24),
        (local(3, 20, 30), 3 + (20 * 60 + 30) / 1440),
        (local(-1, 9), -1 + 9 / 24),
    ],
)
def test_it_places_every_timing_form_on_the_protocol_day_axis(step, expected):
    assert start_day(step) == pytest.approx(expected)


def test_it_repeats_a_nightly_step_for_seven_days():
    days = occurrence_days(local(1, 20, repeat_count=7, repeat_every_days=1))
    assert [day_number(day) for day in days] == [1, 2, 3, 4, 5, 6, 7]


def test_it_repeats_every_second_day():
    assert [day_number(d) for d in occurrence_days(local(3, 10, repeat_count=2, repeat_every_days=2))] == [3, 5]


def test_it_has_no_occurrence_for_an_incomplete_timing():
    assert occurrence_days(StepInput(kind="instruction", timing="offset")) == []
    assert occurrence_days(StepInput(kind="instruction", timing="local_time", local_time=dt.time(9))) == []


def test_it_counts_the_day_before_the_procedure_as_day_minus_one():
    assert day_number(start_day(local(-1, 23, 59))) == -1
    assert day_number(start_day(offset(-30))) == -1


@given(st.integers(min_value=-14, max_value=42), st.integers(0, 23), st.integers(0, 59))
def test_it_keeps_a_local_time_step_on_its_own_day(day, hour, minute):
    assert day_number(start_day(local(day, hour, minute))) == day


# --- one message per problem ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "field", "message"),
    [
        (StepInput(kind="instruction", timing="offset"), "offset_value", "needs an offset, e.g. 30 minutes"),
        (StepInput(kind="instruction", timing="local_time", local_time=dt.time(9)), "day", "needs a day"),
        (StepInput(kind="instruction", timing="local_time", day=2), "local_time", "needs a time of day (HH:MM)"),
        (offset(10, day=2), "day", "timed by offset has no day"),
        (offset(10, local_time=dt.time(9)), "local_time", "timed by offset has no local time"),
        (local(1, 9, offset_value=5), "offset_value", "has no offset; clear the offset"),
        (StepInput(kind="instruction", timing="sometimes"), "timing", "Unknown timing"),
        (local(1, 9, repeat_count=0), "repeat_count", "at least once"),
        (local(1, 20, repeat_count=7), "repeat_every_days", "needs 'repeat every' of at least 1 day"),
        (local(1, 20, repeat_count=7, repeat_every_days=0), "repeat_every_days", "at least 1 day"),
        (local(38, 20, repeat_count=7, repeat_every_days=1), "repeat_count",
         "The last repeat falls on day 44, after the protocol ends on day 42."),
        (local(43, 9), "day", "The step falls on day 43, after the protocol ends on day 42."),
        (offset(43, "days"), "offset_value", "falls on day 43"),
        (offset(-15, "days"), "offset_value", "at most 14 days before the procedure"),
        (local(1, 9, avoid_until_day=5), "avoid_until_day", "Only avoidance steps have an 'avoid until' day."),
        (local(0, 18, kind="avoidance"), "avoid_until_day", "An avoidance needs an end: say until which day"),
        (local(5, 9, kind="avoidance", avoid_until_day=3), "avoid_until_day",
         "cannot end on day 3, before it starts on day 5"),
        (local(0, 18, kind="avoidance", avoid_until_day=0), "avoid_until_day",
         "The avoidance starts on day 0, so it cannot also end then: avoid until day 1 or later."),
        (offset(2, "days", kind="avoidance", avoid_until_day=2), "avoid_until_day", "cannot also end then"),
        (local(0, 18, kind="avoidance", avoid_until_day=60), "avoid_until_day",
         "lasts until day 60, after the protocol ends on day 42; lengthen the protocol first"),
        (local(1, 9, has_product=True), "product", "Only application steps (in clinic or at home) name a product."),
        (local(1, 9, remind_minutes_before=-1), "remind_minutes_before", "negative number of minutes"),
        (local(1, 9, remind_minutes_before=7 * 1440 + 1), "remind_minutes_before", "at most 10080 minutes (7 days)"),
        (local(1, 9, remind_minutes_before=None), "remind_minutes_before", "Say how many minutes"),
    ],
)
def test_it_explains_each_impossible_step(step, field, message):
    errors = step_errors(step, length_days=42)
    assert message in " ".join(errors.get(field, [])), errors


@pytest.mark.parametrize(
    "step",
    [
        offset(0, kind="in_clinic_application", has_product=True),
        local(1, 20, kind="home_application", repeat_count=7, repeat_every_days=1, has_product=True),
        local(0, 18, kind="avoidance", avoid_until_day=5),
        local(0, 18, kind="avoidance", avoid_until_day=1),
        local(0, 18, kind="avoidance", avoid_until_day=42),
        local(42, 23, 59),
        local(-1, 9),
        local(36, 20, repeat_count=7, repeat_every_days=1),
        local(1, 9, repeat_count=1, repeat_every_days=None, remind_minutes_before=10080),
    ],
)
def test_it_accepts_possible_steps(step):
    assert step_errors(step, length_days=42) == {}


def test_it_raises_a_validation_error_keyed_by_field():
    with pytest.raises(ValidationError) as raised:
        validate_step(local(50, 9, avoid_until_day=3), length_days=42)
    assert set(raised.value.message_dict) == {"day", "avoid_until_day"}


# --- the model calls the same validator (the admin's path) -----------------------------------------


@pytest.mark.django_db
def test_it_validates_a_step_against_its_versions_length(clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="P", procedure="microneedling")
    draft.length_days = 14
    draft.save()
    step = ProtocolStep(version=draft, kind="instruction", title="Late", timing="local_time", day=20,
                        local_time=dt.time(9))
    with pytest.raises(ValidationError) as raised:
        step.full_clean()
    assert "after the protocol ends on day 14" in str(raised.value.message_dict["day"])


@pytest.mark.django_db
def test_it_refuses_another_clinics_product_on_a_step(clinic_a, clinic_b):
    draft = versioning.create_protocol(clinic=clinic_a, name="P", procedure="microneedling")
    step = ProtocolStep(version=draft, kind="home_application", title="Serum", timing="local_time", day=1,
                        local_time=dt.time(20), product=ProductFactory(clinic=clinic_b))
    with pytest.raises(ValidationError) as raised:
        step.full_clean()
    assert raised.value.message_dict["product"] == ["This product belongs to another clinic."]


@pytest.mark.django_db
def test_it_refuses_an_impossible_local_time_in_the_model_field(clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="P", procedure="microneedling")
    step = ProtocolStep(version=draft, kind="instruction", title="Late", timing="local_time", day=1,
                        local_time="24:30")
    with pytest.raises(ValidationError) as raised:
        step.full_clean()
    assert "local_time" in raised.value.message_dict


@pytest.mark.django_db
def test_the_model_refuses_an_avoidance_without_its_end(clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="P", procedure="microneedling")
    step = ProtocolStep(version=draft, kind="avoidance", title="No retinoids", timing="local_time", day=0,
                        local_time=dt.time(18))
    with pytest.raises(ValidationError) as raised:
        step.full_clean()
    assert "An avoidance needs an end" in raised.value.message_dict["avoid_until_day"][0]
    step.avoid_until_day = 5
    step.full_clean()
