"""Counting things in messages to people: "1 reminder", "3 reminders", never "3 reminder(s)"."""

from __future__ import annotations


def counted(number: int, singular: str, plural: str | None = None) -> str:
    """``number`` and the noun it counts: ``counted(1, "reminder")`` is "1 reminder", 2 gives "2 reminders"."""
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def verb(number: int, singular: str, plural: str) -> str:
    """The verb that agrees with ``number`` things: ``verb(1, "is", "are")``."""
    return singular if number == 1 else plural
