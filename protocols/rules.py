"""Which contraindication rules a protocol version is screened against."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.models import ContraindicationRule, ProtocolVersion

if TYPE_CHECKING:
    from clinic.models import Clinic


def _for_procedure(rule: ContraindicationRule, procedure: str) -> bool:
    # Procedures are a JSON list; filtered in Python because SQLite cannot
    # query inside JSON arrays, and the library is a few dozen rows.
    return not rule.procedures or procedure in rule.procedures


def _defaults(procedure: str, *, clinic_id: int | None) -> list[ContraindicationRule]:
    # Active or not: an inactive clinic rule still replaces the default of its code.
    by_code: dict[str, ContraindicationRule] = {
        rule.code: rule for rule in ContraindicationRule.objects.filter(clinic__isnull=True)
    }
    if clinic_id is not None:
        by_code.update({rule.code: rule for rule in ContraindicationRule.objects.filter(clinic_id=clinic_id)})
    return [rule for rule in by_code.values() if _for_procedure(rule, procedure)]


def default_rule_ids(version: ProtocolVersion) -> set[int]:
    """The rules that apply to ``version`` without being added: its procedure's defaults, as the protocol's
    clinic has replaced them, and the clinic's own rules for the procedure (active ones only)."""
    return {
        rule.pk for rule in _defaults(version.procedure, clinic_id=version.protocol.clinic_id) if rule.is_active
    }


def rules_for_version(version: ProtocolVersion, *, clinic: Clinic | None = None) -> list[ContraindicationRule]:
    """The active rules a screening for ``version`` evaluates.

    The default library (rules with no clinic) for the version's procedure,
    each replaced by the clinic's rule of the same code when there is one
    (an inactive clinic rule so switches the default off), plus the clinic's
    own rules for the procedure, plus the version's ``added_rules``, minus its
    ``removed_rules`` (by code, so removing a default also removes the
    clinic's replacement of it).  ``clinic`` defaults to the protocol's clinic;
    pass the patient's clinic for a shared template protocol.
    """
    clinic_id = clinic.pk if clinic is not None else version.protocol.clinic_id
    chosen = _defaults(version.procedure, clinic_id=clinic_id)

    removed = list(version.removed_rules.all()) if version.pk else []
    removed_codes = {rule.code for rule in removed}
    removed_ids = {rule.pk for rule in removed}
    chosen = [rule for rule in chosen if rule.code not in removed_codes]
    if version.pk:
        chosen_ids = {rule.pk for rule in chosen}
        chosen += [
            rule for rule in version.added_rules.all() if rule.pk not in chosen_ids and rule.pk not in removed_ids
        ]
    return sorted((rule for rule in chosen if rule.is_active), key=lambda rule: (rule.code, rule.pk))
