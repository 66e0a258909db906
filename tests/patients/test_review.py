"""Review numbers per protocol and version, side by side, and split-face arms — against hand counts and SciPy."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import time_machine
from django.core.exceptions import ValidationError
from scipy import stats

from clinic.models import Role
from patients.models import AdverseEvent, OutcomeAssessment, Treatment, TreatmentArm
from patients.review import (
    ReviewFilters,
    compare_protocols,
    paired_test,
    parse_filters,
    protocol_report,
    split_face_comparison,
    summarise,
    treatments_for_review,
)
from tests.factories import (
    ClinicFactory,
    MembershipFactory,
    ProtocolFactory,
    ReminderFactory,
    StepFactory,
    TreatmentFactory,
    UserFactory,
    VersionFactory,
    staff,
)

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def _treatment(version, clinic, *, days_ago=20, **kwargs):
    ended = NOW - dt.timedelta(days=days_ago)
    return TreatmentFactory(
        screening__patient__clinic=clinic, screening__protocol_version=version,
        started_at=ended - dt.timedelta(hours=1), ended_at=ended, **kwargs,
    )


def _healing(treatment, *, reepithelialised_on=None, erythema=None, arm=None):
    """Clinician scores: ``erythema`` maps day → CEA; re-epithelialisation complete on one day."""
    days = set(erythema or {}) | ({reepithelialised_on} if reepithelialised_on is not None else set())
    for day in sorted(days):
        entry, _ = OutcomeAssessment.objects.get_or_create(treatment=treatment, arm=arm, time_point_day=day)
        if day in (erythema or {}):
            entry.erythema = erythema[day]
        if day == reepithelialised_on:
            entry.reepithelialisation_complete = True
        entry.save()


def _event(treatment, arm=None):
    AdverseEvent.objects.create(
        treatment=treatment, arm=arm, kind="pih", severity="mild", onset_date=NOW.date(), recorded_by=UserFactory()
    )


@pytest.fixture
def protocol(clinic_a):
    return ProtocolFactory(clinic=clinic_a, name="CO2 + exosome")


def test_a_protocol_report_gives_median_and_iqr_mean_erythema_adverse_events_and_adherence(protocol, clinic_a, clinician):
    v1, v2 = VersionFactory(protocol=protocol, number=1), VersionFactory(protocol=protocol, number=2)
    days = {3: v1, 5: v1, 7: v2, 9: v2}
    treatments = []
    for reepithelialised_on, version in days.items():
        treatments.append(_treatment(version, clinic_a))
        _healing(treatments[-1], reepithelialised_on=reepithelialised_on)
    fifth = _treatment(v2, clinic_a)
    _healing(fifth, reepithelialised_on=7)
    # Day-1 erythema on three treatments: 3, 4, 2 → mean 3.0; day 3 on one: 1.
    _healing(treatments[0], erythema={1: 3, 3: 1})
    _healing(treatments[1], erythema={1: 4})
    _healing(treatments[2], erythema={1: 2})
    _event(treatments[0])
    _event(treatments[0])
    _event(fifth)
    serum = StepFactory(version=v1, kind="home_application")
    for occurrence, done in enumerate([True, True, False]):
        ReminderFactory(
            treatment=treatments[0], step=serum, occurrence=occurrence, status="sent",
            due_at=NOW - dt.timedelta(days=5), done_at=NOW if done else None,
        )

    report = protocol_report(user=clinician, protocol=protocol, filters=ReviewFilters(), now=NOW)

    overall = report.overall
    assert overall.treatments == 5
    # Days 3, 5, 7, 7, 9: median 7, quartiles 5 and 7 (linear interpolation).
    assert (overall.reepithelialisation_days.n, overall.reepithelialisation_days.median) == (5, 7.0)
    assert (overall.reepithelialisation_days.q1, overall.reepithelialisation_days.q3) == (5.0, 7.0)
    assert [(p.day, p.mean, p.n) for p in overall.mean_erythema_by_day] == [(1, 3.0, 3), (3, 1.0, 1)]
    assert (overall.treatments_with_adverse_events, overall.adverse_events) == (2, 3)
    assert overall.adverse_event_rate == pytest.approx(2 / 5)
    assert (overall.home_steps_done, overall.home_steps_due) == (2, 3)
    by_version = {v.label: v for v in report.versions}
    assert set(by_version) == {"CO2 + exosome v1", "CO2 + exosome v2"}
    assert by_version["CO2 + exosome v1"].treatments == 2
    assert by_version["CO2 + exosome v1"].reepithelialisation_days.median == 4.0
    assert by_version["CO2 + exosome v2"].reepithelialisation_days.median == 7.0
    assert by_version["CO2 + exosome v2"].adverse_event_rate == pytest.approx(1 / 3)


def test_spread_matches_numpy_on_an_even_count(protocol, clinic_a, clinician):
    version = VersionFactory(protocol=protocol)
    values = [2, 4, 5, 11]
    for day in values:
        _healing(_treatment(version, clinic_a), reepithelialised_on=day)
    spread = protocol_report(user=clinician, protocol=protocol, filters=ReviewFilters(), now=NOW).overall.reepithelialisation_days
    assert (spread.q1, spread.median, spread.q3) == tuple(np.percentile(values, [25, 50, 75]))
    assert spread.median == 4.5


def test_control_arms_are_left_out_of_a_protocols_healing_numbers(protocol, clinic_a, clinician):
    treatment = _treatment(VersionFactory(protocol=protocol), clinic_a)
    exosome = TreatmentArm.objects.create(treatment=treatment, label="left")
    control = TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
    _healing(treatment, arm=exosome, reepithelialised_on=5, erythema={1: 2})
    _healing(treatment, arm=control, reepithelialised_on=9, erythema={1: 4})
    overall = protocol_report(user=clinician, protocol=protocol, filters=ReviewFilters(), now=NOW).overall
    assert overall.reepithelialisation_days.median == 5.0
    assert [(p.day, p.mean) for p in overall.mean_erythema_by_day] == [(1, 2.0)]


def test_another_clinics_treatments_of_a_shared_protocol_are_not_counted(clinic_a, clinic_b, clinician, clinician_b):
    shared = ProtocolFactory(clinic=None, name="Shared template")
    version = VersionFactory(protocol=shared)
    _healing(_treatment(version, clinic_a), reepithelialised_on=4)
    for _ in range(3):
        _healing(_treatment(version, clinic_b), reepithelialised_on=10)
    mine = protocol_report(user=clinician, protocol=shared, filters=ReviewFilters(), now=NOW).overall
    theirs = protocol_report(user=clinician_b, protocol=shared, filters=ReviewFilters(), now=NOW).overall
    assert (mine.treatments, mine.reepithelialisation_days.median) == (1, 4.0)
    assert (theirs.treatments, theirs.reepithelialisation_days.median) == (3, 10.0)


def test_cancelled_treatments_are_not_reviewed(protocol, clinic_a, clinician):
    version = VersionFactory(protocol=protocol)
    _treatment(version, clinic_a)
    _treatment(version, clinic_a, status=Treatment.Status.CANCELLED)
    assert treatments_for_review(user=clinician, filters=ReviewFilters()).count() == 1


def test_filters_narrow_by_date_clinician_and_fitzpatrick_type(protocol, clinic_a, clinician):
    version = VersionFactory(protocol=protocol)
    other_clinician = staff(Role.CLINICIAN, clinic_a)
    early = _treatment(version, clinic_a, days_ago=40, screening__patient__fitzpatrick_type=2)
    late = _treatment(version, clinic_a, days_ago=5, clinician=other_clinician, screening__patient__fitzpatrick_type=5)

    def ids(**filters):
        return set(treatments_for_review(user=clinician, filters=ReviewFilters(**filters)).values_list("pk", flat=True))

    assert ids() == {early.pk, late.pk}
    assert ids(date_from=(NOW - dt.timedelta(days=10)).date()) == {late.pk}
    assert ids(date_to=(NOW - dt.timedelta(days=10)).date()) == {early.pk}
    assert ids(clinician_id=other_clinician.pk) == {late.pk}
    assert ids(fitzpatrick_type=2) == {early.pk}
    assert ids(protocol_id=ProtocolFactory(clinic=clinic_a).pk) == set()


def test_date_filters_mean_each_clinics_own_calendar_day():
    sydney = ClinicFactory(slug="sydney", time_zone="Australia/Sydney")
    new_york = ClinicFactory(slug="new-york", time_zone="America/New_York")
    person = staff(Role.CLINICIAN, sydney)
    MembershipFactory(user=person, clinic=new_york, role=Role.CLINICIAN)

    def treated_at(clinic, ended):
        version = VersionFactory(protocol=ProtocolFactory(clinic=clinic))
        return TreatmentFactory(
            screening__patient__clinic=clinic, screening__protocol_version=version,
            started_at=ended - dt.timedelta(hours=1), ended_at=ended,
        )

    # 09:30 on 5 March in Sydney is still 4 March in UTC; 21:00 on 4 March in New York is already 5 March.
    in_sydney = treated_at(sydney, dt.datetime(2026, 3, 5, 9, 30, tzinfo=ZoneInfo("Australia/Sydney")))
    in_new_york = treated_at(new_york, dt.datetime(2026, 3, 4, 21, 0, tzinfo=ZoneInfo("America/New_York")))

    def treated_on(day):
        filters = ReviewFilters(date_from=day, date_to=day)
        return set(treatments_for_review(user=person, filters=filters).values_list("pk", flat=True))

    assert treated_on(dt.date(2026, 3, 5)) == {in_sydney.pk}
    assert treated_on(dt.date(2026, 3, 4)) == {in_new_york.pk}
    from_fifth = ReviewFilters(date_from=dt.date(2026, 3, 5))
    assert list(treatments_for_review(user=person, filters=from_fifth)) == [in_sydney]


def test_bad_filters_are_refused_with_field_errors(clinician, clinic_b):
    other_clinics_protocol = ProtocolFactory(clinic=clinic_b)
    with pytest.raises(ValidationError) as raised:
        parse_filters(
            data={"date_from": "2026-03-10", "date_to": "2026-03-01", "fitzpatrick_type": "9"}, user=clinician
        )
    assert {"date_to", "fitzpatrick_type"} <= set(raised.value.message_dict)
    with pytest.raises(ValidationError) as raised:
        parse_filters(data={"protocol": str(other_clinics_protocol.pk)}, user=clinician)
    assert "protocol" in raised.value.message_dict


def test_two_protocols_side_by_side(clinic_a, clinician):
    first, second = ProtocolFactory(clinic=clinic_a, name="A"), ProtocolFactory(clinic=clinic_a, name="B")
    for day in (3, 4):
        _healing(_treatment(VersionFactory(protocol=first), clinic_a), reepithelialised_on=day)
    _healing(_treatment(VersionFactory(protocol=second), clinic_a), reepithelialised_on=8)
    _treatment(VersionFactory(protocol=ProtocolFactory(clinic=clinic_a)), clinic_a)  # a third protocol: not shown
    left, right = compare_protocols(user=clinician, protocols=(first, second), filters=ReviewFilters(), now=NOW)
    assert (left.label, left.treatments, left.reepithelialisation_days.median) == ("A", 2, 3.5)
    assert (right.label, right.treatments, right.reepithelialisation_days.median) == ("B", 1, 8.0)


def test_summaries_use_the_same_number_of_queries_for_few_or_many_treatments(
    protocol, clinic_a, clinician, django_assert_max_num_queries
):
    version = VersionFactory(protocol=protocol)

    def build(n):
        for i in range(n):
            treatment = _treatment(version, clinic_a)
            _healing(treatment, reepithelialised_on=3 + i, erythema={1: 2})
            _event(treatment)

    build(2)
    treatments = treatments_for_review(user=clinician, filters=ReviewFilters())
    with django_assert_max_num_queries(10) as few:
        summarise(treatments, by="version", now=NOW)
    build(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert summarise(treatments, by="version", now=NOW)[version.pk].treatments == 22


# --- split-face -------------------------------------------------------------------------------------


def _split_face(version, clinic, *, exosome_days, control_days, exosome_peak=3, control_peak=3):
    treatment = _treatment(version, clinic)
    exosome = TreatmentArm.objects.create(treatment=treatment, label="left")
    control = TreatmentArm.objects.create(treatment=treatment, label="right", is_control=True)
    _healing(treatment, arm=exosome, reepithelialised_on=exosome_days, erythema={1: exosome_peak})
    _healing(treatment, arm=control, reepithelialised_on=control_days, erythema={1: control_peak})
    return treatment


def test_split_face_paired_differences_and_wilcoxon_match_scipy(protocol, clinic_a, clinician):
    version = VersionFactory(protocol=protocol)
    exosome = [4, 5, 5, 6, 4, 7, 5]
    control = [6, 6, 8, 6, 7, 9, 8]
    for e, c in zip(exosome, control, strict=True):
        _split_face(version, clinic_a, exosome_days=e, control_days=c, exosome_peak=2, control_peak=3)

    comparison = split_face_comparison(user=clinician, filters=ReviewFilters(), now=NOW)

    assert comparison.treatments == 7
    metric = {m.name: m for m in comparison.metrics}["days_to_reepithelialisation"]
    differences = np.array(exosome) - np.array(control)
    assert metric.pairs == 7
    assert metric.mean_difference == pytest.approx(differences.mean())
    assert metric.median_difference == float(np.median(differences))
    assert (metric.exosome_better, metric.control_better, metric.equal) == (6, 0, 1)
    assert metric.p_value == pytest.approx(stats.wilcoxon(exosome, control).pvalue)
    assert metric.exosome.median == 5.0 and metric.control.median == 7.0
    peak = {m.name: m for m in comparison.metrics}["peak_erythema"]
    assert peak.p_value == pytest.approx(stats.wilcoxon([2] * 7, [3] * 7).pvalue)
    assert "not a randomised trial" in comparison.note
    assert [p.mean for p in comparison.erythema_by_day["exosome"]] == [2.0]
    assert [p.mean for p in comparison.erythema_by_day["control"]] == [3.0]


def test_split_face_gives_no_p_value_below_six_pairs(protocol, clinic_a, clinician):
    version = VersionFactory(protocol=protocol)
    for e, c in [(4, 6), (5, 7), (5, 8), (6, 9), (4, 7)]:
        _split_face(version, clinic_a, exosome_days=e, control_days=c)
    metric = {m.name: m for m in split_face_comparison(user=clinician, filters=ReviewFilters(), now=NOW).metrics}[
        "days_to_reepithelialisation"
    ]
    assert metric.pairs == 5
    assert metric.p_value is None
    assert "at least 6" in metric.test_note


def test_paired_test_says_why_when_every_difference_is_zero_or_too_few_differ():
    assert paired_test([0.0] * 8) == (None, "No test: every paired difference is zero.")
    p_value, note = paired_test([0.0] * 6 + [1.0, -1.0])
    assert p_value is None
    assert "only 2 pairs differ" in note
    assert "only 1 pair differs" in paired_test([0.0] * 7 + [1.0])[1]
    assert paired_test([1.0])[1] == "No test: 1 pair, at least 6 are needed."
    p_value, _note = paired_test([1.0, -2.0, 3.0, 4.0, 5.0, 6.0])
    assert p_value == pytest.approx(stats.wilcoxon([1, -2, 3, 4, 5, 6]).pvalue)


def test_split_face_leaves_out_treatments_without_one_exosome_and_one_control_arm(protocol, clinic_a, clinician):
    version = VersionFactory(protocol=protocol)
    _split_face(version, clinic_a, exosome_days=4, control_days=6)
    two_products = _treatment(version, clinic_a)
    TreatmentArm.objects.create(treatment=two_products, label="left")
    TreatmentArm.objects.create(treatment=two_products, label="right")
    _treatment(version, clinic_a)  # no arms: not split-face at all
    comparison = split_face_comparison(user=clinician, filters=ReviewFilters(), now=NOW)
    assert (comparison.treatments, comparison.excluded) == (1, 1)


def test_split_face_sees_only_the_users_clinic(protocol, clinic_a, clinic_b, clinician_b):
    version = VersionFactory(protocol=protocol)
    for _ in range(6):
        _split_face(version, clinic_a, exosome_days=4, control_days=6)
    comparison = split_face_comparison(user=clinician_b, filters=ReviewFilters(), now=NOW)
    assert comparison.treatments == 0
    assert all(m.pairs == 0 for m in comparison.metrics)
