"""The reasons staff write for a deliberate act: one bar for all of them.

A correction of an outcome or adverse event, a cancelled treatment, a screening
override, a moved visit, a lifted recall: each is read later by someone who was
not there, so "ok", "typo" or "moved" is refused everywhere alike, with the same words.
"""

from __future__ import annotations

#: "typo" says nothing to whoever reads the record later; "pain score was 3" does.
REASON_MIN_LENGTH = 10
#: A reason kept in its own text column (override, cancellation, moved visit): a sentence or a paragraph,
#: not a pasted document. Reasons kept as a history row's change reason have that column's shorter limit.
REASON_MAX_LENGTH = 2000


def reason_length(reason: str | None) -> int:
    """The length a reason is judged by: without blanks around it, each run of blanks counting as one."""
    return len(" ".join((reason or "").split()))


def too_short(*, why: str, example: str) -> str:
    """The refusal of a reason shorter than ``REASON_MIN_LENGTH``: ``why`` ("Say why …") and an example."""
    return (
        f"{why}, in a few words (at least {REASON_MIN_LENGTH} characters), e.g. “{example}”: "
        "the reason stays with the record."
    )


def too_long(reason: str, *, limit: int = REASON_MAX_LENGTH) -> str:
    """The refusal of a reason longer than ``limit`` characters, saying how long it is."""
    return f"Keep the reason to {limit} characters (it has {len(reason)})."
