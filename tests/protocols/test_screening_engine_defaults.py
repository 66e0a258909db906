"""The shipped default rule library (protocols.defaults) through the engine: each rule fires and stays quiet."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols.facts import FACTS, FactType
from protocols.screening import OUTCOME_ORDER, SEVERITY_OUTCOME, UNANSWERED_CODE, RuleSpec, screen

defaults = pytest.importorskip("protocols.defaults")

PLANNED = dt.date(2026, 6, 15)
ALL_PROCEDURES = ("microneedling", "fractional_nonablative", "fractional_ablative")
#: Every yes/no question answered "no", skin type II, every date empty ("never").
NO: dict = {fact.code: False for fact in FACTS if fact.type == FactType.BOOLEAN} | {"fitzpatrick_type": "II"}


def spec(row: dict) -> RuleSpec:
    return RuleSpec(
        code=row["code"], fact=row["fact"], severity=str(row["severity"]), message=row["message"],
        condition=str(row.get("condition", "is_true")), window_days=row.get("window_days"),
        values=tuple(row.get("values") or ()), procedures=tuple(row.get("procedures") or ()),
        applies_to=str(row.get("applies_to", "procedure")), mitigation=row.get("mitigation", ""),
        citation=row.get("citation", ""),
    )


RULES = [spec(row) for row in defaults.DEFAULT_RULES]


def before(days: int) -> str:
    return (PLANNED - dt.timedelta(days=days)).isoformat()


def triggering(rule: RuleSpec) -> object:
    if rule.condition == "within_days":
        return before(rule.window_days - 1)
    if rule.condition == "in_set":
        return rule.values[0]
    return True


def quiet(rule: RuleSpec) -> object:
    if rule.condition == "within_days":
        return before(rule.window_days)
    if rule.condition == "in_set":
        return "I"
    return False


def run(answers: dict, procedure: str):
    return screen(answers=answers, intake_effective_on=PLANNED, rules=RULES, procedure=procedure,
                  exosome_applied=True, planned_for=PLANNED, intake_max_age_days=30)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_it_fires_each_default_rule_for_its_procedures_and_not_on_a_clear_answer(rule):
    for procedure in rule.procedures or ALL_PROCEDURES:
        fired = run({**NO, rule.fact: triggering(rule)}, procedure)
        assert rule.code in {f.rule_code for f in fired.findings}
        assert OUTCOME_ORDER.index(fired.outcome) >= OUTCOME_ORDER.index(SEVERITY_OUTCOME[rule.severity])
        cleared = run({**NO, rule.fact: quiet(rule)}, procedure)
        assert rule.code not in {f.rule_code for f in cleared.findings}
    for procedure in set(ALL_PROCEDURES) - set(rule.procedures or ALL_PROCEDURES):
        assert rule.code not in {f.rule_code for f in run({**NO, rule.fact: triggering(rule)}, procedure).findings}


def test_the_defaults_block_pregnancy_with_exosomes_and_need_an_override_for_hsv_before_ablative():
    assert run({**NO, "pregnant": True}, "microneedling").outcome == "blocked"
    assert run({**NO, "hsv_history": True}, "fractional_ablative").outcome == "needs_override"
    assert run({**NO, "hsv_history": True}, "microneedling").outcome == "clear"
    assert run({**NO, "isotretinoin_last_dose": before(60)}, "microneedling").outcome == "needs_override"


@pytest.mark.parametrize("procedure", ALL_PROCEDURES)
def test_an_intake_answering_every_question_no_screens_clear(procedure):
    assert run(NO, procedure).outcome == "clear"


def test_an_intake_left_on_not_asked_is_not_clear_for_ablative_co2():
    result = run({}, "fractional_ablative")
    assert result.outcome == "needs_override"
    (finding,) = result.findings
    assert finding.rule_code == UNANSWERED_CODE
    assert finding.message.startswith("Not answered on the intake: Active infection in the treatment area")
    assert "Pregnant?; Breastfeeding?" in finding.message
    assert "History of HSV (cold sores)?" in finding.message
    assert "Fitzpatrick skin type" in finding.message
    assert "isotretinoin" not in finding.message  # an empty date means "never"
