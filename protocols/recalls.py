"""Recording a lot's recall in the access log: who recalled which lot, when, and how many patients received it.

Lifting a recall is ``protocols.lots``; both halves are in the log, so an
auditor reads there when a lot was out of service and who decided it. The
admin and the API call ``record_recall`` once the recall is saved.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from clinic.audit import record_event
from protocols.models import ProductLot

RECALL_ACTION = "lot.recalled"


def patients_who_received(lot: ProductLot) -> int:
    """How many patients received ``lot``: everyone the clinic has to contact, whoever is asking."""
    from patients.models import ExosomeApplication

    return ExosomeApplication.objects.filter(lot=lot).values("treatment__patient").distinct().count()


def record_recall(*, lot: ProductLot, by: Any, request: HttpRequest | None = None) -> int:
    """Log the recall of ``lot``, just saved; return how many patients received the lot."""
    treated = patients_who_received(lot)
    record_event(
        actor=by, action=RECALL_ACTION, clinic=lot.clinic, obj=lot, request=request,
        detail={"recalled_at": lot.recalled_at, "recall_reason": lot.recall_reason, "patients_who_received_it": treated},
    )
    return treated
