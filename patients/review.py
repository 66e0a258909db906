"""Reviewing healing across treatments: per protocol and version, two protocols side by side, split-face arms.

Everything starts from ``treatments_for_review``, which scopes to the clinics
the person belongs to (``clinic.scoping.scoped``) and applies the filters.
Numbers come from grouped aggregate queries (``patients.measures`` for the
per-unit measures); Python only handles the aggregated rows — one per unit or
per day — to take medians and quartiles, which SQLite cannot compute.

These are observational summaries of a clinic's own patients, not trial
results; the pages and the API say so next to every p-value.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Avg, Count, Q, QuerySet, Subquery

from clinic.local_days import within_clinic_days
from clinic.models import Role
from clinic.scoping import clinic_ids, clinics_for, scoped
from patients.measures import HealingMeasures, clinician_scores, home_step_reminders, measures_for
from patients.models import AdverseEvent, Patient, Treatment
from protocols.models import Protocol, ProtocolVersion

MIN_PAIRS_FOR_TEST = 6
OBSERVATIONAL_NOTE = (
    "Observational comparison of this clinic's own treatments, not a randomised trial: sides and protocols were not "
    "necessarily allocated at random and assessors were not blinded. A p-value describes these data, not the product."
)

Grouping = Literal["protocol", "version"]
_GROUP_FIELD: dict[str, str] = {"protocol": "protocol_version__protocol_id", "version": "protocol_version_id"}


# --- filters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewFilters:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    protocol_id: int | None = None
    clinician_id: int | None = None
    fitzpatrick_type: int | None = None

    def as_query(self) -> dict[str, str]:
        """The filters as query-string parameters (empty ones left out)."""
        values = {
            "date_from": self.date_from, "date_to": self.date_to, "protocol": self.protocol_id,
            "clinician": self.clinician_id, "fitzpatrick_type": self.fitzpatrick_type,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


class ReviewFilterForm(forms.Form):
    date_from = forms.DateField(required=False, label="Treated from", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="Treated until", widget=forms.DateInput(attrs={"type": "date"}))
    protocol = forms.ModelChoiceField(queryset=Protocol.objects.none(), required=False, empty_label="All protocols")
    clinician = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False, empty_label="All clinicians")
    fitzpatrick_type = forms.TypedChoiceField(
        choices=[("", "All skin types"), *Patient._meta.get_field("fitzpatrick_type").choices],
        coerce=int, empty_value=None, required=False, label="Fitzpatrick type",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["protocol"].queryset = scoped(Protocol.objects.all(), user).order_by("name")
        self.fields["clinician"].queryset = clinicians_visible_to(user)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise ValidationError({"date_to": "The end of the date range is before its start."})
        return cleaned

    def filters(self) -> ReviewFilters:
        data = self.cleaned_data
        return ReviewFilters(
            date_from=data.get("date_from"), date_to=data.get("date_to"),
            protocol_id=data["protocol"].pk if data.get("protocol") else None,
            clinician_id=data["clinician"].pk if data.get("clinician") else None,
            fitzpatrick_type=data.get("fitzpatrick_type"),
        )


def clinicians_visible_to(user: Any) -> QuerySet:
    """Clinicians of the clinics ``user`` belongs to (for the clinician filter)."""
    users = get_user_model().objects.filter(memberships__role=Role.CLINICIAN)
    if not getattr(user, "is_superuser", False):
        users = users.filter(memberships__clinic_id__in=clinic_ids(user))
    return users.distinct().order_by("username")


def parse_filters(*, data: Any, user: Any) -> ReviewFilters:
    """Filters from query parameters; ValidationError with the form's field errors when they are bad."""
    form = ReviewFilterForm(data, user=user)
    if not form.is_valid():
        raise ValidationError(form.errors.as_data())
    return form.filters()


def treatments_for_review(*, user: Any, filters: ReviewFilters) -> QuerySet[Treatment]:
    """Recorded treatments ``user`` may see, narrowed by ``filters``."""
    treatments = scoped(Treatment.objects.filter(status=Treatment.Status.RECORDED), user)
    if filters.date_from or filters.date_to:
        # Treated on the picked days of each treatment's own clinic, as the exports count them.
        treatments = treatments.filter(
            within_clinic_days(
                "ended_at", clinic_field="clinic_id", clinics=clinics_for(user),
                first_day=filters.date_from, last_day=filters.date_to,
            )
        )
    if filters.protocol_id:
        treatments = treatments.filter(protocol_version__protocol_id=filters.protocol_id)
    if filters.clinician_id:
        treatments = treatments.filter(clinician_id=filters.clinician_id)
    if filters.fitzpatrick_type:
        treatments = treatments.filter(patient__fitzpatrick_type=filters.fitzpatrick_type)
    return treatments


