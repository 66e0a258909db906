"""Benchmarks (issue 9): each measures a part of Aftercare against a baseline measured in the same run.

``python -m tests.perf`` runs all four; ``python -m tests.perf reminders`` (or
``timeline``, ``export``, ``pages``) runs one; ``--scale 0.1`` shrinks every
size for a quick run. See ``tests/perf/__main__.py``.

Nothing here imports Django at module level except the benchmark modules,
which ``tests.perf.run`` imports only after it has pointed the settings at the
benchmark's own database and broker.
"""
