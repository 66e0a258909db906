"""The client's address: REMOTE_ADDR, or X-Forwarded-For counted from the right past the proxies we run."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings

from clinic.client_address import client_address
from tests.clinic.test_headers import _production_python

PROXY = "127.0.0.1"  # what gunicorn sees behind the proxy, as the Procfile binds it


def _request(forwarded_for: str | None = None, remote_addr: str = PROXY):
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return RequestFactory().get("/", REMOTE_ADDR=remote_addr, headers=headers)


def test_with_no_trusted_proxy_it_ignores_the_header():
    assert client_address(_request("203.0.113.9")) == PROXY


@override_settings(AFTERCARE_TRUSTED_PROXIES=1)
def test_with_one_trusted_proxy_it_takes_the_address_the_proxy_appended():
    assert client_address(_request("203.0.113.9")) == "203.0.113.9"


@override_settings(AFTERCARE_TRUSTED_PROXIES=1)
def test_it_ignores_what_the_client_wrote_left_of_the_proxys_entry():
    assert client_address(_request("10.0.0.1, 198.51.100.20,203.0.113.9")) == "203.0.113.9"


@override_settings(AFTERCARE_TRUSTED_PROXIES=2)
def test_with_two_trusted_proxies_it_skips_the_inner_proxys_entry():
    # The outer proxy appended the client, the inner one appended the outer proxy.
    assert client_address(_request("10.0.0.1, 203.0.113.9, 192.0.2.1")) == "203.0.113.9"


@override_settings(AFTERCARE_TRUSTED_PROXIES=2)
def test_it_falls_back_to_the_connection_when_a_proxy_added_no_entry():
    # One entry for two proxies: it may be the client's own, so it is not believed.
    assert client_address(_request("203.0.113.9")) == PROXY


@override_settings(AFTERCARE_TRUSTED_PROXIES=1)
@pytest.mark.parametrize("header", [None, "", " ", "not-an-address", "203.0.113.9:4711", "10.0.0.1, "])
def test_it_falls_back_to_the_connection_on_a_missing_or_malformed_header(header):
    assert client_address(_request(header)) == PROXY


@override_settings(AFTERCARE_TRUSTED_PROXIES=1)
def test_it_writes_one_ipv6_address_one_way():
    assert client_address(_request("2001:DB8:0::1")) == client_address(_request("2001:db8::1")) == "2001:db8::1"


def test_it_has_no_address_for_a_request_without_a_valid_one():
    assert client_address(_request(remote_addr="")) is None


def test_the_number_of_proxies_comes_from_the_environment():
    code = "import django; django.setup(); from django.conf import settings; print(settings.AFTERCARE_TRUSTED_PROXIES)"
    assert _production_python(code).stdout.strip() == "0"
    assert _production_python(code, AFTERCARE_TRUSTED_PROXIES="2").stdout.strip() == "2"
    refused = _production_python(code, AFTERCARE_TRUSTED_PROXIES="-1")
    assert refused.returncode != 0
    assert "AFTERCARE_TRUSTED_PROXIES must be at least 0" in refused.stderr
