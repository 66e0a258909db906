"""The patient list finds a patient by date of birth, written ISO or day/month/year, alone or with a name."""

from __future__ import annotations

import datetime as dt

import pytest

from patients.patient_search import search_date, split_search
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

PATIENTS = "/admin/patients/patient/"


@pytest.fixture
def patients(clinic_a, clinic_b):
    return {
        "ada": PatientFactory(clinic=clinic_a, given_name="Ada", family_name="Nwosu", date_of_birth=dt.date(1988, 4, 2)),
        "ben": PatientFactory(clinic=clinic_a, given_name="Ben", family_name="Nwosu", date_of_birth=dt.date(1990, 1, 5)),
        # Born on 4 February: what 02/04/1988 would mean read month first.
        "cleo": PatientFactory(clinic=clinic_a, given_name="Cleo", family_name="Hart", date_of_birth=dt.date(1988, 2, 4)),
        "elsewhere": PatientFactory(clinic=clinic_b, given_name="Dan", family_name="Nwosu",
                                    date_of_birth=dt.date(1988, 4, 2)),
    }


def _found(client, search: str) -> set[str]:
    response = client.get(PATIENTS, {"q": search})
    assert response.status_code == 200
    return {patient.given_name for patient in response.context["cl"].result_list}


@pytest.mark.parametrize("search", ["1988-04-02", "02/04/1988", "2/4/1988", "02.04.1988", "02-04-1988"])
def test_it_finds_the_patient_born_that_day(client, coordinator, patients, search):
    client.force_login(coordinator)
    assert _found(client, search) == {"Ada"}


def test_day_month_year_is_read_day_first(client, coordinator, patients):
    client.force_login(coordinator)
    assert _found(client, "04/02/1988") == {"Cleo"}


def test_a_name_and_a_date_together_narrow_the_list(client, coordinator, patients):
    client.force_login(coordinator)
    assert _found(client, "Nwosu") == {"Ada", "Ben"}
    assert _found(client, "Nwosu 1988-04-02") == {"Ada"}
    assert _found(client, "02/04/1988 Nwosu") == {"Ada"}
    assert _found(client, "Hart 1988-04-02") == set()


def test_the_list_says_how_to_write_the_date(client, coordinator, patients):
    client.force_login(coordinator)
    body = client.get(PATIENTS).content.decode()
    assert "02/04/1988 is 2 April 1988" in body


def test_the_list_filters_by_decade_of_birth(client, coordinator, patients):
    client.force_login(coordinator)
    response = client.get(PATIENTS, {"born": "1980"})
    assert {patient.given_name for patient in response.context["cl"].result_list} == {"Ada", "Cleo"}
    offered = [choice["display"] for spec in response.context["cl"].filter_specs if spec.title == "born in"
               for choice in spec.choices(response.context["cl"])]
    assert offered == ["All", "the 1990s", "the 1980s"]


@pytest.mark.parametrize(("term", "day"), [
    ("1988-04-02", dt.date(1988, 4, 2)),
    ("2/4/1988", dt.date(1988, 4, 2)),
    ("31/12/1999", dt.date(1999, 12, 31)),
    ("31/02/1988", None),  # no such day
    ("02/04/88", None),  # a two-digit year's century is a guess
    ("1988", None),
    ("Nwosu", None),
    ("P-1988-04", None),
])
def test_search_date_reads_iso_and_day_month_year_only(term, day):
    assert search_date(term) == day


def test_split_search_keeps_quoted_phrases_for_the_word_search():
    assert split_search('"van der Berg" 2/4/1988 ada') == ([dt.date(1988, 4, 2)], '"van der Berg" ada')