# --- statistics helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Median and interquartile range (quartiles by linear interpolation, numpy's default)."""

    n: int
    median: float | None = None
    q1: float | None = None
    q3: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            return cls(n=0)
        q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
        return cls(n=len(values), median=median, q1=q1, q3=q3)


@dataclass(frozen=True)
class DayMean:
    day: int
    mean: float
    n: int


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# --- per protocol / version ------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSummary:
    """The healing of one protocol (or one protocol version) over the filtered treatments."""

    key: int
    label: str
    treatments: int = 0
    reepithelialisation_days: Spread = field(default_factory=lambda: Spread(n=0))
    peak_erythema_mean: float | None = None
    mean_erythema_by_day: list[DayMean] = field(default_factory=list)
    treatments_with_adverse_events: int = 0
    adverse_events: int = 0
    home_steps_done: int = 0
    home_steps_due: int = 0

    @property
    def adverse_event_rate(self) -> float | None:
        """Share of treatments with at least one adverse event."""
        return self.treatments_with_adverse_events / self.treatments if self.treatments else None

    @property
    def adherence(self) -> float | None:
        """Home steps marked done over home steps due, pooled over the treatments."""
        return self.home_steps_done / self.home_steps_due if self.home_steps_due else None


def _labels(keys: set[int], by: Grouping) -> dict[int, str]:
    if by == "protocol":
        return dict(Protocol.objects.filter(pk__in=keys).values_list("pk", "name"))
    versions = ProtocolVersion.objects.filter(pk__in=keys).values_list("pk", "protocol__name", "number")
    return {pk: f"{name} v{number}" for pk, name, number in versions}


def summarise(
    treatments: QuerySet[Treatment], *, by: Grouping, now: dt.datetime, measures: list[HealingMeasures] | None = None
) -> dict[int, GroupSummary]:
    """One summary per protocol (or version) among ``treatments``; a fixed number of queries.

    Control arms of split-face treatments are left out of the healing numbers
    (they did not receive the protocol's product); adverse events and
    adherence count per treatment. ``measures`` are those of ``treatments``
    when the caller already has them (they are the heaviest part).
    """
    group = _GROUP_FIELD[by]
    counts = dict(treatments.values_list(group).annotate(n=Count("pk", distinct=True)).order_by())
    events = {
        row[f"treatment__{group}"]: row
        for row in AdverseEvent.objects.filter(treatment__in=treatments.values("pk"))
        .values(f"treatment__{group}")
        .annotate(events=Count("pk"), treatments=Count("treatment_id", distinct=True))
        .order_by()
    }
    adherence = {
        row[f"treatment__{group}"]: row
        for row in home_step_reminders(treatments, now=now)
        .values(f"treatment__{group}")
        .annotate(due=Count("pk"), done=Count("pk", filter=Q(done_at__isnull=False)))
        .order_by()
    }
    curves = _erythema_by_day(treatments, group=f"treatment__{group}")
    units_by_group: dict[int, list[HealingMeasures]] = defaultdict(list)
    for unit in measures if measures is not None else measures_for(treatments, now=now):
        if not unit.is_control:
            units_by_group[unit.protocol_id if by == "protocol" else unit.protocol_version_id].append(unit)
    labels = _labels(set(counts), by)
    summaries = {}
    for key, n in counts.items():
        summaries[key] = GroupSummary(
            key=key,
            label=labels.get(key, str(key)),
            treatments=n,
            **_healing(units_by_group.get(key, [])),
            mean_erythema_by_day=curves.get(key, []),
            treatments_with_adverse_events=events.get(key, {}).get("treatments", 0),
            adverse_events=events.get(key, {}).get("events", 0),
            home_steps_done=adherence.get(key, {}).get("done", 0),
            home_steps_due=adherence.get(key, {}).get("due", 0),
        )
    return summaries


def _healing(units: list[HealingMeasures]) -> dict[str, Any]:
    """The per-unit numbers of a group's (non-control) units: days to re-epithelialisation and mean peak erythema."""
    return {
        "reepithelialisation_days": Spread.of(
            [u.days_to_reepithelialisation for u in units if u.days_to_reepithelialisation is not None]
        ),
        "peak_erythema_mean": _mean([u.peak_erythema for u in units if u.peak_erythema is not None]),
    }


