"""The seeded defaults: the contraindication rule library and example protocols, products and lots.

This is content, not code: every clinic may replace a default rule (a clinic
rule with the same code), add its own, and edit its protocols.  Where the
literature disagrees, a rule states both positions and their sources and the
clinician decides.  Every installer is idempotent: running it again creates
nothing new and never overwrites what a person has edited since.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from clinic.audit import record_event
from protocols import versioning
from protocols.models import (
    ContraindicationRule,
    ExosomeProduct,
    Procedure,
    ProductLot,
    Protocol,
    ProtocolStep,
    ProtocolVersion,
    Severity,
    StepKind,
)

ALL: list[str] = []  # an empty procedure list means every procedure
LASERS = [Procedure.FRACTIONAL_NONABLATIVE.value, Procedure.FRACTIONAL_ABLATIVE.value]
IS_TRUE = ContraindicationRule.Condition.IS_TRUE
WITHIN_DAYS = ContraindicationRule.Condition.WITHIN_DAYS
IN_SET = ContraindicationRule.Condition.IN_SET
EXOSOME = ContraindicationRule.AppliesTo.EXOSOME

# One dict per rule; the keys are ContraindicationRule fields.
DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {
        "code": "active-infection", "fact": "active_infection", "procedures": ALL, "severity": Severity.ABSOLUTE,
        "message": "Active infection in the treatment area (bacterial, fungal or an active HSV lesion).",
        "mitigation": "Reschedule until the area has healed.",
    },
    {
        "code": "active-dermatosis-microneedling", "fact": "active_dermatosis",
        "procedures": [Procedure.MICRONEEDLING.value], "severity": Severity.ABSOLUTE,
        "message": "Active dermatosis in the area (eczema or psoriasis flare, inflammatory acne, rosacea): "
                   "microneedling drives needles through inflamed skin.",
        "mitigation": "Treat the flare and reschedule.",
    },
    {
        "code": "active-dermatosis-laser", "fact": "active_dermatosis", "procedures": LASERS,
        "severity": Severity.RELATIVE,
        "message": "Active dermatosis in the area (eczema or psoriasis flare, inflammatory acne, rosacea).",
        "mitigation": "Clinician judges whether the area can be treated or the session is postponed.",
    },
    {
        "code": "suspicious-lesion", "fact": "suspicious_lesion", "procedures": ALL, "severity": Severity.ABSOLUTE,
        "message": "Suspicious or malignant lesion in the treatment area.",
        "mitigation": "Refer for diagnosis; do not treat over the lesion.",
    },
    {
        "code": "chemo-or-radiotherapy", "fact": "chemo_or_radiotherapy", "procedures": ALL,
        "severity": Severity.ABSOLUTE, "message": "Ongoing chemotherapy or radiotherapy.",
        "mitigation": "Defer until treatment has ended and the oncology team agrees.",
    },
    {
        "code": "cancer-within-5-years", "fact": "cancer_diagnosis_date", "condition": WITHIN_DAYS,
        "window_days": 5 * 365 + 1, "procedures": ALL, "severity": Severity.RELATIVE,
        "message": "Active cancer or cancer within the last 5 years. Exosomes modulate cell signalling and their "
                   "long-term safety is unknown.",
        "mitigation": "Obtain oncology clearance before treating. The 5-year window is a default; edit it per clinic.",
    },
    {
        "code": "pregnancy-exosome", "fact": "pregnant", "applies_to": EXOSOME, "procedures": ALL,
        "severity": Severity.ABSOLUTE,
        "message": "Pregnancy: no safety data for exosome preparations. Do not apply exosomes.",
        "mitigation": "Defer the exosome application until after pregnancy and breastfeeding.",
    },
    {
        "code": "pregnancy-procedure", "fact": "pregnant", "procedures": ALL, "severity": Severity.RELATIVE,
        "message": "Pregnancy: no safety data for elective resurfacing during pregnancy.",
        "mitigation": "Usually deferred; a clinician may override with a written reason.",
    },
    {
        "code": "breastfeeding", "fact": "breastfeeding", "procedures": ALL, "severity": Severity.RELATIVE,
        "message": "Breastfeeding: no safety data.",
        "mitigation": "Discuss and document; consider deferring the exosome application.",
    },
    {
        "code": "immunocompromise", "fact": "immunocompromised", "procedures": ALL, "severity": Severity.RELATIVE,
        "message": "Immunocompromise or immunosuppressive therapy: higher risk of infection and poor healing.",
    },
    {
        "code": "allergy", "fact": "allergy_relevant", "procedures": ALL, "severity": Severity.RELATIVE,
        "message": "Allergy to a product ingredient, topical anaesthetic or needle metal.",
        "mitigation": "Patch test first; choose an alternative anaesthetic or needle material.",
    },
    {
        "code": "isotretinoin-6-months", "fact": "isotretinoin_last_dose", "condition": WITHIN_DAYS,
        "window_days": 183, "procedures": ALL, "severity": Severity.RELATIVE,
        "message": "Oral isotretinoin within the last 6 months. Sources disagree: the package insert says to wait "
                   "at least 6 months before resurfacing; a 2017 expert consensus found insufficient evidence to "
                   "delay microneedling or fractional laser procedures. Fully ablative (non-fractional) "
                   "resurfacing remains contraindicated.",
        "mitigation": "Clinician decides and documents which position is followed; consider test spots and "
                      "conservative settings.",
        "citation": "Isotretinoin package insert (prescribing information): avoid dermabrasion and laser "
                    "resurfacing during and for 6 months after therapy. — Spring LK, Krakowski AC, Alam M, et al. "
                    "Isotretinoin and timing of procedural interventions: a systematic review with consensus "
                    "recommendations. JAMA Dermatol. 2017;153(8):802-809 (insufficient evidence to delay "
                    "fractional ablative and non-ablative laser procedures and microneedling).",
    },
    {
        "code": "topical-retinoid-5-days", "fact": "topical_retinoid_last_use", "condition": WITHIN_DAYS,
        "window_days": 5, "procedures": ALL, "severity": Severity.CAUTION,
        "message": "Topical retinoid or exfoliating acid within the last 5 days: more irritation after the "
                   "procedure. Stop-times vary from 1 to 14 days between clinics; edit the window per protocol.",
        "mitigation": "Confirm the patient has stopped; consider a gentler setting.",
    },
    {
        "code": "hsv-history-ablative", "fact": "hsv_history", "procedures": [Procedure.FRACTIONAL_ABLATIVE.value],
        "severity": Severity.RELATIVE,
        "message": "History of cold sores (HSV) before ablative resurfacing (and any perioral work): risk of "
                   "HSV reactivation.",
        "mitigation": "Start antiviral prophylaxis, e.g. valacyclovir from the day before or the day of the "
                      "procedure for 10–14 days, as prescribed.",
    },
    {
        "code": "anticoagulant", "fact": "anticoagulant", "procedures": ALL, "severity": Severity.RELATIVE,
        "message": "Anticoagulant or antiplatelet medication: more bruising and bleeding.",
        "mitigation": "Do not stop prescribed medication without the prescriber; adjust depth and expectations.",
    },
    {
        "code": "bleeding-disorder", "fact": "bleeding_disorder", "procedures": ALL, "severity": Severity.ABSOLUTE,
        "message": "Bleeding disorder.",
    },
    {
        "code": "keloid-history", "fact": "keloid_history", "procedures": ALL, "severity": Severity.RELATIVE,
        "message": "History of keloid or hypertrophic scarring.",
        "mitigation": "Test spot first; conservative settings.",
    },
    {
        "code": "uncontrolled-diabetes", "fact": "diabetes_uncontrolled", "procedures": ALL,
        "severity": Severity.RELATIVE, "message": "Uncontrolled diabetes: impaired healing.",
    },
    {
        "code": "recent-tan-lasers", "fact": "recent_tan_date", "condition": WITHIN_DAYS, "window_days": 28,
        "procedures": LASERS, "severity": Severity.CAUTION,
        "message": "Tan or intense sun exposure within the last 2–4 weeks (default window 28 days): higher PIH risk.",
        "mitigation": "Lower density; consider postponing.",
    },
    {
        "code": "fitzpatrick-iv-vi-lasers", "fact": "fitzpatrick_type", "condition": IN_SET,
        "values": ["IV", "V", "VI"], "procedures": LASERS, "severity": Severity.CAUTION,
        "message": "Fitzpatrick skin type IV–VI: higher risk of post-inflammatory hyperpigmentation.",
        "mitigation": "Lower density and energy; consider pre-treatment and strict sun protection.",
    },
    {
        "code": "photosensitising-medication-lasers", "fact": "photosensitising_medication", "procedures": LASERS,
        "severity": Severity.CAUTION, "message": "Photosensitising medication.",
    },
    {
        "code": "recent-peel", "fact": "recent_peel_date", "condition": WITHIN_DAYS, "window_days": 30,
        "procedures": ALL, "severity": Severity.CAUTION, "message": "Chemical peel in the area within the last 30 days.",
    },
    {
        "code": "recent-neurotoxin", "fact": "recent_neurotoxin_date", "condition": WITHIN_DAYS, "window_days": 14,
        "procedures": ALL, "severity": Severity.CAUTION,
        "message": "Neurotoxin injection in the area within the last 14 days.",
    },
    {
        "code": "recent-filler", "fact": "recent_filler_date", "condition": WITHIN_DAYS, "window_days": 28,
        "procedures": ALL, "severity": Severity.CAUTION,
        "message": "Filler in the area within the last 14–28 days (default window 28 days).",
    },
)


def install_default_rules() -> int:
    """Create the default rule library (rules with no clinic); returns how many rules were created.

    Existing rules are left as they are, so an operator's edit of a default survives a re-run.
    """
    created = 0
    with transaction.atomic():
        for spec in DEFAULT_RULES:
            values = {key: value for key, value in spec.items() if key != "code"}
            _rule, was_created = ContraindicationRule.objects.get_or_create(
                clinic=None, code=spec["code"], defaults=values
            )
            created += was_created
    return created


def customise_default_rule(*, rule: ContraindicationRule, clinic: Any, by: Any = None) -> ContraindicationRule:
    """Give ``clinic`` its own copy of a default rule (same code), which then replaces the default there.

    Idempotent: if the clinic already has a rule with that code, that rule is returned unchanged.
    """
    if rule.clinic_id is not None:
        raise ValidationError("Only rules of the default library are customised; edit a clinic rule directly.")
    copied = {
        field.attname: getattr(rule, field.attname)
        for field in ContraindicationRule._meta.concrete_fields
        if field.name not in {"id", "clinic"}
    }
    with transaction.atomic():
        own, created = ContraindicationRule.objects.get_or_create(clinic=clinic, code=rule.code, defaults=copied)
        if created:
            record_event(actor=by, action="rule.customise", clinic=clinic, obj=own, detail={"code": rule.code})
    return own


# --- example products and lots -------------------------------------------------------------

IN_CLINIC_PRODUCT = "Demo ADSC exosome concentrate"
HOME_PRODUCT = "Demo botanical exosome serum"

EXAMPLE_PRODUCTS: tuple[dict[str, Any], ...] = (
    {
        "name": IN_CLINIC_PRODUCT, "manufacturer": "Example Biologics Ltd (fictional)",
        "source": ExosomeProduct.Source.HUMAN, "cell_type": "adipose-derived stem cells", "plated": True,
        "characterisation": "Particle size by NTA (mode 110 nm); CD9/CD63/CD81 by flow cytometry; "
                            "fibroblast-migration potency assay.",
        "publishes_particle_size": True, "publishes_markers": True, "publishes_potency_assay": True,
        "tested_sterility": True, "tested_endotoxin": True, "tested_vesicle_concentration": True,
        "storage_requirements": "Lyophilised; keep at 2–8 °C; use within 1 hour of reconstitution.",
        "storage_min_celsius": 2, "storage_max_celsius": 8,
        "regulatory_status": ExosomeProduct.RegulatoryStatus.COSMETIC,
        "notes": "Example product for trying Aftercare; not a real brand. No exosome product is FDA-approved as a drug.",
    },
    {
        "name": HOME_PRODUCT, "manufacturer": "Example Botanicals (fictional)",
        "source": ExosomeProduct.Source.PLANT, "cell_type": "plant (rose stem-cell culture)", "plated": False,
        "characterisation": "Particle size published; no marker panel.", "publishes_particle_size": True,
        "tested_sterility": True,
        "storage_requirements": "Room temperature, below 25 °C; discard 3 months after opening.",
        "storage_max_celsius": 25, "regulatory_status": ExosomeProduct.RegulatoryStatus.COSMETIC,
        "notes": "Example at-home serum; not a real brand.",
    },
)


@dataclass(frozen=True)
class _LotSpec:
    product: str
    lot_number: str
    received_days_ago: int
    expires_in_days: int
    storage_checks: str = field(default="Received at 4 °C; data logger within 2–8 °C throughout transport.")


EXAMPLE_LOTS: tuple[_LotSpec, ...] = (
    _LotSpec(IN_CLINIC_PRODUCT, "ADSC-DEMO-0425", received_days_ago=30, expires_in_days=335),
    _LotSpec(HOME_PRODUCT, "BOT-DEMO-1102", received_days_ago=20, expires_in_days=520,
             storage_checks="Received at room temperature; packaging intact."),
    # Expired on purpose: shows that an expired lot cannot be selected for an application.
    _LotSpec(IN_CLINIC_PRODUCT, "ADSC-DEMO-0911-EXPIRED", received_days_ago=400, expires_in_days=-35),
)


def install_example_products(*, clinic: Any) -> list[ProductLot]:
    """Two example products (human-derived, plated and characterised; plant-derived) with lots for ``clinic``.

    Returns the clinic's example lots, usable ones first; one lot is expired on
    purpose. Dates count from the day of the first run and are not moved later.
    """
    today = timezone.localdate()
    with transaction.atomic():
        products = {spec["name"]: _example_product(clinic, spec) for spec in EXAMPLE_PRODUCTS}
        lots = [
            ProductLot.objects.get_or_create(
                clinic=clinic, product=products[spec.product], lot_number=spec.lot_number,
                defaults={
                    "received_date": today - dt.timedelta(days=spec.received_days_ago),
                    "expiry_date": today + dt.timedelta(days=spec.expires_in_days),
                    "storage_checks": spec.storage_checks,
                },
            )[0]
            for spec in EXAMPLE_LOTS
        ]
    return sorted(lots, key=lambda lot: (lot.unusable_reason(today) is not None, lot.product.name, lot.lot_number))


def _example_product(clinic: Any, spec: dict[str, Any]) -> ExosomeProduct:
    values = {key: value for key, value in spec.items() if key != "name"}
    product, _ = ExosomeProduct.objects.get_or_create(clinic=clinic, name=spec["name"], defaults=values)
    return product


# --- example protocols ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleProtocol:
    name: str
    procedure: str
    description: str
    length_days: int
    steps: tuple[dict[str, Any], ...]


def _at(day: int, hour: int, minute: int = 0) -> dict[str, Any]:
    return {"timing": ProtocolStep.Timing.LOCAL_TIME, "day": day, "local_time": dt.time(hour, minute)}


def _after(value: int, unit: str = ProtocolStep.Unit.MINUTES) -> dict[str, Any]:
    return {"timing": ProtocolStep.Timing.OFFSET, "offset_value": value, "offset_unit": unit}


IN_CLINIC_STEP: dict[str, Any] = {
    "kind": StepKind.IN_CLINIC_APPLICATION, "title": "In-clinic exosome application", **_after(0),
    "product": IN_CLINIC_PRODUCT, "sends_reminder": False,
    "patient_text": "Right after your procedure we apply an exosome preparation to the treated skin.",
    "staff_notes": "Record the lot, the volume and the minutes after the procedure.",
}

# The reminder of a visit goes out the day before, at the visit's time: time to arrange the day, or to call the
# clinic to move it (at the moment it starts it would tell the patient nothing they could act on).
VISIT_REMINDER: dict[str, Any] = {"remind_minutes_before": 24 * 60}

# Reminder times avoid the default quiet hours (21:00–08:00 patient-local).
EXAMPLE_PROTOCOLS: tuple[ExampleProtocol, ...] = (
    ExampleProtocol(
        name="Microneedling + exosome", procedure=Procedure.MICRONEEDLING, length_days=42,
        description="Microneedling (optionally with RF) followed by an in-clinic exosome application and a "
                    "week of at-home serum. Micro-channels stay open for roughly 12–36 hours.",
        steps=(
            IN_CLINIC_STEP,
            {"kind": StepKind.INSTRUCTION, "title": "Evening: gentle cleanse, no make-up", **_at(0, 19),
             "patient_text": "Tonight, cleanse gently with lukewarm water and a mild cleanser. No make-up for 24 hours "
                             "after your treatment."},
            {"kind": StepKind.AVOIDANCE, "title": "No retinoids, acids or exfoliation", **_at(0, 18),
             "avoid_until_day": 5,
             "patient_text": "Do not use retinol/retinoids, exfoliating acids or scrubs until day 5 (resume between "
                             "day 5 and day 7 if your skin is calm)."},
            {"kind": StepKind.INSTRUCTION, "title": "Sunscreen from today", **_at(1, 8, 30),
             "patient_text": "From today, apply a broad-spectrum SPF 30+ sunscreen every morning."},
            {"kind": StepKind.HOME_APPLICATION, "title": "At-home exosome serum", **_at(1, 20),
             "repeat_count": 7, "repeat_every_days": 1, "product": HOME_PRODUCT,
             "patient_text": "Apply the at-home exosome serum tonight as the label says (nightly on days 1–7)."},
            {"kind": StepKind.OUTCOME_CHECK, "title": "Self-check: redness and pain", **_at(3, 10),
             "patient_text": "How does your skin look and feel? Tell us about redness and pain."},
            {"kind": StepKind.FOLLOW_UP_VISIT, "title": "One-week check-in", **_at(7, 10), **VISIT_REMINDER,
             "patient_text": "Your one-week check-in with the clinic."},
            {"kind": StepKind.FOLLOW_UP_VISIT, "title": "Next session", **_at(28, 10), **VISIT_REMINDER,
             "patient_text": "Time to book your next session (between day 28 and day 42).",
             "staff_notes": "Next session window: day 28–42."},
        ),
    ),
    ExampleProtocol(
        name="Non-ablative fractional laser + exosome", procedure=Procedure.FRACTIONAL_NONABLATIVE, length_days=56,
        description="Non-ablative fractional laser (e.g. 1550 nm) with an in-clinic exosome application. Redness and "
                    "swelling for 2–3 days; bronzing and flaking to day 7.",
        steps=(
            IN_CLINIC_STEP,
            {"kind": StepKind.INSTRUCTION, "title": "Cool compresses, moisturiser, sunscreen", **_at(0, 18),
             "repeat_count": 3, "repeat_every_days": 1,
             "patient_text": "Use cool compresses, a plain moisturiser and sunscreen (days 0–2)."},
            {"kind": StepKind.AVOIDANCE, "title": "Avoid sun", **_at(0, 18, 30), "avoid_until_day": 56,
             "patient_text": "Avoid direct sun for at least 4 and ideally 8 weeks; wear SPF 50 and a hat."},
            {"kind": StepKind.OUTCOME_CHECK, "title": "Self-check", **_at(2, 10),
             "patient_text": "How does your skin look? Tell us about redness, swelling and pain."},
            {"kind": StepKind.FOLLOW_UP_VISIT, "title": "One-week check-in", **_at(7, 10), **VISIT_REMINDER,
             "patient_text": "Bronzing and flaking are expected this week. Your one-week check-in with the clinic."},
            {"kind": StepKind.OUTCOME_CHECK, "title": "PIH check", **_at(14, 10),
             "patient_text": "Please check for darker patches (post-inflammatory hyperpigmentation) and tell us."},
            {"kind": StepKind.FOLLOW_UP_VISIT, "title": "Next session", **_at(28, 10), **VISIT_REMINDER,
             "patient_text": "Time for your next session."},
        ),
    ),
    ExampleProtocol(
        name="Ablative fractional CO₂ + exosome", procedure=Procedure.FRACTIONAL_ABLATIVE, length_days=60,
        description="Ablative fractional laser (CO₂) with an in-clinic exosome application. Pinpoint oozing for about "
                    "24 hours; higher risk of infection, HSV reactivation and PIH.",
        steps=(
            {"kind": StepKind.INSTRUCTION, "title": "Start antiviral if prescribed", **_at(-1, 9),
             "sends_reminder": False,
             "patient_text": "If you were prescribed an antiviral, start it today.",
             "staff_notes": "Prescribe at the consultation. The treatment is recorded after the procedure, so no "
                            "reminder can be sent for day −1: tell the patient in person."},
            IN_CLINIC_STEP,
            {"kind": StepKind.INSTRUCTION, "title": "Head raised, gentle care", **_at(1, 8, 30),
             "patient_text": "Sleep with your head raised and care for the skin gently as shown in the clinic."},
            {"kind": StepKind.AVOIDANCE, "title": "Avoid sun", **_at(0, 18), "avoid_until_day": 60,
             "patient_text": "Avoid the sun for 1–2 months; wear SPF 50 and a hat when outside."},
            {"kind": StepKind.OUTCOME_CHECK, "title": "Self-check for signs of infection", **_at(3, 10),
             "repeat_count": 2, "repeat_every_days": 2,
             "patient_text": "Check for increasing pain, pus, crusts or blisters; tell us how your skin looks."},
            {"kind": StepKind.FOLLOW_UP_VISIT, "title": "Clinic visit: re-epithelialisation", **_at(7, 10),
             **VISIT_REMINDER, "patient_text": "Your clinic visit to check that the skin has healed over."},
            {"kind": StepKind.FOLLOW_UP_VISIT, "title": "End of antiviral course; PIH and infection check",
             **_at(14, 10), **VISIT_REMINDER,
             # The email arrives the day before: "ends today" would be wrong.
             "patient_text": "Your antiviral course ends on the day of this visit. Clinic check for pigment and "
                             "infection."},
            {"kind": StepKind.FOLLOW_UP_VISIT, "title": "Follow-up", **_at(28, 10), **VISIT_REMINDER,
             "patient_text": "Your four-week follow-up."},
        ),
    ),
)


def install_example_protocols(*, clinic: Any) -> dict[str, ProtocolVersion]:
    """The three example protocols of DOMAIN.md for ``clinic``, published; returns procedure code → version.

    A protocol that already exists (by name) keeps its versions: its newest
    published version is returned, or its draft is published if it never was.
    """
    products = {product.name: product for product in _ensure_products(clinic)}
    versions: dict[str, ProtocolVersion] = {}
    with transaction.atomic():
        for example in EXAMPLE_PROTOCOLS:
            versions[str(example.procedure)] = _install_protocol(clinic, example, products)
    return versions


def _ensure_products(clinic: Any) -> list[ExosomeProduct]:
    install_example_products(clinic=clinic)
    return list(ExosomeProduct.objects.filter(clinic=clinic, name__in=[IN_CLINIC_PRODUCT, HOME_PRODUCT]))


def _install_protocol(clinic: Any, example: ExampleProtocol, products: dict[str, ExosomeProduct]) -> ProtocolVersion:
    protocol, _ = Protocol.objects.get_or_create(
        clinic=clinic, name=example.name,
        defaults={"procedure": example.procedure, "description": example.description},
    )
    current = protocol.current_version
    if current is not None:
        return current
    draft = protocol.draft or versioning.start_draft(protocol=protocol, change_note="Example protocol from Aftercare.")
    if not draft.steps.exists():
        draft.length_days = example.length_days
        draft.save()
        for order, spec in enumerate(example.steps, start=1):
            values = dict(spec)
            if "product" in values:
                values["product"] = products[values["product"]]
            step = ProtocolStep(version=draft, order=order * 10, **values)
            step.full_clean()  # the examples obey the same rules as any clinic's steps
            step.save()
    return versioning.publish(version=draft)
