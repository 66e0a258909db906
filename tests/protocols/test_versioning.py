"""Versions: drafts copy the last version, publishing freezes, retiring keeps; the ORM refuses edits of frozen versions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from clinic.models import AuditEvent
from protocols import versioning
from protocols.models import FrozenVersionError, ProtocolStep, ProtocolVersion, StepKind
from tests.factories import ProductFactory, ProtocolFactory, RuleFactory, StepFactory, VersionFactory

pytestmark = pytest.mark.django_db
Status = ProtocolVersion.Status


def _draft_with_steps(clinic, *, steps=2):
    draft = versioning.create_protocol(clinic=clinic, name="Microneedling + exosome", procedure="microneedling")
    for day in range(1, steps + 1):
        StepFactory(version=draft, title=f"Check day {day}", day=day)
    return draft


def test_it_creates_a_protocol_with_an_empty_draft_version_one(clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="CO2 care", procedure="fractional_ablative")
    assert (draft.number, draft.status, draft.steps.count()) == (1, Status.DRAFT, 0)


def test_it_publishes_a_draft_and_records_who_and_when(clinic_a, clinician):
    draft = _draft_with_steps(clinic_a)
    published = versioning.publish(version=draft, by=clinician)
    assert published.status == Status.PUBLISHED
    assert published.published_by == clinician
    assert published.published_at is not None
    assert AuditEvent.objects.filter(action="protocol.publish", object_id=str(draft.pk)).exists()


def test_it_refuses_to_publish_a_version_without_steps(clinic_a):
    draft = versioning.create_protocol(clinic=clinic_a, name="Empty", procedure="microneedling")
    with pytest.raises(ValidationError, match="at least one step"):
        versioning.publish(version=draft)


def test_it_refuses_to_publish_when_a_step_no_longer_fits_the_protocol_length(clinic_a):
    draft = _draft_with_steps(clinic_a)
    StepFactory(version=draft, title="Next session", day=40)
    ProtocolVersion.objects.filter(pk=draft.pk).update(length_days=30)  # e.g. shortened by a bulk fix
    draft.refresh_from_db()
    with pytest.raises(ValidationError, match="Next session.*after the protocol ends on day 30"):
        versioning.publish(version=draft)


def test_it_refuses_to_publish_twice(clinic_a):
    draft = _draft_with_steps(clinic_a)
    versioning.publish(version=draft)
    with pytest.raises(ValidationError, match="only a draft can be published"):
        versioning.publish(version=draft)


def test_it_starts_a_new_draft_copying_steps_and_rule_changes(clinic_a):
    rule_added, rule_removed = RuleFactory(clinic=clinic_a), RuleFactory()
    v1 = _draft_with_steps(clinic_a, steps=3)
    v1.added_rules.add(rule_added)
    v1.removed_rules.add(rule_removed)
    versioning.publish(version=v1)

    v2 = versioning.start_draft(protocol=v1.protocol)

    assert (v2.number, v2.status) == (2, Status.DRAFT)
    assert list(v2.steps.values_list("title", "day")) == list(v1.steps.values_list("title", "day"))
    assert set(v2.steps.values_list("lineage", flat=True)) == set(v1.steps.values_list("lineage", flat=True))
    assert list(v2.added_rules.all()) == [rule_added]
    assert list(v2.removed_rules.all()) == [rule_removed]
    assert v1.steps.count() == 3  # the original keeps its own rows


def test_it_allows_only_one_draft_per_protocol(clinic_a):
    v1 = _draft_with_steps(clinic_a)
    with pytest.raises(ValidationError, match="already has a draft"):
        versioning.start_draft(protocol=v1.protocol)


def test_it_retires_the_previous_version_when_a_new_one_is_published(clinic_a):
    v1 = _draft_with_steps(clinic_a)
    versioning.publish(version=v1)
    v2 = versioning.start_draft(protocol=v1.protocol)
    StepFactory(version=v2, title="Sunscreen", day=1)
    versioning.publish(version=v2, change_note="Adds a sunscreen step.")
    v1.refresh_from_db()
    assert v1.status == Status.RETIRED
    assert v1.protocol.current_version == v2
    assert v1.protocol.status == Status.PUBLISHED


def test_a_later_version_must_differ_from_the_one_before_and_say_how(clinic_a):
    v1 = _draft_with_steps(clinic_a)
    versioning.publish(version=v1)  # the first version needs no note
    v2 = versioning.start_draft(protocol=v1.protocol)
    with pytest.raises(ValidationError, match="v2 is the same as v1: there is nothing to publish"):
        versioning.publish(version=v2, change_note="Nothing really.")
    StepFactory(version=v2, title="Sunscreen", day=1)
    with pytest.raises(ValidationError, match="Say what changed since v1 in the change note"):
        versioning.publish(version=v2, change_note="  ")
    with pytest.raises(ValidationError, match="in a sentence"):
        versioning.publish(version=v2, change_note="ok")
    v2.refresh_from_db()
    assert v2.status == Status.DRAFT
    v1.refresh_from_db()
    assert v1.status == Status.PUBLISHED  # nothing changed by the refusals
    v2.change_note = "Adds a sunscreen step."
    v2.save()
    assert versioning.publish(version=v2).status == Status.PUBLISHED  # the note saved on the draft counts


def test_it_retires_a_published_version_but_not_a_draft(clinic_a):
    v1 = _draft_with_steps(clinic_a)
    with pytest.raises(ValidationError, match="only a published version can be retired"):
        versioning.retire(version=v1)
    versioning.publish(version=v1)
    assert versioning.retire(version=v1).status == Status.RETIRED
    assert v1.protocol.status == Status.RETIRED


# --- immutability at the ORM level -------------------------------------------------------


@pytest.fixture
def published(clinic_a):
    version = _draft_with_steps(clinic_a)
    return versioning.publish(version=version)


def test_it_refuses_to_save_a_changed_step_of_a_published_version(published):
    step = published.steps.first()
    step.title = "Changed"
    with pytest.raises(FrozenVersionError, match="published and cannot change"):
        step.save()
    assert published.steps.filter(title="Changed").count() == 0


def test_it_refuses_to_add_or_delete_steps_of_a_published_version(published):
    with pytest.raises(FrozenVersionError):
        ProtocolStep.objects.create(version=published, kind=StepKind.INSTRUCTION, title="New", timing="offset",
                                    offset_value=10)
    with pytest.raises(FrozenVersionError):
        published.steps.first().delete()
    with pytest.raises(FrozenVersionError):
        published.steps.all().delete()
    with pytest.raises(FrozenVersionError):
        published.steps.update(title="Bulk")
    with pytest.raises(FrozenVersionError):
        ProtocolStep.objects.bulk_create([ProtocolStep(version=published, kind="instruction", title="x",
                                                       timing="offset", offset_value=1)])
    assert published.steps.count() == 2


def test_it_refuses_to_move_a_step_out_of_a_published_version(published, clinic_a):
    other_draft = versioning.create_protocol(clinic=clinic_a, name="Other", procedure="microneedling")
    step = published.steps.first()
    step.version = other_draft
    with pytest.raises(FrozenVersionError):
        step.save()


def test_it_refuses_to_change_rule_additions_or_removals_of_a_published_version(published, clinic_a):
    rule = RuleFactory(clinic=clinic_a)
    # The related manager writes in atomic(savepoint=False); a savepoint keeps the test's transaction usable.
    for relation in (published.added_rules, published.removed_rules):
        with pytest.raises(FrozenVersionError), transaction.atomic():
            relation.add(rule)
        with pytest.raises(FrozenVersionError), transaction.atomic():
            relation.clear()
    assert published.added_rules.count() == 0


def test_it_refuses_to_change_version_fields_once_published(published):
    published.length_days = 60
    with pytest.raises(FrozenVersionError, match="length_days"):
        published.save()
    published.refresh_from_db()
    assert published.length_days == 42


def test_it_refuses_to_reopen_a_published_version_as_a_draft(published):
    published.status = Status.DRAFT
    with pytest.raises(FrozenVersionError):
        published.save()


def test_it_refuses_to_delete_a_published_version(published):
    with pytest.raises(FrozenVersionError):
        published.delete()
    with pytest.raises(FrozenVersionError):
        ProtocolVersion.objects.filter(pk=published.pk).delete()


def test_it_refuses_to_change_the_procedure_of_a_protocol_in_use(published):
    protocol = published.protocol
    protocol.procedure = "fractional_ablative"
    with pytest.raises(FrozenVersionError):
        protocol.save()
    protocol.refresh_from_db()
    protocol.name = "Renamed is fine"
    protocol.save()


def test_it_refuses_a_rule_of_another_clinic_on_a_draft(clinic_a, clinic_b):
    draft = _draft_with_steps(clinic_a)
    with pytest.raises(ValidationError, match="its own clinic"), transaction.atomic():
        draft.added_rules.add(RuleFactory(clinic=clinic_b))


def test_it_lets_fixtures_build_steps_on_a_published_version():
    version = VersionFactory(status=Status.PUBLISHED, added_rules=[RuleFactory()])
    step = StepFactory(version=version)
    version.refresh_from_db()
    assert (version.status, step.version_id, version.added_rules.count()) == (Status.PUBLISHED, version.pk, 1)


def test_it_keeps_the_draft_editable(clinic_a):
    draft = _draft_with_steps(clinic_a)
    step = draft.steps.first()
    step.title = "Edited"
    step.save()
    draft.length_days = 30
    draft.save()
    draft.added_rules.add(RuleFactory())
    assert draft.steps.filter(title="Edited").exists()


# --- diff ---------------------------------------------------------------------------------


def test_it_diffs_added_removed_and_changed_steps(clinic_a):
    product = ProductFactory(clinic=clinic_a)
    v1 = _draft_with_steps(clinic_a, steps=3)
    versioning.publish(version=v1)
    v2 = versioning.start_draft(protocol=v1.protocol)
    kept, edited, dropped = v2.steps.order_by("day")
    edited.local_time = dt.time(21, 30)
    edited.title = "Evening check"
    edited.save()
    dropped.delete()
    StepFactory(version=v2, title="Serum", kind=StepKind.HOME_APPLICATION, product=product, day=1)
    v2.length_days = 28
    v2.save()
    rule = RuleFactory()
    v2.added_rules.add(rule)

    diff = versioning.step_diff(old=v1, new=v2)

    assert [step.title for step in diff.added] == ["Serum"]
    assert [step.title for step in diff.removed] == ["Check day 3"]
    assert [step.title for step in diff.unchanged] == [kept.title]
    (change,) = diff.changed
    assert {(c.field, c.old, c.new) for c in change.changes} == {
        ("title", "Check day 2", "Evening check"),
        ("local_time", "20:00", "21:30"),
    }
    assert [(c.field, c.old, c.new) for c in diff.settings] == [("length_days", "42", "28")]
    assert diff.added_rules.gained == [rule]
    assert not diff.removed_rules
    assert not diff.is_empty


def test_it_reports_an_empty_diff_for_an_untouched_copy(published):
    draft = versioning.start_draft(protocol=published.protocol)
    diff = versioning.step_diff(old=published, new=draft)
    assert diff.is_empty
    assert len(diff.unchanged) == 2


def test_it_refuses_to_diff_versions_of_different_protocols(published):
    other = VersionFactory(protocol=ProtocolFactory(clinic=published.protocol.clinic))
    with pytest.raises(ValidationError):
        versioning.step_diff(old=published, new=other)