def combine(*, key: int, label: str, parts: list[GroupSummary], units: list[HealingMeasures]) -> GroupSummary:
    """The summary of a whole made of ``parts`` (a protocol of its versions), as if it had been grouped at once.

    Counts add up (a treatment follows one version), a day's mean erythema is
    the parts' means weighted by their number of scores, and the per-unit
    numbers are taken again from ``units``, the whole's non-control units.
    Saves the protocol-wide aggregate queries, the heaviest of a review page.
    """
    if len(parts) == 1:
        return replace(parts[0], key=key, label=label)
    by_day: dict[int, list[float]] = defaultdict(lambda: [0.0, 0])
    for part in parts:
        for point in part.mean_erythema_by_day:
            by_day[point.day][0] += point.mean * point.n
            by_day[point.day][1] += point.n
    return GroupSummary(
        key=key,
        label=label,
        treatments=sum(part.treatments for part in parts),
        **_healing(units),
        mean_erythema_by_day=[DayMean(day=day, mean=total / n, n=int(n)) for day, (total, n) in sorted(by_day.items())],
        treatments_with_adverse_events=sum(part.treatments_with_adverse_events for part in parts),
        adverse_events=sum(part.adverse_events for part in parts),
        home_steps_done=sum(part.home_steps_done for part in parts),
        home_steps_due=sum(part.home_steps_due for part in parts),
    )


def _erythema_by_day(treatments: QuerySet[Treatment], *, group: str) -> dict[Any, list[DayMean]]:
    rows = (
        clinician_scores(treatments)
        .filter(erythema__isnull=False)
        .filter(Q(arm__isnull=True) | Q(arm__is_control=False))
        .values(group, "time_point_day")
        .annotate(mean=Avg("erythema"), n=Count("pk"))
        .order_by(group, "time_point_day")
    )
    curves: dict[Any, list[DayMean]] = defaultdict(list)
    for row in rows:
        curves[row[group]].append(DayMean(day=row["time_point_day"], mean=float(row["mean"]), n=row["n"]))
    return dict(curves)


@dataclass(frozen=True)
class ProtocolReport:
    protocol: Protocol
    filters: ReviewFilters
    overall: GroupSummary
    versions: list[GroupSummary]
    note: str = OBSERVATIONAL_NOTE


def protocol_report(*, user: Any, protocol: Protocol, filters: ReviewFilters, now: dt.datetime) -> ProtocolReport:
    """The healing numbers of one protocol, overall and per version."""
    filters = ReviewFilters(**{**filters.__dict__, "protocol_id": protocol.pk})
    treatments = treatments_for_review(user=user, filters=filters)
    # The overall row is put together from the versions' rows and the same
    # per-unit measures: one pass over the outcomes instead of two.
    measures = measures_for(treatments, now=now)
    versions = sorted(summarise(treatments, by="version", now=now, measures=measures).values(), key=lambda s: s.label)
    units = [unit for unit in measures if not unit.is_control]
    overall = combine(key=protocol.pk, label=protocol.name, parts=versions, units=units)
    return ProtocolReport(protocol=protocol, filters=filters, overall=overall, versions=versions)


def compare_protocols(
    *, user: Any, protocols: tuple[Protocol, Protocol], filters: ReviewFilters, now: dt.datetime
) -> list[GroupSummary]:
    """Two protocols side by side over the same filters (the protocol filter is replaced by the pair)."""
    filters = ReviewFilters(**{**filters.__dict__, "protocol_id": None})
    treatments = treatments_for_review(user=user, filters=filters).filter(
        protocol_version__protocol__in=[p.pk for p in protocols]
    )
    summaries = summarise(treatments, by="protocol", now=now)
    return [summaries.get(p.pk) or GroupSummary(key=p.pk, label=p.name) for p in protocols]


# --- split-face ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedMetric:
    """One measure compared between the exosome arm and the control arm of the same faces."""

    name: str
    label: str
    lower_is_better: bool
    pairs: int
    exosome: Spread
    control: Spread
    mean_difference: float | None
    median_difference: float | None
    exosome_better: int
    control_better: int
    equal: int
    p_value: float | None
    test_note: str


SPLIT_FACE_METRICS: list[tuple[str, str, bool]] = [
    ("peak_erythema", "Peak erythema (CEA 0–4)", True),
    ("first_day_erythema_at_most_1", "First day erythema ≤ 1", True),
    ("days_to_reepithelialisation", "Days to complete re-epithelialisation", True),
    ("best_gais", "Best GAIS (−1 to 3)", False),
    ("adverse_events", "Adverse events", True),
]


@dataclass(frozen=True)
class SplitFaceComparison:
    treatments: int
    excluded: int
    metrics: list[PairedMetric]
    erythema_by_day: dict[str, list[DayMean]]
    min_pairs_for_test: int = MIN_PAIRS_FOR_TEST
    note: str = OBSERVATIONAL_NOTE


