"""Writing and verifying the access log."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from clinic.middleware import current_request_id
from clinic.models import AuditEvent, Clinic
from clinic.scoping import clinic_ids, clinic_of, clinic_path

GENESIS_HASH = "0" * 64
_LABEL_MAX = AuditEvent._meta.get_field("actor_label").max_length


def record_event(
    *,
    actor: object | None,
    action: str,
    clinic: Clinic | None = None,
    clinic_id: int | None = None,
    obj: models.Model | None = None,
    object_type: str = "",
    objects: Iterable[models.Model] = (),
    detail: dict | None = None,
    request: HttpRequest | None = None,
) -> AuditEvent:
    """Append one entry to the access log, chained to the current tail.

    ``obj`` is the main object; ``objects`` lists any others the action touched
    (stored in ``detail["objects"]``).  ``clinic_id`` may stand for ``clinic``
    where only the id is at hand; ``object_type`` names the kind of record of
    an entry about no single one (a list).  Values in ``detail`` are
    normalised to plain JSON first, so the hash is computed over exactly what
    the database will give back when the chain is verified.
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
                    clinic_id=clinic.pk if clinic is not None else clinic_id,
                    actor=user,
                    actor_label=label[:_LABEL_MAX],
                    action=action,
                    object_type=obj._meta.label_lower if obj is not None else object_type,
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


def record_listed(
    *, request: HttpRequest, model: type[models.Model], rows: Sequence[models.Model], filters: dict, page: int | None
) -> list[AuditEvent]:
    """Log that the person making ``request`` read a page of a list of ``model``: one entry per clinic on the page.

    Each entry (action ``"list"``, object type the model, no object id) names
    the ``filters`` of the request, the ``page`` number, and how many rows of
    its clinic the page showed and which (``detail["objects"]``), so each
    clinic's auditor sees the bulk reads of its patients' data.  The entries of
    one request share its request id.  A page is at most the page size, and
    the clinics of its rows are read from the rows themselves (at most one
    query for the whole page), so logging costs the same for 3 rows as for 50.

    An empty page is a search all the same: it is logged against every clinic
    the list could have shown rows of (the person's clinics; one entry with no
    clinic for a superuser, whose lists cover every clinic).
    """
    by_clinic: dict[int | None, list[models.Model]] = defaultdict(list)
    for row, clinic in zip(rows, _clinic_ids_of(model, rows), strict=True):
        by_clinic[clinic].append(row)
    if not by_clinic:
        searched = set() if getattr(request.user, "is_superuser", False) else clinic_ids(request.user)
        by_clinic = dict.fromkeys(sorted(searched) or [None], [])  # type: ignore[arg-type]
    base = {"filters": filters, "page": page}
    return [
        record_event(
            actor=request.user, action="list", clinic_id=clinic, object_type=model._meta.label_lower, objects=shown,
            request=request, detail={**base, "count": len(shown)},
        )
        for clinic, shown in sorted(by_clinic.items(), key=lambda item: (item[0] is None, item[0] or 0))
    ]


def _clinic_ids_of(model: type[models.Model], rows: Sequence[models.Model]) -> list[int | None]:
    """The clinic id of each row: from the rows where their relations are loaded, else in one query for the page."""
    path = clinic_path(model).split("__")
    found = [_loaded_clinic_id(row, path) for row in rows]
    missing = [row.pk for row, clinic in zip(rows, found, strict=True) if clinic is _UNKNOWN]
    if missing:
        looked_up = dict(model._base_manager.filter(pk__in=missing).values_list("pk", "__".join(path)))
        found = [looked_up.get(row.pk) if clinic is _UNKNOWN else clinic for row, clinic in zip(rows, found, strict=True)]
    return found


_UNKNOWN = object()


def _loaded_clinic_id(row: models.Model, path: list[str]) -> object:
    """Follow ``path`` (to the clinic) through relations already loaded; ``_UNKNOWN`` where one is not."""
    current: models.Model | None = row
    for part in path[:-1]:
        field = current._meta.get_field(part)
        if not field.is_cached(current):  # type: ignore[union-attr]
            return _UNKNOWN
        current = getattr(current, part)
        if current is None:
            return None
    return getattr(current, current._meta.get_field(path[-1]).attname)  # type: ignore[union-attr]


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
