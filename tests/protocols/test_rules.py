"""Which rules a protocol version is screened against."""

from __future__ import annotations

import pytest

from protocols.models import ProtocolVersion, Severity
from protocols.rules import rules_for_version
from tests.factories import ProtocolFactory, RuleFactory, VersionFactory

pytestmark = pytest.mark.django_db


def rule(code: str, *, clinic=None, procedures=(), fact="pregnant", severity=Severity.RELATIVE, **kwargs):
    return RuleFactory(code=code, clinic=clinic, procedures=list(procedures), fact=fact, severity=severity, **kwargs)


def codes(rules) -> list[str]:
    return [r.code for r in rules]


@pytest.fixture
def version(clinic_a):
    return VersionFactory(protocol=ProtocolFactory(clinic=clinic_a, procedure="microneedling"))


def test_it_uses_the_default_rules_for_the_procedure(version):
    rule("all-procedures")
    rule("mn-only", procedures=["microneedling"])
    rule("laser-only", procedures=["fractional_ablative"])
    assert codes(rules_for_version(version)) == ["all-procedures", "mn-only"]


def test_it_leaves_out_inactive_defaults(version):
    rule("active")
    rule("retired", is_active=False)
    assert codes(rules_for_version(version)) == ["active"]


def test_a_clinic_rule_replaces_the_default_of_the_same_code(version, clinic_a):
    default = rule("isotretinoin", severity=Severity.ABSOLUTE)
    mine = rule("isotretinoin", clinic=clinic_a, severity=Severity.CAUTION)
    chosen = rules_for_version(version)
    assert chosen == [mine]
    assert default not in chosen


def test_an_inactive_clinic_rule_switches_the_default_off(version, clinic_a):
    rule("keloid")
    rule("keloid", clinic=clinic_a, is_active=False)
    assert rules_for_version(version) == []


def test_it_adds_the_clinics_own_rules_but_never_another_clinics(version, clinic_a, clinic_b):
    rule("own-rule", clinic=clinic_a)
    rule("own-laser-rule", clinic=clinic_a, procedures=["fractional_nonablative"])
    rule("their-rule", clinic=clinic_b)
    rule("isotretinoin")
    rule("isotretinoin", clinic=clinic_b, is_active=False)
    assert codes(rules_for_version(version)) == ["isotretinoin", "own-rule"]


def test_it_adds_the_versions_added_rules_and_drops_its_removed_ones(clinic_a):
    # Rules are attached while the version is a draft; a published one is frozen.
    version = VersionFactory(
        protocol=ProtocolFactory(clinic=clinic_a, procedure="microneedling"), status=ProtocolVersion.Status.DRAFT
    )
    rule("kept")
    dropped = rule("dropped")
    replaced = rule("dropped", clinic=clinic_a)
    extra = rule("extra-for-this-protocol", clinic=clinic_a, procedures=["fractional_ablative"])
    version.added_rules.add(extra)
    version.removed_rules.add(dropped)
    chosen = rules_for_version(version)
    assert codes(chosen) == ["extra-for-this-protocol", "kept"]
    assert replaced not in chosen


def test_a_shared_template_protocol_uses_the_given_clinics_rules(clinic_a):
    shared = VersionFactory(protocol=ProtocolFactory(clinic=None, procedure="microneedling"))
    rule("anticoagulant", severity=Severity.RELATIVE)
    mine = rule("anticoagulant", clinic=clinic_a, severity=Severity.CAUTION)
    assert rules_for_version(shared, clinic=clinic_a) == [mine]
    assert codes(rules_for_version(shared)) == ["anticoagulant"]
    assert rules_for_version(shared)[0].clinic is None
