"""A protocol version's timeline as a server-side SVG: day 0 → protocol end, steps as marks, avoidance as bars.

Hand-built SVG rather than a plotting library: the picture is a handful of
rectangles and circles, the text stays real text (searchable, accessible,
testable) and the output is the same on every machine.  No script, no
external reference: it is served as an image to the clinic's staff only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape

from protocols.models import ProtocolStep, ProtocolVersion, StepKind
from protocols.steps import day_number, occurrence_days, start_day

WIDTH = 960
LABEL_WIDTH = 250
RIGHT_MARGIN = 24
TOP = 48
ROW_HEIGHT = 28
LEGEND_HEIGHT = 44
MAX_LABEL_CHARS = 36

_Scale = Callable[[float], float]  # protocol day → x coordinate

KIND_COLOURS: dict[str, str] = {
    StepKind.IN_CLINIC_APPLICATION: "#1b6ca8",
    StepKind.HOME_APPLICATION: "#3a9bd9",
    StepKind.INSTRUCTION: "#6b7280",
    StepKind.AVOIDANCE: "#d97706",
    StepKind.FOLLOW_UP_VISIT: "#15803d",
    StepKind.OUTCOME_CHECK: "#9333ea",
}


@dataclass(frozen=True)
class TimelineRow:
    """One step on the chart: where its marks go (fractional protocol days) and its bar, if any."""

    step_id: int | None
    kind: str
    title: str
    when: str
    days: list[float]
    bar: tuple[float, float] | None


def timeline_rows(steps: Iterable[ProtocolStep]) -> list[TimelineRow]:
    """The chart's rows, earliest step first (ties keep the protocol's own order)."""
    rows = []
    for step in steps:
        timing = step.as_input()
        days = occurrence_days(timing)
        if not days:
            continue  # an incomplete draft step has no place on the chart yet
        bar = None
        if step.kind == StepKind.AVOIDANCE and step.avoid_until_day is not None:
            bar = (days[0], float(step.avoid_until_day))
        rows.append(TimelineRow(step.pk, step.kind, step.title, describe_timing(step), days, bar))
    return sorted(rows, key=lambda row: row.days[0])


def describe_timing(step: ProtocolStep) -> str:
    """The step's timing in words, e.g. "day 1 at 20:00, daily ×7" or "+30 minutes"."""
    timing = step.as_input()
    if step.timing == ProtocolStep.Timing.OFFSET:
        sign = "+" if (step.offset_value or 0) >= 0 else "−"
        text = f"{sign}{abs(step.offset_value or 0)} {step.get_offset_unit_display()}"
    else:
        text = f"day {step.day} at {step.local_time:%H:%M}" if step.local_time else f"day {step.day}"
    if step.repeat_count > 1:
        every = "daily" if step.repeat_every_days == 1 else f"every {step.repeat_every_days} days"
        text += f", {every} ×{step.repeat_count}"
    if step.avoid_until_day is not None and start_day(timing) is not None:
        text += f", until day {step.avoid_until_day}"
    return text


def render_timeline_svg(*, version: ProtocolVersion) -> str:
    """The SVG document for ``version``."""
    steps = version.steps.select_related("product").order_by("order", "id")
    return render_rows_svg(
        rows=timeline_rows(steps), length_days=version.length_days, title=f"{version.protocol.name} v{version.number}"
    )


