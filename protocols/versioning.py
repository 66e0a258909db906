"""The life of a protocol version: draft → published → retired, and what changed between two.

A published version never changes again (treatments point at it); editing a
published protocol means starting a new draft that copies the last version's
steps and rule additions/removals, editing that, and publishing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from clinic.audit import record_event
from protocols.models import ContraindicationRule, Protocol, ProtocolStep, ProtocolVersion
from protocols.steps import validate_step

Status = ProtocolVersion.Status

# The step fields a diff compares, in the order a person reads a step.
DIFF_FIELDS: tuple[str, ...] = (
    "order", "kind", "title", "patient_text", "staff_notes", "timing", "offset_value", "offset_unit", "day",
    "local_time", "repeat_count", "repeat_every_days", "avoid_until_day", "product", "sends_reminder",
    "remind_minutes_before",
)
# Copied into a new draft: everything a step says, including which step it continues.
_COPIED_STEP_FIELDS: tuple[str, ...] = (*DIFF_FIELDS, "lineage")


def create_protocol(
    *, clinic: Any, name: str, procedure: str, description: str = "", by: Any = None
) -> ProtocolVersion:
    """A new protocol with an empty draft version 1, ready for steps."""
    with transaction.atomic():
        protocol = Protocol.objects.create(clinic=clinic, name=name, procedure=procedure, description=description)
        return start_draft(protocol=protocol, by=by)


def start_draft(
    *, protocol: Protocol, by: Any = None, from_version: ProtocolVersion | None = None, change_note: str = ""
) -> ProtocolVersion:
    """Start the next draft of ``protocol``, copying ``from_version`` (default: its newest published or retired one).

    Refuses when the protocol already has a draft: there is one draft at a time,
    so two people cannot publish diverging edits of the same protocol.
    """
    with transaction.atomic():
        # Lock the protocol row so two requests cannot take the same number.
        Protocol.objects.select_for_update().filter(pk=protocol.pk).first()
        existing = protocol.versions.filter(status=Status.DRAFT).first()
        if existing is not None:
            raise ValidationError(f"{protocol.name} already has a draft (v{existing.number}); edit or publish that one.")
        source = from_version or _newest_frozen(protocol)
        if source is not None and source.protocol_id != protocol.pk:
            raise ValidationError("A draft can only be started from a version of the same protocol.")
        number = (protocol.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        draft = ProtocolVersion.objects.create(
            protocol=protocol, number=number, status=Status.DRAFT, change_note=change_note,
            length_days=source.length_days if source is not None else 42,
        )
        if source is not None:
            _copy_content(source=source, into=draft)
        record_event(
            actor=by, action="protocol.draft", clinic=protocol.clinic, obj=draft,
            detail={"number": number, "from_version": source.number if source is not None else None},
        )
        return draft


def publish(*, version: ProtocolVersion, by: Any = None, change_note: str | None = None) -> ProtocolVersion:
    """Publish a draft: it becomes the version new treatments use and never changes again.

    Every step is validated once more (the protocol length may have changed
    since a step was saved). The previously published version is retired: it
    stays attached to the treatments that used it but is no longer offered.
    """
    with transaction.atomic():
        locked = ProtocolVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status != Status.DRAFT:
            raise ValidationError(f"v{locked.number} is {locked.status}; only a draft can be published.")
        steps = list(locked.steps.all())
        if not steps:
            raise ValidationError("A protocol version needs at least one step before it is published.")
        problems = _step_problems(steps, length_days=locked.length_days)
        if problems:
            raise ValidationError(problems)
        _check_it_says_what_changed(locked, change_note=change_note)
        for previous in locked.protocol.versions.filter(status=Status.PUBLISHED):
            previous.status = Status.RETIRED
            previous.save()
        locked.status = Status.PUBLISHED
        locked.published_at = timezone.now()
        locked.published_by = by if getattr(by, "is_authenticated", False) else None
        if change_note is not None:
            locked.change_note = change_note
        locked.save()
        record_event(actor=by, action="protocol.publish", clinic=locked.protocol.clinic, obj=locked,
                     detail={"number": locked.number})
    version.refresh_from_db()
    return version


def version_before(draft: ProtocolVersion) -> ProtocolVersion | None:
    """The newest version ever offered before ``draft`` (published or retired since): what its change note is about."""
    return draft.protocol.versions.exclude(pk=draft.pk).exclude(status=Status.DRAFT).order_by("-number").first()


#: Staff and auditors learn from the note why treatments from a date on follow another version: "ok" says nothing.
CHANGE_NOTE_MIN_LENGTH = 15


def _check_it_says_what_changed(draft: ProtocolVersion, *, change_note: str | None) -> None:
    """A version after the first must differ from the one before it and say how (its change note).

    Staff and auditors read the note to learn why treatments from a date on
    follow another version; an identical version would only add noise.
    """
    before = version_before(draft)
    if before is None:
        return
    if step_diff(old=before, new=draft).is_empty:
        raise ValidationError(
            f"v{draft.number} is the same as v{before.number}: there is nothing to publish. Change a step, the "
            f"length or the rules first, or delete the draft."
        )
    note = " ".join(((draft.change_note if change_note is None else change_note) or "").split())
    if len(note) < CHANGE_NOTE_MIN_LENGTH:
        raise ValidationError({"change_note": (
            f"Say what changed since v{before.number} in the change note, in a sentence (at least "
            f"{CHANGE_NOTE_MIN_LENGTH} characters, e.g. “No retinoids until day 7 instead of 5”): staff and "
            "auditors read it."
        )})


def retire(*, version: ProtocolVersion, by: Any = None) -> ProtocolVersion:
    """Stop offering a published version for new treatments; it stays attached to past ones."""
    with transaction.atomic():
        locked = ProtocolVersion.objects.select_for_update().get(pk=version.pk)
        if locked.status != Status.PUBLISHED:
            raise ValidationError(f"v{locked.number} is {locked.status}; only a published version can be retired.")
        locked.status = Status.RETIRED
        locked.save()
        record_event(actor=by, action="protocol.retire", clinic=locked.protocol.clinic, obj=locked,
                     detail={"number": locked.number})
    version.refresh_from_db()
    return version


def leaves_none_published(version: ProtocolVersion) -> bool:
    """Whether retiring ``version`` leaves its protocol with no published version: until one is published, no
    patient can be screened or treated for the protocol."""
    others = version.protocol.versions.filter(status=Status.PUBLISHED).exclude(pk=version.pk)
    return version.status == Status.PUBLISHED and not others.exists()


# --- diff -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    field: str
    label: str
    old: str
    new: str


@dataclass(frozen=True)
class StepChange:
    old: ProtocolStep
    new: ProtocolStep
    changes: list[FieldChange]


@dataclass(frozen=True)
class RuleSetChange:
    """How one of the rule lists (additions or removals) moved between two versions."""

    gained: list[ContraindicationRule] = field(default_factory=list)
    lost: list[ContraindicationRule] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost)


@dataclass(frozen=True)
class VersionDiff:
    old: ProtocolVersion
    new: ProtocolVersion
    added: list[ProtocolStep]
    removed: list[ProtocolStep]
    changed: list[StepChange]
    unchanged: list[ProtocolStep]
    settings: list[FieldChange]
    added_rules: RuleSetChange
    removed_rules: RuleSetChange

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.settings or self.added_rules or self.removed_rules)


def step_diff(*, old: ProtocolVersion, new: ProtocolVersion) -> VersionDiff:
    """What changed from ``old`` to ``new``: steps added, removed and changed (field by field), and rule edits.

    Steps are matched by lineage (a draft's copy of a step keeps the lineage of
    the step it was copied from), so an edited step shows as changed, not as
    one removed and one added.
    """
    if old.protocol_id != new.protocol_id:
        raise ValidationError("Only versions of the same protocol can be compared.")
    old_steps = list(old.steps.select_related("product"))
    new_steps = list(new.steps.select_related("product"))
    old_by_lineage = {step.lineage: step for step in old_steps}
    matched: set[Any] = set()
    added: list[ProtocolStep] = []
    changed: list[StepChange] = []
    unchanged: list[ProtocolStep] = []
    for step in new_steps:
        before = old_by_lineage.get(step.lineage)
        if before is None or step.lineage in matched:
            added.append(step)
            continue
        matched.add(step.lineage)
        changes = _field_changes(before, step)
        if changes:
            changed.append(StepChange(before, step, changes))
        else:
            unchanged.append(step)
    removed = [step for step in old_steps if step.lineage not in matched]
    settings = []
    if old.length_days != new.length_days:
        settings.append(FieldChange("length_days", "protocol length (days)", str(old.length_days), str(new.length_days)))
    return VersionDiff(
        old=old, new=new, added=added, removed=removed, changed=changed, unchanged=unchanged, settings=settings,
        added_rules=_rule_change(old.added_rules.all(), new.added_rules.all()),
        removed_rules=_rule_change(old.removed_rules.all(), new.removed_rules.all()),
    )


# --- helpers ----------------------------------------------------------------------------


def _newest_frozen(protocol: Protocol) -> ProtocolVersion | None:
    published = protocol.versions.filter(status=Status.PUBLISHED).order_by("-number").first()
    return published or protocol.versions.order_by("-number").first()


def _copy_content(*, source: ProtocolVersion, into: ProtocolVersion) -> None:
    attnames = [ProtocolStep._meta.get_field(name).attname for name in _COPIED_STEP_FIELDS]
    for step in source.steps.all():
        ProtocolStep.objects.create(version=into, **{attname: getattr(step, attname) for attname in attnames})
    into.added_rules.set(source.added_rules.all())
    into.removed_rules.set(source.removed_rules.all())


def _step_problems(steps: list[ProtocolStep], *, length_days: int) -> list[str]:
    problems = []
    for step in steps:
        try:
            validate_step(step.as_input(), length_days=length_days)
        except ValidationError as error:
            for messages in error.message_dict.values():
                problems.extend(f"Step “{step.title}”: {message}" for message in messages)
    return problems


def _field_changes(old: ProtocolStep, new: ProtocolStep) -> list[FieldChange]:
    changes = []
    for name in DIFF_FIELDS:
        model_field = ProtocolStep._meta.get_field(name)
        before, after = getattr(old, model_field.attname), getattr(new, model_field.attname)
        if before != after:
            label = str(model_field.verbose_name)
            changes.append(FieldChange(name, label, _display(old, name), _display(new, name)))
    return changes


def _display(step: ProtocolStep, name: str) -> str:
    model_field = ProtocolStep._meta.get_field(name)
    value = getattr(step, name)
    if value is None or value == "":
        return "—"
    if model_field.choices:
        return str(getattr(step, f"get_{name}_display")())
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "strftime"):
        return value.strftime("%H:%M")
    return str(value)


def _rule_change(old: Any, new: Any) -> RuleSetChange:
    before, after = set(old), set(new)
    return RuleSetChange(
        gained=sorted(after - before, key=lambda rule: rule.code),
        lost=sorted(before - after, key=lambda rule: rule.code),
    )
