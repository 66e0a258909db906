"""A fixed-window rate limit in the cache, for pages that have no login to throttle on."""

from __future__ import annotations

import time

from django.core.cache import cache


def allow(*, scope: str, key: str, limit: int, window_seconds: int = 60) -> bool:
    """Count one hit for ``key``; False once it passes ``limit`` hits in the current window."""
    bucket = f"ratelimit:{scope}:{key}:{int(time.time() // window_seconds)}"
    # add() is atomic: the first hit of a window creates the counter, the rest increment it.
    if cache.add(bucket, 1, timeout=window_seconds + 1):
        return True
    try:
        return cache.incr(bucket) <= limit
    except ValueError:  # the counter expired between add() and incr()
        cache.add(bucket, 1, timeout=window_seconds + 1)
        return True
