"""Follow-up visits by day on the reminder list, on each clinic's clock, and "Follow-up visits today" on the dashboard."""

from __future__ import annotations

import datetime as dt
import html
import re
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from clinic.models import Role
from patients.models import Reminder, Treatment
from tests.factories import ClinicFactory, MembershipFactory, ReminderFactory, TreatmentFactory, staff

pytestmark = pytest.mark.django_db

UTC = dt.UTC
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
# Wednesday 6 May 2026, 23:30 in London; already Thursday 08:30 in Sydney.
NOW = dt.datetime(2026, 5, 6, 22, 30, tzinfo=UTC)
LIST = reverse("admin:patients_reminder_changelist")


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def sydney():
    return ClinicFactory(name="Harbour Sydney", slug="sydney", time_zone="Australia/Sydney")


def visit(clinic, at: dt.datetime, *, kind: str = "follow_up_visit", title: str = "", **fields) -> Reminder:
    treatment = TreatmentFactory(screening__patient__clinic=clinic, started_at=NOW - dt.timedelta(days=3),
                                 ended_at=NOW - dt.timedelta(days=3))
    return ReminderFactory(treatment=treatment, step__kind=kind, step__title=title or f"{kind} {at:%a %H:%M}",
                           occurs_at=at, due_at=at - dt.timedelta(days=1), **fields)


def listed(client, **query) -> set[str]:
    response = client.get(LIST, query)
    assert response.status_code == 200
    return {reminder.step.title for reminder in response.context["cl"].result_list}


def test_the_list_shows_the_visits_of_each_clinics_day(client, clinic_a, sydney):
    person = staff(Role.COORDINATOR, clinic_a)
    MembershipFactory(user=person, clinic=sydney, role=Role.COORDINATOR)  # one person, two clinics' clocks
    visit(clinic_a, dt.datetime(2026, 5, 6, 9, 0, tzinfo=LONDON), title="London today")
    visit(clinic_a, dt.datetime(2026, 5, 7, 9, 0, tzinfo=LONDON), title="London tomorrow")
    visit(clinic_a, dt.datetime(2026, 5, 6, 11, 0, tzinfo=LONDON), kind="outcome_check", title="London check today")
    visit(clinic_a, dt.datetime(2026, 5, 1, 9, 0, tzinfo=LONDON), title="London Friday before")
    visit(clinic_a, dt.datetime(2026, 5, 10, 9, 0, tzinfo=LONDON), title="London Sunday")
    # Thursday in Sydney is "today" there, though London is still on Wednesday.
    visit(sydney, dt.datetime(2026, 5, 7, 14, 0, tzinfo=SYDNEY), title="Sydney today")
    visit(sydney, dt.datetime(2026, 5, 6, 14, 0, tzinfo=SYDNEY), title="Sydney yesterday")
    client.force_login(person)

    assert listed(client, step_kind="follow_up_visit", occurs="today") == {"London today", "Sydney today"}
    assert listed(client, step_kind="follow_up_visit", occurs="tomorrow") == {"London tomorrow"}
    # London's week is Monday 4 … Sunday 10 May; Sydney's too (its today is Thursday 7 May).
    assert listed(client, step_kind="follow_up_visit", occurs="this_week") == {
        "London today", "London tomorrow", "London Sunday", "Sydney today", "Sydney yesterday",
    }
    # The seven days up to today: London's from Thursday 30 April, Sydney's from Friday 1 May.
    assert listed(client, step_kind="follow_up_visit", occurs="past_7_days") == {
        "London today", "London Friday before", "Sydney today", "Sydney yesterday",
    }
    assert listed(client, occurs="today") == {"London today", "London check today", "Sydney today"}
    assert listed(client, step_kind="outcome_check") == {"London check today"}
    page = client.get(LIST).content.decode()
    assert "By step kind" in page and "Follow-up visit" in page
    assert "By step happens (clinic&#x27;s day)" in page and "Past 7 days (with today)" in page


def test_the_dashboard_counts_todays_visits_and_links_to_them(client, clinic_a, clinic_b, coordinator):
    today = dt.datetime(2026, 5, 6, 15, 0, tzinfo=LONDON)
    for title in ("Visit A", "Visit B"):
        visit(clinic_a, today, title=title)
    visit(clinic_a, today, title="Visit sent", status=Reminder.Status.SENT)
    visit(clinic_a, today, title="Called off", status=Reminder.Status.CANCELLED)
    cancelled = visit(clinic_a, today, title="Cancelled treatment", status=Reminder.Status.SENT)
    Treatment.objects.filter(pk=cancelled.treatment_id).update(status=Treatment.Status.CANCELLED)
    visit(clinic_a, today + dt.timedelta(days=1), title="Tomorrow")
    visit(clinic_a, today, kind="outcome_check", title="Not a visit")
    visit(clinic_b, dt.datetime(2026, 5, 6, 15, 0, tzinfo=UTC), title="Other clinic")
    client.force_login(coordinator)

    body = client.get("/admin/").content.decode()

    assert "Follow-up visits today" in body
    found = re.search(r'data-metric="visits_today"><a href="([^"]+)"[^>]*>(\d+)</a>', body)
    assert found and found.group(2) == "3"
    response = client.get(html.unescape(found.group(1)))
    assert response.status_code == 200
    assert {reminder.step.title for reminder in response.context["cl"].result_list} == {"Visit A", "Visit B", "Visit sent"}


def test_no_visits_today_shows_zero(client, clinic_a, coordinator):
    client.force_login(coordinator)
    assert 'data-metric="visits_today">0<' in client.get("/admin/").content.decode()
