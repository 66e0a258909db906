"""The outcome checks awaiting entry: the rows behind the dashboard's count, on their own admin page."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.models import Role
from patients.admin import awaiting
from patients.models import OutcomeAssessment, Treatment
from patients.outcome_status import outcomes_awaiting, outcomes_awaiting_count
from tests.factories import MembershipFactory, StepFactory, TreatmentFactory, VersionFactory, staff

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC)
PAGE = reverse("admin:outcomes_awaiting")


@pytest.fixture(autouse=True)
def setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with time_machine.travel(NOW, tick=False):
        yield


def _version(clinic, *days):
    version = VersionFactory(protocol__clinic=clinic)
    for day in days:
        StepFactory(version=version, kind="outcome_check", timing="local_time", day=day)
    StepFactory(version=version, kind="home_application", timing="local_time", day=1)
    return version


@pytest.fixture
def version(clinic_a):
    return _version(clinic_a, 3, 7)


def _treatment(clinic, version, days_ago, **kwargs):
    ended = NOW - dt.timedelta(days=days_ago)
    return TreatmentFactory(
        screening__patient__clinic=clinic, screening__protocol_version=version,
        started_at=ended - dt.timedelta(hours=1), ended_at=ended, **kwargs,
    )


def _entry(treatment, day, source="clinician"):
    OutcomeAssessment.objects.create(treatment=treatment, time_point_day=day, source=source, erythema=1)


@pytest.fixture
def mixed(clinic_a, clinic_b, version):
    """Clinic A's awaiting checks as (treatment, day), most overdue first; and clinic B's one."""
    ten_days = _treatment(clinic_a, version, 10)
    _entry(ten_days, 3)  # day 3 entered, day 7 awaiting
    five_days = _treatment(clinic_a, version, 5)  # day 3 awaiting, day 7 still to come
    patient_only = _treatment(clinic_a, version, 10)
    _entry(patient_only, 3)
    _entry(patient_only, 7, source="patient")  # the patient's own report is not the clinician's check
    complete = _treatment(clinic_a, version, 10)
    _entry(complete, 3)
    _entry(complete, 7)
    _treatment(clinic_a, version, 10, status=Treatment.Status.CANCELLED)
    _treatment(clinic_a, version, 200)  # long past: a gap in the record, not today's work
    edge = _treatment(clinic_a, version, 95)  # day 3 fell due 92 days ago (outside the window), day 7 88 days ago
    _treatment(clinic_a, VersionFactory(protocol__clinic=clinic_a), 10)  # no outcome checks in its protocol
    other = _treatment(clinic_b, _version(clinic_b, 3), 10)
    return [(edge, 7), (ten_days, 7), (patient_only, 7), (five_days, 3)], [(other, 3)]


def _pairs(rows) -> list[tuple[int, int]]:
    return [(row["treatment_id"], row["day"]) for row in rows]


def _ids(pairs) -> list[tuple[int, int]]:
    return [(treatment.pk, day) for treatment, day in pairs]


def _listed(response) -> list[tuple[int, int]]:
    return [(check.treatment.pk, check.day) for check, _may_log in response.context["rows"]]


def test_it_lists_exactly_the_checks_the_dashboard_counts_most_overdue_first(clinic_a, clinic_b, mixed):
    in_a, in_b = mixed
    rows = list(outcomes_awaiting(clinics=[clinic_a], now=NOW))
    assert _pairs(rows) == _ids(in_a)
    assert len(rows) == outcomes_awaiting_count(clinic=clinic_a, now=NOW) == 4
    assert rows[0]["due_at"] == in_a[0][0].ended_at + dt.timedelta(days=7)
    assert _pairs(outcomes_awaiting(clinics=[clinic_b], now=NOW)) == _ids(in_b)
    assert outcomes_awaiting_count(clinic=clinic_b, now=NOW) == 1


def test_a_check_is_listed_from_the_moment_its_day_has_passed(clinic_a, version):
    treatment = _treatment(clinic_a, version, 0)
    assert not outcomes_awaiting(clinics=[clinic_a], now=treatment.ended_at + dt.timedelta(days=3, seconds=-1))
    assert _pairs(outcomes_awaiting(clinics=[clinic_a], now=treatment.ended_at + dt.timedelta(days=3))) == [
        (treatment.pk, 3)
    ]


def test_the_dashboard_count_links_to_the_page_listing_its_rows(client, clinician, clinic_a, mixed):
    client.force_login(clinician)
    body = client.get("/admin/").content.decode()
    found = re.search(r'data-metric="outcomes_awaiting"><a href="([^"]+)"[^>]*>(\d+)</a>', body)
    assert found
    assert html.unescape(found.group(1)) == f"{PAGE}?clinic={clinic_a.pk}"
    listed = client.get(html.unescape(found.group(1)))
    assert listed.status_code == 200
    assert len(_listed(listed)) == int(found.group(2)) == 4


def test_a_count_of_zero_is_not_a_link(client, clinician, clinic_a):
    client.force_login(clinician)
    assert 'data-metric="outcomes_awaiting">0<' in client.get("/admin/").content.decode()


def test_the_page_links_each_check_to_its_treatment_and_to_the_outcome_form_for_its_day(
    client, clinician, clinic_a, mixed
):
    in_a, _ = mixed
    treatment, day = in_a[-1]
    client.force_login(clinician)
    response = client.get(PAGE, {"clinic": clinic_a.pk})
    assert _listed(response) == _ids(in_a)
    body = response.content.decode()
    row = body[body.index(f'data-treatment="{treatment.pk}" data-day="{day}"'):]
    row = row[:row.index("</tr>")]
    assert treatment.patient.full_name in row and "day 3" in row
    assert reverse("admin:patients_treatment_change", args=[treatment.pk]) in row
    assert "Wed 2026-03-18 12:00" in row and "2\xa0days ago" in row  # 3 days after the procedure, clinic time (GMT)
    add = f"{reverse('admin:patients_outcomeassessment_add')}?treatment={treatment.pk}&amp;time_point_day=3"
    assert f'href="{add}"' in row
    form = client.get(html.unescape(add)).context["adminform"].form
    assert (str(form.initial["treatment"]), str(form.initial["time_point_day"])) == (str(treatment.pk), "3")


def test_only_clinicians_get_the_link_to_log_outcomes(client, coordinator, clinic_a, mixed):
    client.force_login(coordinator)
    response = client.get(PAGE)
    assert len(_listed(response)) == 4
    assert [may_log for _check, may_log in response.context["rows"]] == [False] * 4
    assert reverse("admin:patients_outcomeassessment_add") not in response.content.decode()


def test_other_clinics_staff_see_only_their_own_rows(client, clinician_b, clinic_a, mixed):
    _, in_b = mixed
    client.force_login(clinician_b)
    response = client.get(PAGE)
    assert _listed(response) == _ids(in_b)
    assert client.get(PAGE, {"clinic": clinic_a.pk}).status_code == 404
    assert client.get(PAGE, {"clinic": "harbour"}).status_code == 404


def test_a_member_of_both_clinics_sees_both_with_the_clinic_named(client, clinic_a, clinic_b, mixed):
    in_a, in_b = mixed
    both = staff(Role.CLINICIAN, clinic_a, username="both")
    MembershipFactory(user=both, clinic=clinic_b, role=Role.CLINICIAN)
    client.force_login(both)
    response = client.get(PAGE)
    assert sorted(_listed(response)) == sorted(_ids(in_a + in_b))
    assert "Summit Dermatology" in response.content.decode()
    assert _listed(client.get(PAGE, {"clinic": clinic_b.pk})) == _ids(in_b)


def test_people_who_are_not_clinic_staff_are_sent_to_sign_in(client, django_user_model, mixed):
    for user in (
        django_user_model.objects.create_user("patientish", password="x" * 16),  # not staff
        django_user_model.objects.create_user("loner", password="x" * 16, is_staff=True),  # no clinic
    ):
        client.force_login(user)
        response = client.get(PAGE)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.logout()
    assert client.get(PAGE).status_code == 302


def test_it_pages_the_rows_in_order(client, clinician, clinic_a, mixed, monkeypatch):
    in_a, _ = mixed
    monkeypatch.setattr(awaiting, "PAGE_SIZE", 3)
    client.force_login(clinician)
    first, second = client.get(PAGE), client.get(PAGE, {"p": 2})
    assert _listed(first) + _listed(second) == _ids(in_a)
    assert 'href="?p=2"' in first.content.decode()


def _queries(client) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(PAGE)
    return len(captured.captured_queries), len(_listed(response))


def test_the_page_runs_as_many_queries_for_many_rows_as_for_one(
    client, clinician, clinic_a, version, django_assert_max_num_queries
):
    _treatment(clinic_a, version, 5)
    client.force_login(clinician)
    client.get(PAGE)  # first-request caches are not the page's
    one, shown = _queries(client)
    assert shown == 1
    for days_ago in (4, 6, 8, 12, 20, 30):
        _treatment(clinic_a, _version(clinic_a, 3, 7), days_ago)  # more rows, of more protocol versions
    many, shown = _queries(client)
    assert shown == 11
    assert many == one
    with django_assert_max_num_queries(one):
        client.get(PAGE)
