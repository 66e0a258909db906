"""The pure screening engine: every default rule of DOMAIN.md, window boundaries, stale intakes, properties."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.facts import FACTS, FactType
from protocols.screening import (
    BLOCKED,
    CAUTION,
    CLEAR,
    IN_SET,
    NEEDS_OVERRIDE,
    OUTCOME_ORDER,
    SEVERITY_OUTCOME,
    STALE_INTAKE_CODE,
    UNANSWERED_CODE,
    WITHIN_DAYS,
    RuleSpec,
    outcome_rank,
    rule_applies,
    screen,
)

MN, NONABL, ABL = "microneedling", "fractional_nonablative", "fractional_ablative"
LASERS = (NONABL, ABL)
ALL = (MN, NONABL, ABL)
PLANNED = dt.date(2026, 6, 15)


def _window(code: str, fact: str, severity: str, days: int, procedures: tuple[str, ...] = ()) -> RuleSpec:
    return RuleSpec(code, fact, severity, f"{fact} within {days} days", condition=WITHIN_DAYS, window_days=days,
                    procedures=procedures)


# The default library of DOMAIN.md, encoded as the engine reads it.
DEFAULT_RULES: tuple[RuleSpec, ...] = (
    RuleSpec("active-infection", "active_infection", "absolute", "Active infection: reschedule until healed."),
    RuleSpec("active-dermatosis-mn", "active_dermatosis", "absolute", "Active dermatosis", procedures=(MN,)),
    RuleSpec("active-dermatosis-laser", "active_dermatosis", "relative", "Active dermatosis", procedures=LASERS),
    RuleSpec("suspicious-lesion", "suspicious_lesion", "absolute", "Suspicious lesion"),
    RuleSpec("chemo-radiotherapy", "chemo_or_radiotherapy", "absolute", "Ongoing chemo/radiotherapy"),
    _window("cancer-5y", "cancer_diagnosis_date", "relative", 5 * 365 + 1),
    RuleSpec("pregnancy-exosome", "pregnant", "absolute", "No safety data", applies_to="exosome"),
    RuleSpec("pregnancy-procedure", "pregnant", "relative", "No safety data"),
    RuleSpec("breastfeeding", "breastfeeding", "relative", "No safety data"),
    RuleSpec("immunocompromise", "immunocompromised", "relative", "Immunocompromise"),
    RuleSpec("allergy", "allergy_relevant", "relative", "Allergy", mitigation="Patch test first."),
    _window("isotretinoin-6m", "isotretinoin_last_dose", "relative", 180, ALL),
    _window("topical-retinoid", "topical_retinoid_last_use", "caution", 5),
    RuleSpec("hsv-ablative", "hsv_history", "relative", "HSV history", procedures=(ABL,),
             mitigation="Start antiviral prophylaxis."),
    RuleSpec("anticoagulant", "anticoagulant", "relative", "Bruising and bleeding"),
    RuleSpec("bleeding-disorder", "bleeding_disorder", "absolute", "Bleeding disorder"),
    RuleSpec("keloid", "keloid_history", "relative", "Keloid history"),
    RuleSpec("diabetes", "diabetes_uncontrolled", "relative", "Impaired healing"),
    _window("recent-tan", "recent_tan_date", "caution", 28, LASERS),
    RuleSpec("fitzpatrick-iv-vi", "fitzpatrick_type", "caution", "PIH risk", condition=IN_SET,
             values=("IV", "V", "VI"), procedures=LASERS),
    RuleSpec("photosensitising", "photosensitising_medication", "caution", "Photosensitising", procedures=LASERS),
    _window("recent-peel", "recent_peel_date", "caution", 30),
    _window("recent-neurotoxin", "recent_neurotoxin_date", "caution", 14),
    _window("recent-filler", "recent_filler_date", "caution", 28),
)


#: Every yes/no question answered "no" and a skin type no default rule reads: an intake with no gaps.
NO: dict = {fact.code: False for fact in FACTS if fact.type == FactType.BOOLEAN} | {"fitzpatrick_type": "II"}


def run(answers: dict, *, procedure: str = MN, exosome: bool = True, rules=DEFAULT_RULES,
        intake_on: dt.date | None = PLANNED, planned: dt.date = PLANNED, max_age: int = 30):
    return screen(answers=answers, intake_effective_on=intake_on, rules=rules, procedure=procedure,
                  exosome_applied=exosome, planned_for=planned, intake_max_age_days=max_age)


def days_before(n: int) -> str:
    return (PLANNED - dt.timedelta(days=n)).isoformat()


def codes(result) -> set[str]:
    return {f.rule_code for f in result.findings}


def gaps(result) -> list[str]:
    """The fact codes the "not answered" finding lists."""
    found = [f for f in result.findings if f.rule_code == UNANSWERED_CODE]
    return found[0].detail.removeprefix("unanswered: ").split(", ") if found else []


# --- every default rule fires, and only where it should ---------------------------------

BOOLEAN_CASES = [
    # fact, procedure, exosome applied, expected outcome, expected rule code
    ("active_infection", MN, True, BLOCKED, "active-infection"),
    ("active_infection", ABL, False, BLOCKED, "active-infection"),
    ("active_dermatosis", MN, True, BLOCKED, "active-dermatosis-mn"),
    ("active_dermatosis", NONABL, True, NEEDS_OVERRIDE, "active-dermatosis-laser"),
    ("active_dermatosis", ABL, True, NEEDS_OVERRIDE, "active-dermatosis-laser"),
    ("suspicious_lesion", NONABL, True, BLOCKED, "suspicious-lesion"),
    ("chemo_or_radiotherapy", MN, False, BLOCKED, "chemo-radiotherapy"),
    ("pregnant", MN, True, BLOCKED, "pregnancy-exosome"),
    ("pregnant", MN, False, NEEDS_OVERRIDE, "pregnancy-procedure"),
    ("breastfeeding", NONABL, True, NEEDS_OVERRIDE, "breastfeeding"),
    ("immunocompromised", ABL, True, NEEDS_OVERRIDE, "immunocompromise"),
    ("allergy_relevant", MN, True, NEEDS_OVERRIDE, "allergy"),
    ("hsv_history", ABL, True, NEEDS_OVERRIDE, "hsv-ablative"),
    ("anticoagulant", MN, True, NEEDS_OVERRIDE, "anticoagulant"),
    ("bleeding_disorder", MN, True, BLOCKED, "bleeding-disorder"),
    ("keloid_history", NONABL, True, NEEDS_OVERRIDE, "keloid"),
    ("diabetes_uncontrolled", MN, True, NEEDS_OVERRIDE, "diabetes"),
    ("photosensitising_medication", NONABL, True, CAUTION, "photosensitising"),
]


@pytest.mark.parametrize(("fact", "procedure", "exosome", "outcome", "code"), BOOLEAN_CASES)
def test_it_fires_each_yes_no_rule_on_yes_and_not_on_no(fact, procedure, exosome, outcome, code):
    fired = run({**NO, fact: True}, procedure=procedure, exosome=exosome)
    assert fired.outcome == outcome
    assert code in codes(fired)
    finding = next(f for f in fired.findings if f.rule_code == code)
    assert finding.fact == fact
    assert finding.answer is True
    quiet = run({**NO, fact: False}, procedure=procedure, exosome=exosome)
    assert quiet.outcome == CLEAR
    assert quiet.findings == ()


@pytest.mark.parametrize(
    ("fact", "procedure"),
    [("hsv_history", MN), ("hsv_history", NONABL), ("photosensitising_medication", MN)],
)
def test_it_ignores_rules_for_other_procedures(fact, procedure):
    assert run({**NO, fact: True}, procedure=procedure).outcome == CLEAR


def test_it_applies_exosome_rules_only_when_an_exosome_is_applied():
    with_exosome = run({**NO, "pregnant": True}, exosome=True)
    without = run({**NO, "pregnant": True}, exosome=False)
    assert with_exosome.outcome == BLOCKED
    assert "pregnancy-exosome" in codes(with_exosome)
    assert without.outcome == NEEDS_OVERRIDE
    assert codes(without) == {"pregnancy-procedure"}


def test_it_carries_mitigation_and_message_into_the_finding():
    result = run({**NO, "hsv_history": True}, procedure=ABL)
    (finding,) = result.findings
    assert finding.mitigation == "Start antiviral prophylaxis."
    assert finding.message == "HSV history"
    assert finding.severity == "relative"


WINDOW_CASES = [
    # fact, window in days, procedure, outcome when inside
    ("isotretinoin_last_dose", 180, MN, NEEDS_OVERRIDE),
    ("isotretinoin_last_dose", 180, ABL, NEEDS_OVERRIDE),
    ("topical_retinoid_last_use", 5, MN, CAUTION),
    ("cancer_diagnosis_date", 5 * 365 + 1, MN, NEEDS_OVERRIDE),
    ("recent_tan_date", 28, NONABL, CAUTION),
    ("recent_peel_date", 30, MN, CAUTION),
    ("recent_neurotoxin_date", 14, MN, CAUTION),
    ("recent_filler_date", 28, ABL, CAUTION),
]


@pytest.mark.parametrize(("fact", "window", "procedure", "outcome"), WINDOW_CASES)
def test_it_fires_date_rules_inside_the_window_and_not_on_or_after_its_end(fact, window, procedure, outcome):
    assert run({**NO, fact: days_before(window - 1)}, procedure=procedure).outcome == outcome
    assert run({**NO, fact: days_before(0)}, procedure=procedure).outcome == outcome
    assert run({**NO, fact: days_before(window)}, procedure=procedure).outcome == CLEAR
    assert run({**NO, fact: days_before(window + 1)}, procedure=procedure).outcome == CLEAR


def test_it_counts_isotretinoin_179_days_as_too_recent_and_181_as_fine():
    recent = run({**NO, "isotretinoin_last_dose": days_before(179)})
    assert recent.outcome == NEEDS_OVERRIDE
    assert "179 days" in recent.findings[0].detail
    assert run({**NO, "isotretinoin_last_dose": days_before(181)}).outcome == CLEAR


def test_it_evaluates_windows_against_the_planned_date_not_the_intake_date():
    answers = {"isotretinoin_last_dose": "2026-01-01"}
    rules = [r for r in DEFAULT_RULES if r.code == "isotretinoin-6m"]
    early = screen(answers=answers, intake_effective_on=dt.date(2026, 5, 1), rules=rules, procedure=MN,
                   exosome_applied=True, planned_for=dt.date(2026, 6, 29), intake_max_age_days=90)
    late = screen(answers=answers, intake_effective_on=dt.date(2026, 5, 1), rules=rules, procedure=MN,
                  exosome_applied=True, planned_for=dt.date(2026, 6, 30), intake_max_age_days=90)
    assert early.outcome == NEEDS_OVERRIDE  # 179 days
    assert late.outcome == CLEAR  # 180 days


def test_it_cautions_lasers_for_fitzpatrick_iv_to_vi_only():
    for skin_type in ("IV", "V", "VI"):
        assert run({**NO, "fitzpatrick_type": skin_type}, procedure=NONABL).outcome == CAUTION
    for skin_type in ("I", "II", "III"):
        assert run({**NO, "fitzpatrick_type": skin_type}, procedure=NONABL).outcome == CLEAR
    assert run({**NO, "fitzpatrick_type": "VI"}, procedure=MN).outcome == CLEAR


def test_it_reports_every_finding_most_severe_first():
    result = run({**NO, "pregnant": True, "recent_peel_date": days_before(3), "anticoagulant": True})
    assert result.outcome == BLOCKED
    severities = [f.severity for f in result.findings]
    assert severities == ["absolute", "relative", "relative", "caution"]


def test_it_skips_inactive_rules():
    inactive = RuleSpec("off", "pregnant", "absolute", "x", is_active=False)
    assert run({**NO, "pregnant": True}, rules=[inactive]).outcome == CLEAR
    assert run(NO, rules=DEFAULT_RULES).outcome == CLEAR


# --- unanswered questions ------------------------------------------------------------------


def without(*codes_: str) -> dict:
    return {code: value for code, value in NO.items() if code not in codes_}


def test_an_unanswered_yes_no_question_needs_an_override_with_one_finding_listing_it():
    result = run(without("breastfeeding", "pregnant"), procedure=ABL)
    assert result.outcome == NEEDS_OVERRIDE
    (finding,) = result.findings
    assert finding.rule_code == UNANSWERED_CODE
    assert finding.severity == "relative"
    # In the intake's order (pregnant before breastfeeding), not the order given.
    assert finding.message == "Not answered on the intake: Pregnant?; Breastfeeding?"
    assert finding.mitigation == "Ask the patient and record the intake again, or override with what they said."
    assert finding.detail == "unanswered: pregnant, breastfeeding"
    assert (finding.fact, finding.answer) == ("", None)


def test_an_empty_intake_is_not_clear():
    result = run({}, procedure=ABL)
    assert result.outcome == NEEDS_OVERRIDE
    (finding,) = result.findings
    asked = [fact.question for fact in FACTS if fact.type in (FactType.BOOLEAN, FactType.CHOICE)]
    assert finding.message == "Not answered on the intake: " + "; ".join(asked)


def test_none_and_empty_string_are_both_unanswered():
    assert codes(run({**NO, "pregnant": None})) == {UNANSWERED_CODE}
    assert codes(run({**NO, "pregnant": ""})) == {UNANSWERED_CODE}


def test_an_unanswered_skin_type_is_a_gap_only_where_a_rule_reads_it():
    gap = run(without("fitzpatrick_type"), procedure=NONABL)
    assert gap.outcome == NEEDS_OVERRIDE
    assert gap.findings[0].message == "Not answered on the intake: Fitzpatrick skin type"
    assert run(without("fitzpatrick_type"), procedure=MN).outcome == CLEAR


def test_an_empty_date_means_never_not_a_gap():
    assert run({**NO, "isotretinoin_last_dose": ""}).outcome == CLEAR
    assert run({**NO, "cancer_diagnosis_date": None}, procedure=ABL).outcome == CLEAR
    dates = [fact.code for fact in FACTS if fact.type == FactType.DATE]
    assert dates and not set(dates) & set(NO)  # NO leaves every date empty
    for procedure in ALL:
        assert run(NO, procedure=procedure).outcome == CLEAR


@pytest.mark.parametrize(
    ("fact", "procedure"),
    [("hsv_history", MN), ("hsv_history", NONABL), ("photosensitising_medication", MN)],
)
def test_a_question_read_only_by_rules_for_other_procedures_is_not_a_gap(fact, procedure):
    assert run(without(fact), procedure=procedure).outcome == CLEAR
    assert UNANSWERED_CODE not in codes(run(without(fact), procedure=procedure, intake_on=None))


def test_a_question_read_only_by_an_exosome_rule_is_a_gap_only_when_an_exosome_is_applied():
    rules = [RuleSpec("pregnancy-exosome", "pregnant", "absolute", "No safety data", applies_to="exosome")]
    assert run(without("pregnant"), rules=rules, exosome=False).outcome == CLEAR
    assert codes(run(without("pregnant"), rules=rules, exosome=True)) == {UNANSWERED_CODE}


def test_a_question_read_only_by_an_inactive_rule_is_not_a_gap():
    inactive = RuleSpec("off", "pregnant", "absolute", "x", is_active=False)
    assert run({}, rules=[inactive]).outcome == CLEAR


def test_a_gap_does_not_hide_a_block_or_the_other_findings():
    result = run({"active_infection": True, "anticoagulant": True})
    assert result.outcome == BLOCKED
    assert codes(result) == {"active-infection", "anticoagulant", UNANSWERED_CODE}
    (gap,) = [f for f in result.findings if f.rule_code == UNANSWERED_CODE]
    assert "infection" not in gap.message
    assert "anticoagulant" not in gap.detail


# --- stale intakes ------------------------------------------------------------------------


def test_it_needs_an_override_to_reconfirm_an_intake_older_than_the_limit():
    stale = run(NO, intake_on=PLANNED - dt.timedelta(days=31), max_age=30)
    assert stale.outcome == NEEDS_OVERRIDE
    (finding,) = stale.findings
    assert finding.rule_code == STALE_INTAKE_CODE
    assert "re-confirm" in finding.mitigation.lower()
    assert run(NO, intake_on=PLANNED - dt.timedelta(days=30), max_age=30).outcome == CLEAR


def test_it_measures_intake_age_on_the_planned_date():
    intake_on = dt.date(2026, 6, 1)
    assert run(NO, intake_on=intake_on, planned=dt.date(2026, 7, 1), max_age=30).outcome == CLEAR
    assert run(NO, intake_on=intake_on, planned=dt.date(2026, 7, 2), max_age=30).outcome == NEEDS_OVERRIDE


def test_it_treats_an_undated_intake_as_needing_reconfirmation():
    assert run(NO, intake_on=None).outcome == NEEDS_OVERRIDE


def test_a_stale_intake_does_not_hide_a_block():
    assert run({**NO, "active_infection": True}, intake_on=PLANNED - dt.timedelta(days=400)).outcome == BLOCKED


# --- properties --------------------------------------------------------------------------------


def _answer_strategy(fact) -> st.SearchStrategy:
    if fact.type == FactType.BOOLEAN:
        return st.booleans()
    if fact.type == FactType.DATE:
        return st.integers(min_value=-5, max_value=3000).map(days_before)
    if fact.type == FactType.CHOICE:
        return st.sampled_from([code for code, _ in fact.choices])
    return st.text(max_size=5)


answers_strategy = st.fixed_dictionaries({}, optional={fact.code: _answer_strategy(fact) for fact in FACTS})
procedures = st.sampled_from(ALL)
ages = st.integers(min_value=0, max_value=90)


@settings(max_examples=200, deadline=None)
@given(answers=answers_strategy, procedure=procedures, exosome=st.booleans(), age=ages)
def test_the_outcome_is_the_most_severe_finding(answers, procedure, exosome, age):
    result = run(answers, procedure=procedure, exosome=exosome, intake_on=PLANNED - dt.timedelta(days=age))
    expected = max((outcome_rank(SEVERITY_OUTCOME[f.severity]) for f in result.findings), default=0)
    assert result.outcome == OUTCOME_ORDER[expected]
    assert (result.outcome == CLEAR) == (result.findings == ())


@settings(max_examples=200, deadline=None)
@given(answers=answers_strategy, extra=st.data(), procedure=procedures, exosome=st.booleans())
def test_adding_an_answer_never_takes_away_a_rule_finding(answers, extra, procedure, exosome):
    unanswered = [fact for fact in FACTS if fact.code not in answers]
    if not unanswered:
        return
    fact = extra.draw(st.sampled_from(unanswered))
    value = extra.draw(_answer_strategy(fact))
    before = run(answers, procedure=procedure, exosome=exosome)
    after = run({**answers, fact.code: value}, procedure=procedure, exosome=exosome)
    assert codes(before) - {UNANSWERED_CODE} <= codes(after)
    if fact.type == FactType.DATE:  # an empty date is an answer ("never"), so no gap closes
        assert outcome_rank(after.outcome) >= outcome_rank(before.outcome)


#: Intakes with every yes/no and choice question answered (dates empty or not).
complete_answers_strategy = st.fixed_dictionaries(
    {fact.code: _answer_strategy(fact) for fact in FACTS if fact.type != FactType.DATE},
    optional={fact.code: _answer_strategy(fact) for fact in FACTS if fact.type == FactType.DATE},
)


@settings(max_examples=200, deadline=None)
@given(answers=st.one_of(answers_strategy, complete_answers_strategy), extra=st.data(), procedure=procedures,
       exosome=st.booleans())
def test_leaving_a_question_unanswered_is_never_less_severe_than_answering_no(answers, extra, procedure, exosome):
    fact = extra.draw(st.sampled_from([fact for fact in FACTS if fact.type == FactType.BOOLEAN]))
    rest = {code: value for code, value in answers.items() if code != fact.code}
    unanswered = run(rest, procedure=procedure, exosome=exosome)
    answered_no = run({**rest, fact.code: False}, procedure=procedure, exosome=exosome)
    assert outcome_rank(unanswered.outcome) >= outcome_rank(answered_no.outcome)
    read = any(rule.fact == fact.code and rule_applies(rule, procedure=procedure, exosome_applied=exosome)
               for rule in DEFAULT_RULES)
    assert (fact.code in gaps(unanswered)) == read
    if read:
        assert outcome_rank(unanswered.outcome) >= outcome_rank(NEEDS_OVERRIDE)


@settings(max_examples=100, deadline=None)
@given(answers=complete_answers_strategy, extra=st.data(), procedure=procedures, exosome=st.booleans())
def test_adding_an_answer_to_an_intake_without_gaps_never_makes_the_outcome_less_severe(
    answers, extra, procedure, exosome
):
    assert UNANSWERED_CODE not in codes(run(answers, procedure=procedure, exosome=exosome))
    unanswered = [fact for fact in FACTS if fact.code not in answers]
    if not unanswered:
        return
    fact = extra.draw(st.sampled_from(unanswered))
    before = run(answers, procedure=procedure, exosome=exosome)
    after = run({**answers, fact.code: extra.draw(_answer_strategy(fact))}, procedure=procedure, exosome=exosome)
    assert outcome_rank(after.outcome) >= outcome_rank(before.outcome)
    assert codes(before) <= codes(after)


@settings(max_examples=150, deadline=None)
@given(answers=answers_strategy, rule=st.sampled_from(DEFAULT_RULES), procedure=procedures)
def test_adding_a_rule_never_makes_the_outcome_less_severe(answers, rule, procedure):
    without = [r for r in DEFAULT_RULES if r is not rule]
    before = run(answers, rules=without, procedure=procedure)
    after = run(answers, rules=[*without, rule], procedure=procedure)
    assert outcome_rank(after.outcome) >= outcome_rank(before.outcome)


@settings(max_examples=100, deadline=None)
@given(answers=answers_strategy, procedure=procedures, exosome=st.booleans())
def test_the_engine_is_deterministic_and_pure(answers, procedure, exosome):
    snapshot = dict(answers)
    first = run(answers, procedure=procedure, exosome=exosome)
    second = run(answers, procedure=procedure, exosome=exosome)
    assert first == second
    assert answers == snapshot
