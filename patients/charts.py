"""Healing charts, drawn server-side with matplotlib (Agg) and returned as SVG text.

No pyplot: each chart builds its own ``Figure``, so concurrent requests in
threaded servers never share global figure state.  Text stays text in the
SVG (``svg.fonttype: none``) and ids are salted with a constant, so the same
data gives the same bytes.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
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
    import matplotlib.ticker

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


def _score_axis(axes: Axes, *, title: str, ticks: list[str]) -> None:
    axes.set_title(title, loc="left")
    axes.set_ylim(-0.2, 4.2)
    axes.set_yticks(range(5), ticks)
    axes.set_xlabel("Days after the procedure")
    axes.xaxis.set_major_locator(_matplotlib().ticker.MaxNLocator(integer=True))
    axes.grid(True, color="#dde3e6", linewidth=0.6)


def _empty(axes: Axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color="#5b6b75")


def treatment_healing_svg(*, treatment: Treatment) -> str:
    """Erythema and oedema over days for one treatment: one line per arm, patient-reported redness dashed."""
    assessments = (
        OutcomeAssessment.objects.filter(treatment=treatment)
        .exclude(phase=OutcomeAssessment.Phase.BEFORE)
        .select_related("arm")
        .order_by("time_point_day")
    )
    erythema: dict[str, list[tuple[int, int]]] = defaultdict(list)
    oedema: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for entry in assessments:
        side = entry.arm.label if entry.arm else "whole area"
        if entry.source == OutcomeAssessment.Source.PATIENT:
            if entry.erythema is not None:
                erythema["patient-reported redness"].append((entry.time_point_day, entry.erythema))
            continue
        if entry.erythema is not None:
            erythema[side].append((entry.time_point_day, entry.erythema))
        if entry.oedema is not None:
            oedema[side].append((entry.time_point_day, entry.oedema))
    with _matplotlib().rc_context(_RC):
        figure = _new_figure(figsize=(9, 3.6), layout="constrained")
        left, right = figure.subplots(1, 2)
        _score_axis(left, title="Erythema (CEA)", ticks=ERYTHEMA_TICKS)
        _score_axis(right, title="Oedema", ticks=OEDEMA_TICKS)
        _plot_lines(left, erythema, dashed={"patient-reported redness"})
        _plot_lines(right, oedema, dashed=set())
        return _to_svg(figure)


def _plot_lines(axes: Axes, series: Mapping[str, list[tuple[int, float]]], *, dashed: set[str]) -> None:
    if not series:
        _empty(axes, "No scores recorded yet")
        return
    for label, points in sorted(series.items(), key=lambda item: (item[0] in dashed, item[0])):
        days, values = zip(*points, strict=True)
        axes.plot(days, values, marker="o", linestyle="--" if label in dashed else "-", label=label)
    _legend_below(axes)


def _legend_below(axes: Axes) -> None:
    # Below the plot, so it never hides the first days, where the scores are highest.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)


def mean_erythema_svg(*, series: Mapping[str, Iterable[DayMean]], title: str = "Mean erythema by day") -> str:
    """Mean clinician erythema by day, one line per series (protocol, version or arm)."""
    with _matplotlib().rc_context(_RC):
        figure = _new_figure(figsize=(7, 3.8), layout="constrained")
        axes = figure.subplots()
        _score_axis(axes, title=title, ticks=ERYTHEMA_TICKS)
        drawn = False
        for label, points in series.items():
            points = list(points)
            if not points:
                continue
            drawn = True
            axes.plot([p.day for p in points], [p.mean for p in points], marker="o", label=label)
        if drawn:
            _legend_below(axes)
        else:
            _empty(axes, "No clinician erythema scores match these filters")
        return _to_svg(figure)
