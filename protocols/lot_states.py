"""A lot's state today (usable, not received yet, expired, recalled), on its clinic's calendar.

"Today" is the clinic's, as for an application (``ProductLot.unusable_reason``):
at 23:30 UTC it is already tomorrow in Sydney, so a lot received "tomorrow" on
the server's date is usable there, and one whose expiry day is the server's
today has expired there. The API, the lot list and the product's page read it here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

from django.db.models import Q, QuerySet
from django.utils import timezone

from clinic.local_days import in_each_clinics_zone
from clinic.models import Clinic
from protocols.models import ProductLot

USABLE, NOT_RECEIVED, EXPIRED, RECALLED = "usable", "not_received", "expired", "recalled"
LABELS = {USABLE: "Usable", NOT_RECEIVED: "Not received yet", EXPIRED: "Expired", RECALLED: "Recalled"}


def clinic_today(lot: ProductLot, *, now: dt.datetime | None = None) -> dt.date:
    """The date it is now in the lot's clinic."""
    return (now or timezone.now()).astimezone(ZoneInfo(lot.clinic.time_zone)).date()


def state_today(lot: ProductLot, *, now: dt.datetime | None = None) -> str:
    """``recalled``, ``not_received``, ``expired`` or ``usable``: the first that holds, today at the lot's clinic."""
    today = clinic_today(lot, now=now)
    if lot.recalled:
        return RECALLED
    if lot.received_date > today:
        return NOT_RECEIVED
    return EXPIRED if lot.expiry_date < today else USABLE


def on_each_clinics_today(
    condition: Callable[[dt.date], Q], *, clinics: QuerySet[Clinic], now: dt.datetime | None = None
) -> Q:
    """``condition`` of the clinic's today, for the lots of each of ``clinics``: one branch per time zone."""
    now = now or timezone.now()
    return in_each_clinics_zone(lambda zone: condition(now.astimezone(zone).date()), clinic_field="clinic_id",
                                clinics=clinics)


def usable(today: dt.date) -> Q:
    return Q(recalled=False, received_date__lte=today, expiry_date__gte=today)


def not_received(today: dt.date) -> Q:
    return Q(received_date__gt=today)


def expired(today: dt.date) -> Q:
    return Q(expiry_date__lt=today)
