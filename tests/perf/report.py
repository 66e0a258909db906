"""What a benchmark hands back, and how it is printed.

Every benchmark returns a ``Result``: its figures as printed lines, the ratio
against the baseline it measured in the same run with the target the issue
sets, and checks. A check is a fact the run must establish for its figures to
mean anything (every message arrived once, the query count did not grow); a
failed check fails the run, a missed target is reported.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    what: str
    passed: bool


@dataclass
class Result:
    name: str
    title: str
    lines: list[str] = field(default_factory=list)
    ratio: float | None = None
    target: float | None = None
    checks: list[Check] = field(default_factory=list)
    #: targets besides the ratio (e.g. peak memory): reported, not failed on
    goals: list[Check] = field(default_factory=list)
    #: rows for the README table: (what, figure, baseline, ratio)
    table: list[tuple[str, str, str, str]] = field(default_factory=list)

    def line(self, label: str, text: str) -> None:
        self.lines.append(f"  {label:<18}: {text}")

    def check(self, what: str, passed: bool) -> bool:
        self.checks.append(Check(what, passed))
        return passed

    def goal(self, what: str, met: bool) -> bool:
        self.goals.append(Check(what, met))
        return met

    @property
    def target_met(self) -> bool | None:
        """The ratio's target and every other goal; None when there is none."""
        verdicts = [check.passed for check in self.goals]
        if self.ratio is not None and self.target is not None:
            verdicts.append(self.ratio >= self.target)
        return all(verdicts) if verdicts else None

    @property
    def checks_passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def render(self) -> str:
        out = [f"== {self.title} ==", *self.lines]
        if self.ratio is not None:
            met = self.target is not None and self.ratio >= self.target
            verdict = "" if self.target is None else f" (target >= {self.target:g}: {'met' if met else 'MISSED'})"
            out.append(f"  {'ratio':<18}: {self.ratio:.2f}{verdict}")
        for goal in self.goals:
            out.append(f"  {'target':<18}: {'met   ' if goal.passed else 'MISSED'} {goal.what}")
        for check in self.checks:
            out.append(f"  {'check':<18}: {'ok  ' if check.passed else 'FAIL'} {check.what}")
        return "\n".join(out)


# --- numbers --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0–1) by linear interpolation; the same as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def number(value: float) -> str:
    """Thousands separated, with a sensible number of digits."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def render_summary(results: list[Result], *, header: list[str]) -> str:
    """The README "Performance" table (Markdown), preceded by what ran where."""
    rows = ["| benchmark | Aftercare | baseline (same run) | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for result in results:
        for index, (what, figure, baseline, ratio) in enumerate(result.table):
            target = ""
            if index == 0 and result.target is not None:
                met = result.ratio is not None and result.ratio >= result.target
                target = f"≥ {result.target:g} ({'met' if met else 'missed'})"
            rows.append(f"| {what} | {figure} | {baseline} | {ratio} | {target} |")
    return "\n".join([*header, "", *rows])
