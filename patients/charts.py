"""Healing charts, drawn server-side with matplotlib (Agg) and returned as SVG text.

No pyplot: each chart builds its own ``Figure``, so concurrent requests in
threaded servers never share global figure state.  Text stays text in the
SVG (``svg.fonttype: none``) and ids are salted with a constant, so the same
data gives the same bytes.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

from patients.models import OutcomeAssessment, Treatment
from patients.review import DayMean

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@cache
def _matplotlib() -> ModuleType:
    """matplotlib with the Agg backend, imported by the first chart drawn.

    Importing it costs every web and worker process about 40 MB and a
    third of a second, and most of them never draw a chart.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure

    return matplotlib


def _new_figure(**kwargs: object) -> Figure:
    return _matplotlib().figure.Figure(**kwargs)

ERYTHEMA_TICKS = ["0 clear", "1 almost clear", "2 mild", "3 moderate", "4 severe"]
OEDEMA_TICKS = ["0 none", "1 slight", "2 mild", "3 moderate", "4 severe"]
# text.parse_math off: names and labels are the clinic's text, and "$…$" in them is not mathematics
# (matplotlib would typeset it, or fail on it and take the page down).
_RC = {"svg.fonttype": "none", "svg.hashsalt": "aftercare", "font.size": 9, "text.parse_math": False}


def _to_svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with _matplotlib().rc_context(_RC):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


# The patient's own redness ratings: one dashed line, and its legend entry says so.
PATIENT_REDNESS = "patient-reported redness (dashed line)"
# (day, score) points, one list per line of a chart, named by its legend entry
Series = dict[str, list[tuple[int, int]]]
# Gaps between day ticks, tried smallest first: daily for a week or two, then every other day, weekly, …
DAY_TICK_STEPS = (1, 2, 7, 14, 28)
MAX_DAY_TICKS = 15


@dataclass(frozen=True)
class DayAxis:
    """A chart's day axis: the first and last day shown, and the days that get a tick (whole days only)."""

    first: int
    last: int
    ticks: tuple[int, ...]


def day_axis(days: Iterable[int]) -> DayAxis:
    """The day axis for points on ``days``: at least two days wide, so a lone point sits between whole days.

    Left to itself, matplotlib narrows the axis around a single point to a
    fraction of a day and labels it "2.84 … 3.16".  The axis never starts
    before day 0 unless a point does.
    """
    plotted = sorted(set(days)) or [0]
    first, last = plotted[0], plotted[-1]
    if last - first < 2:
        first, last = first - 1, last + 1
        if first < 0 <= plotted[0]:
            first, last = 0, last - first
    step = next((s for s in DAY_TICK_STEPS if (last - first) // s + 1 <= MAX_DAY_TICKS), DAY_TICK_STEPS[-1])
    while (last - first) // step + 1 > MAX_DAY_TICKS:
        step *= 2
    start = math.ceil(first / step) * step
    return DayAxis(first=first, last=last, ticks=tuple(range(start, last + 1, step)))


def _score_axis(axes: Axes, *, title: str, ticks: list[str]) -> None:
    axes.set_title(title, loc="left")
    axes.set_ylim(-0.2, 4.2)
    axes.set_yticks(range(5), ticks)
    axes.set_xlabel("Days after the procedure")
    axes.grid(True, color="#dde3e6", linewidth=0.6)


def _set_day_axis(axes: Axes, axis: DayAxis) -> None:
    # Half a day of room either side, so a point on the first or last day is not drawn on the frame.
    axes.set_xlim(axis.first - 0.5, axis.last + 0.5)
    axes.set_xticks(axis.ticks, [str(day) for day in axis.ticks])


def _empty(axes: Axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="#5b6b75")


def treatment_healing_svg(*, treatment: Treatment) -> str:
    """Erythema and oedema over days for one treatment: one line per arm, patient-reported redness dashed."""
    return _to_svg(treatment_healing_figure(treatment=treatment))


def treatment_healing_figure(*, treatment: Treatment) -> Figure:
    """The figure behind ``treatment_healing_svg``: erythema left, oedema right, on one day axis."""
    erythema, oedema = _healing_series(treatment)
    with _matplotlib().rc_context(_RC):
        figure = _new_figure(figsize=(9, 3.6), layout="constrained")
        left, right = figure.subplots(1, 2)
        _score_axis(left, title="Erythema (CEA)", ticks=ERYTHEMA_TICKS)
        _score_axis(right, title="Oedema", ticks=OEDEMA_TICKS)
        _plot_lines(left, erythema, dashed={PATIENT_REDNESS})
        _plot_lines(right, oedema, dashed=set())
        # One axis for both, so a day sits at the same place in each.
        axis = day_axis(day for series in (erythema, oedema) for points in series.values() for day, _ in points)
        _set_day_axis(left, axis)
        _set_day_axis(right, axis)
        return figure


def _healing_series(treatment: Treatment) -> tuple[Series, Series]:
    """(erythema, oedema) as (day, score) points per line: each arm's clinician scores, and the patient's redness."""
    assessments = (
        OutcomeAssessment.objects.filter(treatment=treatment)
        .exclude(phase=OutcomeAssessment.Phase.BEFORE)
        .select_related("arm")
        .order_by("time_point_day")
    )
    erythema: Series = defaultdict(list)
    oedema: Series = defaultdict(list)
    for entry in assessments:
        side = entry.arm.label if entry.arm else "whole area"
        if entry.source == OutcomeAssessment.Source.PATIENT:
            if entry.erythema is not None:
                erythema[PATIENT_REDNESS].append((entry.time_point_day, entry.erythema))
            continue
        if entry.erythema is not None:
            erythema[side].append((entry.time_point_day, entry.erythema))
        if entry.oedema is not None:
            oedema[side].append((entry.time_point_day, entry.oedema))
    return erythema, oedema


def _plot_lines(axes: Axes, series: Mapping[str, list[tuple[int, float]]], *, dashed: set[str]) -> None:
    if not series:
        _empty(axes, "No scores recorded yet")
        return
    for label, points in sorted(series.items(), key=lambda item: (item[0] in dashed, item[0])):
        days, values = zip(*points, strict=True)
        axes.plot(days, values, marker="o", linestyle="--" if label in dashed else "-", label=label)
    _legend_below(axes)


def _legend_below(axes: Axes) -> None:
    # Below the plot, so it never hides the first days, where the scores are highest; each
    # sample line long enough to show its dashes beside the marker.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False, handlelength=3.5)


def mean_erythema_svg(*, series: Mapping[str, Iterable[DayMean]], title: str = "Mean erythema by day") -> str:
    """Mean clinician erythema by day, one line per series (protocol, version or arm)."""
    return _to_svg(mean_erythema_figure(series=series, title=title))


def mean_erythema_figure(*, series: Mapping[str, Iterable[DayMean]], title: str = "Mean erythema by day") -> Figure:
    """The figure behind ``mean_erythema_svg``."""
    drawn = {label: list(points) for label, points in series.items()}
    drawn = {label: points for label, points in drawn.items() if points}
    with _matplotlib().rc_context(_RC):
        figure = _new_figure(figsize=(7, 3.8), layout="constrained")
        axes = figure.subplots()
        _score_axis(axes, title=title, ticks=ERYTHEMA_TICKS)
        for label, points in drawn.items():
            axes.plot([p.day for p in points], [p.mean for p in points], marker="o", label=label)
        if drawn:
            _legend_below(axes)
        else:
            _empty(axes, "No clinician erythema scores match these filters")
        _set_day_axis(axes, day_axis(p.day for points in drawn.values() for p in points))
        return figure
