"""The seeded rule library and example protocols, products and lots: complete, valid and idempotent."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from protocols.defaults import (
    DEFAULT_RULES,
    install_default_rules,
    install_example_products,
    install_example_protocols,
)
from protocols.facts import FACTS_BY_CODE
from protocols.models import ContraindicationRule, ExosomeProduct, ProductLot, Protocol, ProtocolStep, ProtocolVersion
from protocols.steps import validate_step

pytestmark = pytest.mark.django_db


def test_it_installs_every_default_rule_once():
    assert install_default_rules() == len(DEFAULT_RULES)
    assert install_default_rules() == 0
    assert ContraindicationRule.objects.filter(clinic__isnull=True).count() == len(DEFAULT_RULES)


def test_it_keeps_an_edited_default_on_a_second_run():
    install_default_rules()
    ContraindicationRule.objects.filter(code="topical-retinoid-5-days").update(window_days=7)
    install_default_rules()
    assert ContraindicationRule.objects.get(code="topical-retinoid-5-days").window_days == 7


def test_it_seeds_only_valid_rules_reading_known_facts():
    install_default_rules()
    for rule in ContraindicationRule.objects.all():
        rule.full_clean()
        assert rule.fact in FACTS_BY_CODE


def test_it_splits_pregnancy_into_an_absolute_exosome_rule_and_a_relative_procedure_rule():
    install_default_rules()
    rules = {rule.code: rule for rule in ContraindicationRule.objects.filter(fact="pregnant")}
    assert (rules["pregnancy-exosome"].severity, rules["pregnancy-exosome"].applies_to) == ("absolute", "exosome")
    assert (rules["pregnancy-procedure"].severity, rules["pregnancy-procedure"].applies_to) == ("relative", "procedure")


def test_it_shows_both_positions_on_isotretinoin_with_their_citations():
    install_default_rules()
    rule = ContraindicationRule.objects.get(code="isotretinoin-6-months")
    assert (rule.severity, rule.window_days) == ("relative", 183)
    assert "package insert" in rule.citation.lower()
    assert "JAMA Dermatol" in rule.citation


@pytest.mark.parametrize(
    ("code", "severity", "procedures"),
    [
        ("active-infection", "absolute", []),
        ("active-dermatosis-microneedling", "absolute", ["microneedling"]),
        ("active-dermatosis-laser", "relative", ["fractional_nonablative", "fractional_ablative"]),
        ("bleeding-disorder", "absolute", []),
        ("anticoagulant", "relative", []),
        ("hsv-history-ablative", "relative", ["fractional_ablative"]),
        ("fitzpatrick-iv-vi-lasers", "caution", ["fractional_nonablative", "fractional_ablative"]),
        ("topical-retinoid-5-days", "caution", []),
        ("cancer-within-5-years", "relative", []),
    ],
)
def test_it_follows_the_domain_table(code, severity, procedures):
    install_default_rules()
    rule = ContraindicationRule.objects.get(code=code)
    assert (rule.severity, rule.procedures) == (severity, procedures)


def test_it_installs_three_published_example_protocols_once(clinic_a):
    versions = install_example_protocols(clinic=clinic_a)
    again = install_example_protocols(clinic=clinic_a)
    assert set(versions) == {"microneedling", "fractional_nonablative", "fractional_ablative"}
    assert {code: v.pk for code, v in versions.items()} == {code: v.pk for code, v in again.items()}
    assert Protocol.objects.filter(clinic=clinic_a).count() == 3
    assert ProtocolVersion.objects.filter(protocol__clinic=clinic_a).count() == 3
    assert all(version.status == "published" for version in versions.values())


def test_it_encodes_the_microneedling_timeline(clinic_a):
    version = install_example_protocols(clinic=clinic_a)["microneedling"]
    steps = {step.title: step for step in version.steps.all()}
    serum = steps["At-home exosome serum"]
    assert (serum.day, serum.repeat_count, serum.repeat_every_days) == (1, 7, 1)
    assert serum.product.source == ExosomeProduct.Source.PLANT
    application = steps["In-clinic exosome application"]
    assert (application.timing, application.offset_value, application.product.plated) == ("offset", 0, True)
    assert steps["No retinoids, acids or exfoliation"].avoid_until_day == 5
    assert {step.day for step in version.steps.filter(kind="follow_up_visit")} == {7, 28}


def test_it_starts_the_ablative_antiviral_the_day_before(clinic_a):
    version = install_example_protocols(clinic=clinic_a)["fractional_ablative"]
    antiviral = version.steps.get(title="Start antiviral if prescribed")
    assert (antiviral.day, antiviral.sends_reminder) == (-1, False)
    assert version.steps.get(kind="avoidance").avoid_until_day == 60 == version.length_days


def test_it_builds_example_steps_that_pass_validation(clinic_a):
    install_example_protocols(clinic=clinic_a)
    steps = ProtocolStep.objects.filter(version__protocol__clinic=clinic_a).select_related("version")
    assert steps.count() == 8 + 7 + 8
    for step in steps:
        validate_step(step.as_input(), length_days=step.version.length_days)


@time_machine.travel(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC), tick=False)
def test_it_installs_products_with_a_usable_and_an_expired_lot_once(clinic_a):
    lots = install_example_products(clinic=clinic_a)
    assert install_example_products(clinic=clinic_a) == lots
    assert ExosomeProduct.objects.filter(clinic=clinic_a).count() == 2
    assert {p.source for p in ExosomeProduct.objects.filter(clinic=clinic_a)} == {"human", "plant"}
    today = dt.date(2026, 3, 1)
    usable = set(ProductLot.objects.filter(clinic=clinic_a).usable_on(today))
    assert lots[0] in usable
    assert [lot.lot_number for lot in lots if lot not in usable] == ["ADSC-DEMO-0911-EXPIRED"]


def test_it_keeps_each_clinics_examples_apart(clinic_a, clinic_b):
    a = install_example_protocols(clinic=clinic_a)
    b = install_example_protocols(clinic=clinic_b)
    assert a["microneedling"].pk != b["microneedling"].pk
    assert b["microneedling"].steps.filter(product__clinic=clinic_a).count() == 0


def test_it_reminds_of_each_visit_the_day_before(clinic_a):
    install_example_protocols(clinic=clinic_a)
    visits = ProtocolStep.objects.filter(version__protocol__clinic=clinic_a, kind="follow_up_visit")
    assert visits.count() == 7
    assert {step.remind_minutes_before for step in visits} == {24 * 60}
