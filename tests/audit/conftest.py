from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # The fixtures create staff users; the real password hasher makes that slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