def _pairs(count: int) -> str:
    return f"{count} pair" if count == 1 else f"{count} pairs"


def paired_test(differences: list[float]) -> tuple[float | None, str]:
    """Wilcoxon signed-rank p-value of paired differences (SciPy defaults), or None and why not.

    SciPy's default drops zero differences, so the test needs ``MIN_PAIRS_FOR_TEST``
    pairs that differ, not only that many pairs.
    """
    if len(differences) < MIN_PAIRS_FOR_TEST:
        return None, f"No test: {_pairs(len(differences))}, at least {MIN_PAIRS_FOR_TEST} are needed."
    differing = sum(1 for d in differences if d != 0)
    if not differing:
        return None, "No test: every paired difference is zero."
    if differing < MIN_PAIRS_FOR_TEST:
        return None, (
            f"No test: only {_pairs(differing)} {'differs' if differing == 1 else 'differ'} (zero differences are "
            f"dropped), at least {MIN_PAIRS_FOR_TEST} are needed."
        )
    # Imported here: SciPy's statistics cost every process about 80 MB, and only this test needs them.
    from scipy import stats

    result = stats.wilcoxon(differences)
    return float(result.pvalue), "Wilcoxon signed-rank test (two-sided, zero differences dropped)."


def _paired_metric(
    name: str, label: str, lower_is_better: bool, pairs: list[tuple[HealingMeasures, HealingMeasures]]
) -> PairedMetric:
    values = [
        (getattr(exosome, name), getattr(control, name))
        for exosome, control in pairs
        if getattr(exosome, name) is not None and getattr(control, name) is not None
    ]
    differences = [float(e - c) for e, c in values]
    p_value, note = paired_test(differences)
    better = (lambda d: d < 0) if lower_is_better else (lambda d: d > 0)
    return PairedMetric(
        name=name,
        label=label,
        lower_is_better=lower_is_better,
        pairs=len(values),
        exosome=Spread.of([e for e, _ in values]),
        control=Spread.of([c for _, c in values]),
        mean_difference=_mean(differences),
        median_difference=float(np.median(differences)) if differences else None,
        exosome_better=sum(1 for d in differences if d != 0 and better(d)),
        control_better=sum(1 for d in differences if d != 0 and not better(d)),
        equal=sum(1 for d in differences if d == 0),
        p_value=p_value,
        test_note=note,
    )


def split_face_treatments(treatments: QuerySet[Treatment]) -> tuple[QuerySet[Treatment], int]:
    """Treatments with exactly two arms, one exosome and one control; and how many other multi-arm ones were left out."""
    with_arms = treatments.annotate(
        n_arms=Count("arms", distinct=True),
        n_controls=Count("arms", filter=Q(arms__is_control=True), distinct=True),
    ).filter(n_arms__gte=2)
    paired = with_arms.filter(n_arms=2, n_controls=1)
    # A plain pk subquery, so later queries need not carry the aggregate.
    comparable = Treatment.objects.filter(pk__in=Subquery(paired.values("pk")))
    excluded = with_arms.exclude(n_arms=2, n_controls=1).count()
    return comparable, excluded


def split_face_comparison(*, user: Any, filters: ReviewFilters, now: dt.datetime) -> SplitFaceComparison:
    """Exosome arm against control arm of the same split-face treatments: paired differences (exosome − control)."""
    comparable, excluded = split_face_treatments(treatments_for_review(user=user, filters=filters))
    sides: dict[int, dict[bool, HealingMeasures]] = defaultdict(dict)
    for unit in measures_for(comparable, now=now):
        sides[unit.treatment_id][unit.is_control] = unit
    pairs = [(arms[False], arms[True]) for arms in sides.values() if False in arms and True in arms]
    rows = (
        clinician_scores(comparable)
        .filter(erythema__isnull=False, arm__isnull=False)
        .values("arm__is_control", "time_point_day")
        .annotate(mean=Avg("erythema"), n=Count("pk"))
        .order_by("arm__is_control", "time_point_day")
    )
    curves: dict[str, list[DayMean]] = {"exosome": [], "control": []}
    for row in rows:
        curves["control" if row["arm__is_control"] else "exosome"].append(
            DayMean(day=row["time_point_day"], mean=float(row["mean"]), n=row["n"])
        )
    return SplitFaceComparison(
        treatments=len(pairs),
        excluded=excluded,
        metrics=[_paired_metric(name, label, lower, pairs) for name, label, lower in SPLIT_FACE_METRICS],
        erythema_by_day=curves,
    )
