"""Ids named in a URL or a query string: ASCII digits only.

``str.isdigit`` also accepts "²" or "١", which ``int`` refuses: a check with
it let a crafted ``?clinic=²`` through to a server error.
"""

from __future__ import annotations


def row_id(value: str | None) -> int | None:
    """The id ``value`` names, or None when it is not one."""
    if value and value.isascii() and value.isdigit():
        return int(value)
    return None
