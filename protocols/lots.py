"""Lifting a lot's recall: a deliberate act of a clinic admin, with a written reason that is kept.

A lifted recall makes the lot usable again and takes its notice off the
treatment pages, so it is never a mere untick: only a role with
``Capability.MANAGE_CLINIC`` in the lot's clinic may lift it, saying why in a
sentence. The reason becomes the history row's change reason and, with the
recall it lifted, an entry of the access log. The admin and the API call
``check_lift`` to refuse early and ``lift_recall`` to do it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest

from clinic import reasons
from clinic.audit import record_event
from clinic.roles import Capability
from clinic.scoping import can
from protocols.models import ProductLot

#: The same bar as every other reason: "mistake" documents nothing.
LIFT_REASON_MIN_LENGTH = reasons.REASON_MIN_LENGTH
#: The history keeps the reason whole in its change-reason column, which holds this many characters.
LIFT_REASON_MAX_LENGTH = ProductLot.history.model._meta.get_field("history_change_reason").max_length
LIFT_ACTION = "lot.recall_lifted"


def is_lifting(lot: ProductLot, recalled: bool | None) -> bool:
    """Whether writing ``recalled`` to the stored ``lot`` lifts its recall."""
    return lot.pk is not None and lot.recalled and recalled is False


def check_lift(*, lot: ProductLot, by: Any, reason: str | None) -> str:
    """The reason, tidied, when ``by`` may lift the recall of ``lot`` with it; else PermissionDenied or ValidationError."""
    if not can(by, Capability.MANAGE_CLINIC, lot.clinic_id):
        raise PermissionDenied(
            f"Only a clinic admin of {lot.clinic} may lift the recall of lot {lot.lot_number}. "
            "Ask one to do it, with the reason the lot is safe to use again."
        )
    reason = " ".join((reason or "").split())
    if len(reason) < LIFT_REASON_MIN_LENGTH:
        raise ValidationError({"recall_lift_reason": reasons.too_short(
            why="Say why the recall is lifted", example="supplier confirmed sterility",
        )})
    if len(reason) > LIFT_REASON_MAX_LENGTH:
        raise ValidationError({"recall_lift_reason": (
            f"{reasons.too_long(reason, limit=LIFT_REASON_MAX_LENGTH)} Put longer notes in the storage checks."
        )})
    return reason


def lock_recall(lot: ProductLot) -> dict[str, Any]:
    """The recall of ``lot`` as stored, its row locked until the transaction ends; ValidationError if it is lifted.

    The stored recall, not the one an edited form holds: that is the recall
    being lifted. Called inside the transaction that lifts it — the admin calls
    it while validating the form, so that of two admins lifting the same recall
    at once the second is told so on the form, not by a server error.
    """
    stored = ProductLot.objects.select_for_update().values("recalled", "recalled_at", "recall_reason").get(pk=lot.pk)
    if not stored["recalled"]:
        raise ValidationError({"recalled": (
            f"The recall of lot {lot.lot_number} has already been lifted, by someone else since this page was "
            "opened: reload the lot to see it."
        )})
    return stored


def lift_recall(*, lot: ProductLot, by: Any, reason: str | None, request: HttpRequest | None = None) -> ProductLot:
    """Lift the recall of ``lot`` (saving any other change made to it), kept in its history and the access log."""
    reason = check_lift(lot=lot, by=by, reason=reason)
    with transaction.atomic():
        stored = lock_recall(lot)
        lot.recalled = False
        lot._change_reason = reason  # type: ignore[attr-defined]  # simple_history's change reason
        lot._history_user = by  # type: ignore[attr-defined]  # and its user, outside a request too
        lot.save()
        record_event(
            actor=by, action=LIFT_ACTION, clinic=lot.clinic, obj=lot, request=request,
            detail={
                "reason": reason,
                "lifted_recall": {"recalled_at": stored["recalled_at"], "recall_reason": stored["recall_reason"]},
            },
        )
    return lot


@dataclass(frozen=True)
class LiftedRecall:
    recalled_at: dt.datetime | None
    recall_reason: str
    lifted_at: dt.datetime
    lifted_by: str
    reason: str


def lifted_recalls(lot: ProductLot) -> list[LiftedRecall]:
    """The recalls of ``lot`` that were lifted, newest first, read from its history.

    The history, not the access log, so that a recall lifted before a reason was asked for shows too.
    """
    lifted: list[LiftedRecall] = []
    previous = None
    for row in lot.history.select_related("history_user").order_by("history_date", "history_id"):
        if previous is not None and previous.recalled and not row.recalled:
            lifted.append(LiftedRecall(
                recalled_at=previous.recalled_at, recall_reason=previous.recall_reason, lifted_at=row.history_date,
                lifted_by=str(row.history_user or "someone unknown"), reason=row.history_change_reason or "",
            ))
        previous = row
    return lifted[::-1]