def render_rows_svg(*, rows: list[TimelineRow], length_days: int, title: str) -> str:
    first_day = min([0, *(day_number(row.days[0]) for row in rows)])
    last_day = max(length_days, 1)
    plot_width = WIDTH - LABEL_WIDTH - RIGHT_MARGIN
    height = TOP + ROW_HEIGHT * max(len(rows), 1) + LEGEND_HEIGHT

    def x(day: float) -> float:
        return round(LABEL_WIDTH + (day - first_day) / (last_day - first_day) * plot_width, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="timeline-title" '
        'font-family="system-ui, sans-serif" font-size="12">',
        f'<title id="timeline-title">Timeline of {escape(title)}: day {first_day} to day {last_day}</title>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    parts += _axis(x, first_day=first_day, last_day=last_day, bottom=TOP + ROW_HEIGHT * max(len(rows), 1))
    for index, row in enumerate(rows):
        parts += _row(x, row, y=TOP + index * ROW_HEIGHT + ROW_HEIGHT / 2, last_day=last_day)
    if not rows:
        parts.append(f'<text x="{LABEL_WIDTH}" y="{TOP + 18}" fill="#6b7280">No steps yet.</text>')
    parts += _legend(y=height - LEGEND_HEIGHT / 2)
    parts.append("</svg>")
    return "\n".join(parts)


def _axis(x: _Scale, *, first_day: int, last_day: int, bottom: float) -> list[str]:
    ticks = sorted({first_day, 0, *range(0, last_day + 1, 7), last_day})
    parts = ['<g class="axis" stroke="#d1d5db">']
    for day in ticks:
        strong = day == 0
        parts.append(
            f'<line x1="{x(day)}" y1="{TOP - 8}" x2="{x(day)}" y2="{bottom}" '
            f'stroke="{"#111827" if strong else "#e5e7eb"}" stroke-width="{2 if strong else 1}"/>'
        )
    parts.append("</g>")
    for day in ticks:
        label = "day 0" if day == 0 else (f"−{abs(day)}" if day < 0 else str(day))
        parts.append(f'<text class="tick" x="{x(day)}" y="{TOP - 14}" text-anchor="middle" fill="#374151">{label}</text>')
    parts.append(f'<text x="8" y="{TOP - 14}" fill="#374151" font-weight="bold">Step</text>')
    return parts


def _row(x: _Scale, row: TimelineRow, *, y: float, last_day: int) -> list[str]:
    colour = KIND_COLOURS.get(row.kind, "#6b7280")
    label = row.title if len(row.title) <= MAX_LABEL_CHARS else row.title[: MAX_LABEL_CHARS - 1] + "…"
    data = f'data-kind="{escape(row.kind)}"' + (f' data-step-id="{row.step_id}"' if row.step_id else "")
    parts = [f'<g class="step" {data}>', f"<title>{escape(row.title)} — {escape(row.when)}</title>"]
    parts.append(f'<text x="8" y="{y + 4}" fill="#111827">{escape(label)}</text>')
    if row.bar is not None:
        start, end = row.bar
        parts.append(
            f'<rect class="avoid" x="{x(start)}" y="{y - 6}" width="{max(x(min(end, last_day)) - x(start), 2)}" '
            f'height="12" rx="3" fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>'
        )
    for day in row.days:
        parts.append(_mark(row.kind, cx=x(day), cy=y, colour=colour))
    parts.append("</g>")
    return parts


def _mark(kind: str, *, cx: float, cy: float, colour: str) -> str:
    if kind == StepKind.FOLLOW_UP_VISIT:
        points = f"{cx},{cy - 7} {cx + 7},{cy} {cx},{cy + 7} {cx - 7},{cy}"
        return f'<polygon class="mark" points="{points}" fill="{colour}"/>'
    if kind == StepKind.OUTCOME_CHECK:
        return f'<rect class="mark" x="{cx - 5}" y="{cy - 5}" width="10" height="10" fill="{colour}"/>'
    return f'<circle class="mark" cx="{cx}" cy="{cy}" r="5" fill="{colour}"/>'


def _legend(*, y: float) -> list[str]:
    parts = ['<g class="legend">']
    x = 8.0
    for kind in StepKind:
        colour = KIND_COLOURS[kind]
        if kind == StepKind.AVOIDANCE:
            parts.append(f'<rect x="{x}" y="{y - 5}" width="18" height="10" rx="3" fill="{colour}" fill-opacity="0.35" '
                         f'stroke="{colour}"/>')
        else:
            parts.append(_mark(kind, cx=x + 9, cy=y, colour=colour))
        parts.append(f'<text x="{x + 24}" y="{y + 4}" fill="#374151">{escape(str(kind.label))}</text>')
        x += 28 + 7 * len(str(kind.label))
    parts.append("</g>")
    return parts
