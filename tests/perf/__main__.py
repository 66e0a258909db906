"""``python -m tests.perf [reminders|timeline|export|pages ...] [--scale S]`` (``make bench`` runs all four)."""

from tests.perf.run import main

raise SystemExit(main())
