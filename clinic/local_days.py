"""A clinic's calendar days as ranges of instants, for filters on stored (UTC) times.

A date a person picks means a day of the clinic's own calendar: a treatment
done at 09:30 on 5 May in Sydney ended at 23:30 UTC on 4 May, so filtering on
the UTC date (``ended_at__date``) files it under the wrong day.  These helpers
turn days into half-open ranges of instants instead.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from zoneinfo import ZoneInfo

from django.db.models import Q, QuerySet

from clinic.models import Clinic


def day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The instant ``day`` begins in ``zone``."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone)


def day_bounds(
    *, first_day: dt.date | None, last_day: dt.date | None, zone: ZoneInfo
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """From the start of ``first_day`` to the start of the day after ``last_day`` (excluded); None leaves a side open.

    A day at the very edge of the calendar (9999-12-31 typed for "no end") leaves its side open:
    its bound would not fit a datetime once moved to UTC.
    """
    start = day_start(first_day, zone) if first_day and first_day > _EARLIEST else None
    end = day_start(last_day + dt.timedelta(days=1), zone) if last_day and last_day < _LATEST else None
    return start, end


#: Days whose bounds, on any clock, stay inside what a datetime holds.
_EARLIEST = dt.date.min + dt.timedelta(days=1)
_LATEST = dt.date.max - dt.timedelta(days=1)


def within_days(field: str, *, first_day: dt.date | None, last_day: dt.date | None, zone: ZoneInfo) -> Q:
    """``field``, a stored instant, falls on ``first_day`` … ``last_day`` of ``zone``'s calendar."""
    start, end = day_bounds(first_day=first_day, last_day=last_day, zone=zone)
    condition = Q()
    if start:
        condition &= Q(**{f"{field}__gte": start})
    if end:
        condition &= Q(**{f"{field}__lt": end})
    return condition


def within_clinic_days(
    field: str, *, clinic_field: str, clinics: QuerySet[Clinic], first_day: dt.date | None, last_day: dt.date | None
) -> Q:
    """``field`` falls on ``first_day`` … ``last_day`` of the calendar of the row's own clinic, one of ``clinics``.

    One query reads the clinics' time zones; the condition has one branch per
    zone, so a person who works in Sydney and London sees each clinic's days.
    """
    return within_each_clinics_days(
        field, clinic_field=clinic_field, clinics=clinics, days=lambda _zone: (first_day, last_day)
    )


def within_clinic_days_from_today(
    field: str, *, clinic_field: str, clinics: QuerySet[Clinic], now: dt.datetime,
    days: Callable[[dt.date], tuple[dt.date | None, dt.date | None]],
) -> Q:
    """``field`` falls on the days ``days`` picks from today (e.g. today … today + 1) of the row's own clinic.

    "Today" is the clinic's: at 23:30 UTC it is already tomorrow in Sydney.
    """
    return within_each_clinics_days(
        field, clinic_field=clinic_field, clinics=clinics, days=lambda zone: days(now.astimezone(zone).date())
    )


def within_each_clinics_days(
    field: str, *, clinic_field: str, clinics: QuerySet[Clinic],
    days: Callable[[ZoneInfo], tuple[dt.date | None, dt.date | None]],
) -> Q:
    """``field`` falls on the first … last day that ``days`` gives for the time zone of the row's own clinic.

    One query reads the clinics' time zones; the condition has one branch per zone.
    """

    def on_its_days(zone: ZoneInfo) -> Q:
        first_day, last_day = days(zone)
        return within_days(field, first_day=first_day, last_day=last_day, zone=zone)

    return in_each_clinics_zone(on_its_days, clinic_field=clinic_field, clinics=clinics)


def in_each_clinics_zone(condition: Callable[[ZoneInfo], Q], *, clinic_field: str, clinics: QuerySet[Clinic]) -> Q:
    """``condition`` of each clinic's time zone, for the rows of that clinic, one of ``clinics``.

    One query reads the clinics' time zones; the condition has one branch per zone.
    """
    clinic_ids_by_zone: dict[str, list[int]] = defaultdict(list)
    for clinic_id, zone_name in clinics.order_by().values_list("pk", "time_zone"):
        clinic_ids_by_zone[zone_name].append(clinic_id)
    matches = Q(pk__in=[])  # no clinic: no row
    for zone_name, ids in clinic_ids_by_zone.items():
        matches |= Q(**{f"{clinic_field}__in": ids}) & condition(ZoneInfo(zone_name))
    return matches
