"""Charts draw the clinic's own words as written: a "$" is a dollar sign, not mathematics."""

from __future__ import annotations

from patients.charts import mean_erythema_svg
from patients.review import DayMean


def _day(day: int, mean: float) -> DayMean:
    return DayMean(day=day, mean=mean, n=3)


def test_a_label_with_dollar_signs_is_drawn_as_written():
    svg = mean_erythema_svg(series={r"Peel $\foo$ serum": [_day(1, 2.0), _day(3, 1.0)], "$5 + $10 kit": [_day(1, 1.5)]},
                            title="Cost $ per $ day")

    assert r"Peel $\foo$ serum" in svg
    assert "$5 + $10 kit" in svg
    assert "Cost $ per $ day" in svg
