"""Writing and verifying the access log."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from clinic.middleware import current_request_id
from clinic.models import AuditEvent, Clinic
from clinic.scoping import clinic_of

GENESIS_HASH = "0" * 64
_LABEL_MAX = AuditEvent._meta.get_field("actor_label").max_length


def record_event(
    *,
    actor: object | None,
    action: str,
    clinic: Clinic | None = None,
    obj: models.Model | None = None,
    objects: Iterable[models.Model] = (),
    detail: dict | None = None,
    request: HttpRequest | None = None,
) -> AuditEvent:
    """Append one entry to the access log, chained to the current tail.

    ``obj`` is the main object; ``objects`` lists any others the action touched
    (stored in ``detail["objects"]``).  Values in ``detail`` are normalised to
    plain JSON first, so the hash is computed over exactly what the database
    will give back when the chain is verified.
    """
    user = actor if getattr(actor, "is_authenticated", False) else None
    payload = dict(detail or {})
    others = [{"type": o._meta.label_lower, "id": str(o.pk)} for o in objects]
    if others:
        payload["objects"] = others
    payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    label = user.get_username() if user else str(actor or "system")
    for _attempt in range(10):
        try:
            with transaction.atomic():
                tail = AuditEvent.objects.order_by("-id").values_list("entry_hash", flat=True).first()
                event = AuditEvent(
                    clinic=clinic,
                    actor=user,
                    actor_label=label[:_LABEL_MAX],
                    action=action,
                    object_type=obj._meta.label_lower if obj is not None else "",
                    object_id=str(obj.pk) if obj is not None else "",
                    detail=payload,
                    # Services not handed the request still log the id of the request they run in.
                    request_id=getattr(request, "request_id", "") if request is not None else current_request_id.get(),
                    created_at=timezone.now(),
                    previous_hash=tail or GENESIS_HASH,
                )
                event.entry_hash = event.compute_hash()
                event.save()
                return event
        except IntegrityError:
            continue  # another writer took this tail; chain onto theirs
    raise RuntimeError("Could not append to the access log after 10 attempts")


def record_viewed(
    *, request: HttpRequest, action: str, obj: models.Model, rows: Iterable[models.Model] = (), detail: dict | None = None
) -> AuditEvent:
    """Log that the person making ``request`` read ``obj`` (in its own clinic), and the ``rows`` of it shown with it.

    A list is one entry however long it is, so a look costs the same few queries
    for three rows as for three hundred: the record the rows belong to (a
    patient, a treatment) is the entry's object, so a search for its id finds
    the look, and each row is named in ``detail["objects"]``.
    """
    return record_event(
        actor=request.user, action=action, clinic=clinic_of(obj), obj=obj, objects=rows, detail=detail, request=request
    )


@dataclass(frozen=True)
class ChainReport:
    """What a walk of the chain found.

    ``broken_at`` is the id of the first entry whose link is broken (None when
    intact); ``tail_hash`` is the hash of the last good entry, which an auditor
    can write down and later pass back as ``expect_hash`` to prove that no
    entry up to it has been removed since.
    """

    checked: int
    broken_at: int | None
    reason: str = ""
    tail_hash: str = GENESIS_HASH

    @property
    def intact(self) -> bool:
        return self.broken_at is None and not self.reason


def verify_chain(*, expect_hash: str | None = None) -> ChainReport:
    """Walk the log in order and report the first entry whose link is broken.

    Editing any hashed column breaks that entry's own hash; deleting an entry
    breaks the link of the one after it.  Deleting entries at the very end of
    the log leaves no successor to notice, which is what ``expect_hash`` (a
    tail hash noted earlier) is for.
    """
    expected_previous = GENESIS_HASH
    checked = 0
    seen_expected = expect_hash is None
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        checked += 1
        if event.previous_hash != expected_previous:
            return ChainReport(checked, event.pk, "previous hash does not match the entry before it", expected_previous)
        if event.compute_hash() != event.entry_hash:
            return ChainReport(checked, event.pk, "content does not match its hash", expected_previous)
        expected_previous = event.entry_hash
        seen_expected = seen_expected or event.entry_hash == expect_hash
    if not seen_expected:
        return ChainReport(checked, None, f"no entry has the expected hash {expect_hash}", expected_previous)
    return ChainReport(checked, None, tail_hash=expected_previous)
