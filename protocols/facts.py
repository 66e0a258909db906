"""The patient facts an intake records and the rule library reads.

Each fact has a stable code (used as the key in ``Intake.answers`` and in
``ContraindicationRule.fact``), a type and the question staff and patients see.
Date facts hold ISO dates (``"2026-05-01"``); choice facts one of ``choices``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FactType(StrEnum):
    BOOLEAN = "boolean"
    DATE = "date"
    CHOICE = "choice"
    TEXT = "text"


@dataclass(frozen=True)
class Fact:
    code: str
    type: FactType
    question: str
    patient_question: str = ""
    choices: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def patient_text(self) -> str:
        return self.patient_question or self.question


FACTS: tuple[Fact, ...] = (
    Fact("active_infection", FactType.BOOLEAN,
         "Active infection in the treatment area (bacterial, fungal, active cold sore)?",
         "Do you have an infection or an active cold sore where you will be treated?"),
    Fact("active_dermatosis", FactType.BOOLEAN,
         "Active dermatosis in the area (eczema or psoriasis flare, inflammatory acne, rosacea)?",
         "Is eczema, psoriasis, acne or rosacea flaring where you will be treated?"),
    Fact("suspicious_lesion", FactType.BOOLEAN,
         "Suspicious or malignant lesion in the treatment area?",
         "Do you have a mole or spot in the area that a doctor is checking or treating?"),
    Fact("chemo_or_radiotherapy", FactType.BOOLEAN,
         "Ongoing chemotherapy or radiotherapy?",
         "Are you having chemotherapy or radiotherapy?"),
    Fact("cancer_diagnosis_date", FactType.DATE,
         "Date of the most recent active cancer (empty if none)",
         "If you have had cancer, when was it last active?"),
    Fact("pregnant", FactType.BOOLEAN, "Pregnant?", "Are you pregnant, or could you be?"),
    Fact("breastfeeding", FactType.BOOLEAN, "Breastfeeding?", "Are you breastfeeding?"),
    Fact("immunocompromised", FactType.BOOLEAN,
         "Immunocompromised or on immunosuppressive therapy?",
         "Do you have a weakened immune system or take medicine that suppresses it?"),
    Fact("allergy_relevant", FactType.BOOLEAN,
         "Allergy to a product ingredient, topical anaesthetic or needle metal?",
         "Are you allergic to skin products, numbing cream or metals such as nickel?"),
    Fact("isotretinoin_last_dose", FactType.DATE,
         "Date of the last oral isotretinoin dose (empty if never)",
         "If you have taken isotretinoin (e.g. Roaccutane) tablets, when was your last dose?"),
    Fact("topical_retinoid_last_use", FactType.DATE,
         "Date of the last topical retinoid or exfoliating acid",
         "When did you last use a retinol, retinoid or exfoliating acid on your face?"),
    Fact("hsv_history", FactType.BOOLEAN, "History of HSV (cold sores)?", "Have you ever had cold sores?"),
    Fact("anticoagulant", FactType.BOOLEAN,
         "Taking anticoagulant or antiplatelet medication?",
         "Do you take blood thinners or aspirin?"),
    Fact("bleeding_disorder", FactType.BOOLEAN, "Bleeding disorder?", "Do you have a bleeding disorder?"),
    Fact("keloid_history", FactType.BOOLEAN,
         "History of keloid or hypertrophic scarring?",
         "Do you form raised or thick scars?"),
    Fact("diabetes_uncontrolled", FactType.BOOLEAN, "Uncontrolled diabetes?",
         "Do you have diabetes that is not well controlled?"),
    Fact("recent_tan_date", FactType.DATE,
         "Date of the most recent tan or intense sun exposure",
         "When did you last get a tan or spend long in strong sun?"),
    Fact("fitzpatrick_type", FactType.CHOICE, "Fitzpatrick skin type", "Your skin type",
         choices=(
             ("I", "I — always burns, never tans"),
             ("II", "II — usually burns, tans with difficulty"),
             ("III", "III — sometimes burns, tans gradually"),
             ("IV", "IV — rarely burns, tans easily"),
             ("V", "V — very rarely burns, tans very easily (brown skin)"),
             ("VI", "VI — never burns (deeply pigmented, dark brown to black skin)"),
         )),
    Fact("photosensitising_medication", FactType.BOOLEAN,
         "Taking photosensitising medication?",
         "Do you take medicine that makes your skin sensitive to sunlight?"),
    Fact("recent_peel_date", FactType.DATE, "Date of the most recent chemical peel in the area",
         "When did you last have a chemical peel on the area?"),
    Fact("recent_neurotoxin_date", FactType.DATE, "Date of the most recent neurotoxin injection in the area",
         "When did you last have anti-wrinkle injections in the area?"),
    Fact("recent_filler_date", FactType.DATE, "Date of the most recent filler in the area",
         "When did you last have filler in the area?"),
)

FACTS_BY_CODE: dict[str, Fact] = {fact.code: fact for fact in FACTS}


def fact_choices() -> list[tuple[str, str]]:
    return [(fact.code, fact.question) for fact in FACTS]
