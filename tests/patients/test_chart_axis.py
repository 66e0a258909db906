"""Healing charts: a day axis of whole days, wide enough around a lone point, and a legend for the dashed line."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from patients.charts import (
    MAX_DAY_TICKS,
    PATIENT_REDNESS,
    day_axis,
    mean_erythema_figure,
    mean_erythema_svg,
    treatment_healing_figure,
    treatment_healing_svg,
)
from patients.models import OutcomeAssessment
from patients.review import DayMean
from tests.factories import TreatmentFactory

SVG = "{http://www.w3.org/2000/svg}"


def _day_tick_labels(svg: str) -> list[str]:
    """The labels under the day axis (or axes) of an SVG chart, as drawn."""
    root = ET.fromstring(svg.encode())  # noqa: S314 - our own output
    return [
        text.text for group in root.iter(f"{SVG}g") if group.get("id", "").startswith("xtick_")
        for text in group.iter(f"{SVG}text")
    ]


def test_a_lone_point_gets_a_day_either_side():
    axis = day_axis([3])
    assert (axis.first, axis.last, axis.ticks) == (2, 4, (2, 3, 4))


def test_a_lone_point_on_the_day_of_the_procedure_does_not_reach_before_it():
    axis = day_axis([0])
    assert (axis.first, axis.last, axis.ticks) == (0, 2, (0, 1, 2))


def test_two_neighbouring_days_are_widened_too():
    assert day_axis([3, 4]).ticks == (2, 3, 4, 5)


def test_a_short_course_gets_a_tick_a_day():
    axis = day_axis([1, 3, 7, 14])
    assert (axis.first, axis.last) == (1, 14)
    assert axis.ticks == tuple(range(1, 15))


@pytest.mark.parametrize("days", [[0, 1, 3, 7, 14, 30, 90], [0, 365], [0, 2000]])
def test_a_long_course_gets_whole_day_ticks_at_a_readable_spacing(days):
    axis = day_axis(days)
    assert (axis.first, axis.last) == (min(days), max(days))
    assert len(axis.ticks) <= MAX_DAY_TICKS
    assert all(isinstance(day, int) for day in axis.ticks)
    assert axis.first <= axis.ticks[0] and axis.ticks[-1] <= axis.last
    assert len({b - a for a, b in zip(axis.ticks, axis.ticks[1:], strict=False)}) == 1


def test_no_points_still_give_a_whole_day_axis():
    assert day_axis([]).ticks == (0, 1, 2)


@pytest.fixture
def one_day_of_scores(db):
    treatment = TreatmentFactory()
    OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, erythema=2, oedema=1)
    OutcomeAssessment.objects.create(treatment=treatment, time_point_day=3, source="patient", erythema=3)
    return treatment


def test_the_treatment_chart_of_a_single_day_shows_whole_days_around_it(one_day_of_scores):
    figure = treatment_healing_figure(treatment=one_day_of_scores)
    for axes in figure.axes:
        assert list(axes.get_xticks()) == [2, 3, 4]
        assert axes.get_xlim() == (1.5, 4.5)
    assert _day_tick_labels(treatment_healing_svg(treatment=one_day_of_scores)) == ["2", "3", "4"] * 2


def test_the_treatment_chart_legend_says_which_line_is_dashed(one_day_of_scores):
    erythema = treatment_healing_figure(treatment=one_day_of_scores).axes[0]
    legend = erythema.get_legend()
    entries = {text.get_text(): handle.get_linestyle() for text, handle in zip(legend.get_texts(), legend.legend_handles,
                                                                               strict=True)}
    assert entries == {"whole area": "-", PATIENT_REDNESS: "--"}
    assert "dashed line" in PATIENT_REDNESS
    assert PATIENT_REDNESS in treatment_healing_svg(treatment=one_day_of_scores)


def test_the_mean_chart_of_a_single_day_shows_whole_days_around_it():
    series = {"Microneedling + exosome": [DayMean(day=3, mean=2.5, n=4)]}
    axes = mean_erythema_figure(series=series).axes[0]
    assert list(axes.get_xticks()) == [2, 3, 4]
    assert _day_tick_labels(mean_erythema_svg(series=series)) == ["2", "3", "4"]


def test_the_mean_chart_days_are_whole_over_a_course():
    series = {"a": [DayMean(day=1, mean=3.0, n=2), DayMean(day=7, mean=1.0, n=2)], "b": []}
    assert _day_tick_labels(mean_erythema_svg(series=series)) == [str(day) for day in range(1, 8)]
