"""Browser fixtures: Playwright driving Debian's Chromium (never a downloaded browser)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from patients.links import create_link, token_for
from tests.conftest import IN_CI
from tests.factories import TreatmentFactory

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
# The README shows these; a run with AFTERCARE_SCREENSHOTS=1 refreshes them.
PUBLISHED_SCREENSHOTS = ROOT / "docs" / "screenshots"

# Playwright's sync API runs an event loop in the test thread; the test itself
# only touches the database between browser calls, never concurrently.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing, and CI=true requires the browser tests to run")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):  # noqa: ANN001, ANN201
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def phone(browser):  # noqa: ANN001, ANN201
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def self_report_url(live_server, clinic_a, settings) -> str:  # noqa: ANN001
    """The address of a day-3 self-report link, for a treatment of ``clinic_a`` that ended three days ago."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # rate limits count per address, and every browser here is 127.0.0.1
    ended = timezone.now() - dt.timedelta(days=3, hours=2)
    treatment = TreatmentFactory(screening__patient__clinic=clinic_a, started_at=ended - dt.timedelta(hours=1), ended_at=ended)
    link = create_link(patient=treatment.patient, purpose="self_report", treatment=treatment, time_point_day=3)
    return live_server.url + reverse("patients:link", kwargs={"token": token_for(link)})


def screenshot(page, name: str, *, publish: bool = False, full_page: bool = True) -> Path:  # noqa: ANN001
    """Save a PNG under var/screenshots; with ``publish`` and AFTERCARE_SCREENSHOTS=1, also in docs/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")  # the admin's sticky sidebar is drawn where the window was scrolled
    page.screenshot(path=str(path), full_page=full_page)
    if publish and os.environ.get("AFTERCARE_SCREENSHOTS") == "1":
        PUBLISHED_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, PUBLISHED_SCREENSHOTS / path.name)
    return path


def admin_login(page, live_server, username: str, password: str) -> None:  # noqa: ANN001
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
