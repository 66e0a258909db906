"""The contraindication screening engine: a pure function of answers, rules and dates.

Nothing here touches the database or the clock, so the same inputs always give
the same outcome and the engine can be property-tested.  Rules are read through
their attributes only (``ContraindicationRule`` rows or ``RuleSpec`` values
both work).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from protocols.facts import FACTS, FactType

CLEAR = "clear"
CAUTION = "caution"
NEEDS_OVERRIDE = "needs_override"
BLOCKED = "blocked"

#: outcomes from least to most severe
OUTCOME_ORDER: tuple[str, ...] = (CLEAR, CAUTION, NEEDS_OVERRIDE, BLOCKED)

#: what each rule severity does to the outcome
SEVERITY_OUTCOME: dict[str, str] = {"caution": CAUTION, "relative": NEEDS_OVERRIDE, "absolute": BLOCKED}

# Same names as ContraindicationRule.Condition / AppliesTo; repeated here so the
# engine does not import the models module.
IS_TRUE = "is_true"
WITHIN_DAYS = "within_days"
IN_SET = "in_set"
APPLIES_TO_EXOSOME = "exosome"

STALE_INTAKE_CODE = "reconfirm-intake"
UNANSWERED_CODE = "unanswered"

#: Fact types whose empty answer is a gap. An empty date means "never" (the
#: questions say "empty if never"), and text facts are free notes.
GAP_FACT_TYPES = frozenset({FactType.BOOLEAN, FactType.CHOICE})


class RuleLike(Protocol):
    code: str
    fact: str
    condition: str
    window_days: int | None
    values: Any
    procedures: Any
    applies_to: str
    severity: str
    message: str
    mitigation: str
    citation: str
    is_active: bool


@dataclass(frozen=True)
class RuleSpec:
    """A rule as a plain value, for tests and for callers without database rows."""

    code: str
    fact: str
    severity: str
    message: str
    condition: str = IS_TRUE
    window_days: int | None = None
    values: tuple[str, ...] = ()
    procedures: tuple[str, ...] = ()
    applies_to: str = "procedure"
    mitigation: str = ""
    citation: str = ""
    is_active: bool = True


@dataclass(frozen=True)
class Finding:
    rule_code: str
    severity: str
    message: str
    mitigation: str
    citation: str
    fact: str
    answer: Any
    applies_to: str = "procedure"
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScreeningResult:
    outcome: str
    findings: tuple[Finding, ...]

    def findings_as_dicts(self) -> list[dict[str, Any]]:
        return [finding.as_dict() for finding in self.findings]


def outcome_rank(outcome: str) -> int:
    return OUTCOME_ORDER.index(outcome)


def outcome_for(findings: Iterable[Finding]) -> str:
    """The most severe outcome any finding calls for (``clear`` when there are none)."""
    ranks = [outcome_rank(SEVERITY_OUTCOME[finding.severity]) for finding in findings]
    return OUTCOME_ORDER[max(ranks, default=0)]


def rule_applies(rule: RuleLike, *, procedure: str, exosome_applied: bool) -> bool:
    """Is ``rule`` about this procedure (and, for exosome rules, is an exosome applied)?"""
    if not rule.is_active:
        return False
    if rule.procedures and procedure not in rule.procedures:
        return False
    return rule.applies_to != APPLIES_TO_EXOSOME or exosome_applied


def parse_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def is_unanswered(answer: Any) -> bool:
    return answer is None or answer == ""


def evaluate_rule(rule: RuleLike, answer: Any, *, planned_for: dt.date) -> tuple[bool, str]:
    """Whether ``answer`` triggers ``rule``, and a short explanation when it does.

    An unanswered fact (None or "") never triggers a rule; ``screen`` reports
    unanswered yes/no and choice facts in one finding of their own.
    """
    if is_unanswered(answer):
        return False, ""
    if rule.condition == IS_TRUE:
        return answer is True, ""
    if rule.condition == IN_SET:
        return str(answer) in {str(value) for value in (rule.values or ())}, ""
    if rule.condition == WITHIN_DAYS:
        return _within_window(rule, answer, planned_for=planned_for)
    raise ValueError(f"Rule {rule.code!r} has an unknown condition {rule.condition!r}")


def _within_window(rule: RuleLike, answer: Any, *, planned_for: dt.date) -> tuple[bool, str]:
    when = parse_date(answer)
    if when is None or rule.window_days is None:
        return False, ""
    days_before = (planned_for - when).days
    # "Within 180 days" means the procedure is less than 180 days after the
    # date: on day 180 the wait is over. A date after the planned procedure
    # (e.g. a procedure re-screened for an earlier date) is inside the window.
    if days_before < rule.window_days:
        return True, f"{days_before} days before the planned procedure (window {rule.window_days} days)"
    return False, ""


def stale_intake_finding(*, effective_on: dt.date | None, planned_for: dt.date, max_age_days: int) -> Finding | None:
    """A "re-confirm intake" finding when the answers are too old to count on ``planned_for``."""
    if effective_on is None:
        return Finding(
            rule_code=STALE_INTAKE_CODE, severity="relative",
            message="There is no dated intake: take or re-confirm the patient's answers.",
            mitigation="Re-confirm the intake with the patient.", citation="", fact="", answer=None,
        )
    age = (planned_for - effective_on).days
    if age <= max_age_days:
        return None
    return Finding(
        rule_code=STALE_INTAKE_CODE, severity="relative",
        message=f"The intake answers are {age} days old on the planned date (limit {max_age_days} days).",
        mitigation="Re-confirm the intake with the patient.", citation="", fact="",
        answer=effective_on.isoformat(), detail=f"intake effective {effective_on.isoformat()}",
    )


def unanswered_finding(fact_codes: Iterable[str]) -> Finding | None:
    """One "not answered" finding for the yes/no and choice facts an applicable rule reads but nobody answered.

    Relative, so the screening needs a clinician: record the intake again with
    the answers, or override with what the patient said.  The questions are
    listed in the intake's order; the codes go in ``detail``.
    """
    wanted = set(fact_codes)
    facts = [fact for fact in FACTS if fact.code in wanted and fact.type in GAP_FACT_TYPES]
    if not facts:
        return None
    return Finding(
        rule_code=UNANSWERED_CODE, severity="relative",
        message="Not answered on the intake: " + "; ".join(fact.question for fact in facts),
        mitigation="Ask the patient and record the intake again, or override with what they said.",
        citation="", fact="", answer=None, detail="unanswered: " + ", ".join(fact.code for fact in facts),
    )


def screen(
    *,
    answers: Mapping[str, Any],
    intake_effective_on: dt.date | None,
    rules: Iterable[RuleLike],
    procedure: str,
    exosome_applied: bool,
    planned_for: dt.date,
    intake_max_age_days: int,
) -> ScreeningResult:
    """Screen one patient's answers against ``rules`` for a procedure on ``planned_for``.

    Returns the outcome (the most severe finding: absolute → blocked,
    relative → needs_override, caution → caution, none → clear) and every
    finding, most severe first.  Answers older than ``intake_max_age_days``
    on the planned date add a relative "re-confirm intake" finding; yes/no and
    choice questions that an applicable rule reads and the intake left
    unanswered add one relative "not answered" finding (an empty date is an
    answer: "never").
    """
    findings: list[Finding] = []
    unanswered: set[str] = set()
    for rule in rules:
        if not rule_applies(rule, procedure=procedure, exosome_applied=exosome_applied):
            continue
        answer = answers.get(rule.fact)
        if is_unanswered(answer):
            unanswered.add(rule.fact)
        fired, detail = evaluate_rule(rule, answer, planned_for=planned_for)
        if fired:
            findings.append(
                Finding(
                    rule_code=rule.code, severity=rule.severity, message=rule.message,
                    mitigation=rule.mitigation or "", citation=rule.citation or "", fact=rule.fact,
                    answer=answer, applies_to=rule.applies_to, detail=detail,
                )
            )
    stale = stale_intake_finding(
        effective_on=intake_effective_on, planned_for=planned_for, max_age_days=intake_max_age_days
    )
    if stale is not None:
        findings.append(stale)
    gaps = unanswered_finding(unanswered)
    if gaps is not None:
        findings.append(gaps)
    findings.sort(key=lambda finding: (-outcome_rank(SEVERITY_OUTCOME[finding.severity]), finding.rule_code))
    return ScreeningResult(outcome=outcome_for(findings), findings=tuple(findings))
