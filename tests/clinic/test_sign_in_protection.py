"""Staff sign-in is protected: idle sessions end, repeated wrong passwords lock the door, token requests are throttled.

Each test drives the real login page or token endpoint; clocks move with time-machine.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.test import APIClient

from tests.clinic.test_headers import _production_python
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/?next=/admin/"
START = dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def fresh_counters():
    # Throttle counts live in the cache; other tests must neither feed nor see them.
    cache.clear()
    yield
    cache.clear()


def _sign_in(client, user, password=PASSWORD):
    return client.post(LOGIN, {"username": user.username, "password": password})


# --- sessions -----------------------------------------------------------------------------------------


def test_sessions_end_after_30_idle_minutes_and_when_the_browser_closes():
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True


def test_the_idle_time_is_configurable():
    result = _production_python("import django; django.setup(); from django.conf import settings; "
                                "print(settings.SESSION_COOKIE_AGE)", SESSION_IDLE_MINUTES="45")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2700"


def test_the_session_cookie_is_dropped_when_the_browser_closes(client, clinician):
    response = _sign_in(client, clinician)

    assert response.status_code == 302
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == "" and cookie["expires"] == ""
    assert cookie["httponly"] is True


def test_activity_keeps_a_session_alive_and_30_idle_minutes_end_it(client, clinician):
    with time_machine.travel(START, tick=False) as clock:
        assert _sign_in(client, clinician).status_code == 302
        for _ in range(3):  # an hour of work, a request every 20 minutes
            clock.shift(dt.timedelta(minutes=20))
            assert client.get("/admin/").status_code == 200
        clock.shift(dt.timedelta(minutes=31))
        response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- lockout after repeated failures (django-axes) -------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_on_the_admin_login_even_for_the_right_one(client, clinician):
    statuses = [_sign_in(client, clinician, password="not-the-password").status_code
                for _ in range(settings.AXES_FAILURE_LIMIT)]

    response = _sign_in(client, clinician)

    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the fifth failure locks
    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302  # not signed in


def test_the_lockout_lifts_after_the_cool_off(client, clinician):
    with time_machine.travel(START, tick=False) as clock:
        for _ in range(settings.AXES_FAILURE_LIMIT):
            _sign_in(client, clinician, password="not-the-password")
        clock.shift(dt.timedelta(minutes=16))
        response = _sign_in(client, clinician)

    assert response.status_code == 302


def test_repeated_wrong_passwords_on_the_token_endpoint_lock_it_too(clinician):
    api = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        assert api.post("/api/v1/auth/token/", {"username": clinician.username, "password": "nope"}).status_code == 400

    response = api.post("/api/v1/auth/token/", {"username": clinician.username, "password": PASSWORD})

    # The same refusal as a wrong password: the right one issues no token while the lock holds.
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}


@override_settings(AFTERCARE_TRUSTED_PROXIES=1)
def test_behind_a_proxy_wrong_passwords_lock_the_attackers_address_not_every_address(clinician):
    attacker = Client(headers={"X-Forwarded-For": "203.0.113.66"})
    colleague = Client(headers={"X-Forwarded-For": "198.51.100.7"})  # the real user, behind the same proxy
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(attacker, clinician, password="not-the-password")

    assert _sign_in(attacker, clinician).status_code == 429
    assert _sign_in(colleague, clinician).status_code == 302
    assert AccessAttempt.objects.get().ip_address == "203.0.113.66"


def test_with_no_trusted_proxy_a_forged_forwarded_header_does_not_dodge_the_lockout(client, clinician):
    for n in range(settings.AXES_FAILURE_LIMIT):
        client.post(LOGIN, {"username": clinician.username, "password": "nope"}, headers={"X-Forwarded-For": f"10.0.0.{n}"})

    response = client.post(LOGIN, {"username": clinician.username, "password": PASSWORD},
                           headers={"X-Forwarded-For": "10.0.0.99"})

    assert response.status_code == 429


# --- throttling (DRF) -------------------------------------------------------------------------------------------------


def test_the_token_endpoint_throttles_one_address_after_ten_attempts_a_minute(clinician):
    api = APIClient()
    with time_machine.travel(START, tick=False):
        statuses = [api.post("/api/v1/auth/token/", {"username": f"guess{n}", "password": "x"}).status_code for n in range(10)]
        throttled = api.post("/api/v1/auth/token/", {"username": clinician.username, "password": PASSWORD})

    assert statuses == [400] * 10
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0


def test_the_token_endpoint_issues_a_token_below_the_limit(clinician):
    response = APIClient().post("/api/v1/auth/token/", {"username": clinician.username, "password": PASSWORD})

    assert response.status_code == 200
    assert len(response.json()["token"]) == 40


def test_a_forged_forwarded_header_does_not_restart_the_token_throttle(clinician):
    api = APIClient()
    with time_machine.travel(START, tick=False):
        for n in range(10):
            api.post("/api/v1/auth/token/", {"username": f"guess{n}", "password": "x"}, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        throttled = api.post("/api/v1/auth/token/", {"username": clinician.username, "password": PASSWORD},
                             HTTP_X_FORWARDED_FOR="10.0.0.99")

    assert throttled.status_code == 429


@override_settings(AFTERCARE_TRUSTED_PROXIES=1)
def test_behind_one_trusted_proxy_the_token_throttle_counts_each_client(clinician):
    api = APIClient()
    with time_machine.travel(START, tick=False):
        for n in range(10):
            api.post("/api/v1/auth/token/", {"username": f"guess{n}", "password": "x"}, HTTP_X_FORWARDED_FOR="203.0.113.66")
        guesser = api.post("/api/v1/auth/token/", {"username": "guess", "password": "x"}, HTTP_X_FORWARDED_FOR="203.0.113.66")
        colleague = api.post("/api/v1/auth/token/", {"username": clinician.username, "password": PASSWORD},
                             HTTP_X_FORWARDED_FOR="198.51.100.7")

    assert guesser.status_code == 429
    assert colleague.status_code == 200
