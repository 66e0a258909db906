"""Two seeded clinics, built once per module inside a transaction that is rolled back afterwards."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction
from django.test import override_settings

from tests.security.matrix import signed_in
from tests.security.world import World, build_world


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> World:
    """Clinics A and B with a month of data each. Tests run in savepoints inside this transaction."""
    media = tmp_path_factory.mktemp("isolation-media")
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Thousands of refused requests would each log a "Not Found" or "Forbidden" warning.
    requests_log = logging.getLogger("django.request")
    level, requests_log.level = requests_log.level, logging.CRITICAL
    try:
        with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media, PASSWORD_HASHERS=fast), transaction.atomic():
            yield build_world()
            transaction.set_rollback(True)
    finally:
        requests_log.setLevel(level)


@pytest.fixture(scope="module")
def clients_a(world: World, django_db_blocker) -> dict:
    """A signed-in, two-factor-verified browser session for each role of clinic A."""
    with django_db_blocker.unblock():
        return {role: signed_in(user) for role, user in world.staff_a.items()}
