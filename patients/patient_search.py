"""Finding a patient by what the front desk has at hand: a name and a date of birth.

A date in a search is read the way the clinics write it: ISO (1988-04-02) or
day/month/year (02/04/1988, 2.4.1988, 02-04-1988), never month/day/year, so
02/04/1988 is 2 April 1988. A two-digit year is not a date here: its century
is a guess.
"""

from __future__ import annotations

import datetime as dt
import re

from django.utils.text import smart_split

ISO_DATE = re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})")
DAY_MONTH_YEAR = re.compile(r"(?P<day>\d{1,2})[/.-](?P<month>\d{1,2})[/.-](?P<year>\d{4})")


def search_date(term: str) -> dt.date | None:
    """The date ``term`` writes, or None when it is not a date (or no such day: 31/02/1988)."""
    match = ISO_DATE.fullmatch(term) or DAY_MONTH_YEAR.fullmatch(term)
    if match is None:
        return None
    try:
        return dt.date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        return None


def split_search(search_term: str) -> tuple[list[dt.date], str]:
    """The dates in ``search_term``, and the rest of it for the admin's word search.

    The rest keeps its quoted phrases as typed ("van der Berg"), since the
    admin splits it again the same way.
    """
    dates: list[dt.date] = []
    words: list[str] = []
    for term in smart_split(search_term):
        day = search_date(term)
        if day is None:
            words.append(term)
        else:
            dates.append(day)
    return dates, " ".join(words)
