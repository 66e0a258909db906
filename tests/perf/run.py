"""The driver: own database and broker, production settings, the chosen benchmarks, a summary, cleanup."""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
import time
import warnings

from tests.perf.environment import BenchEnvironment, machine_line

BENCHMARKS = {
    "reminders": "tests.perf.reminders",
    "timeline": "tests.perf.timeline",
    "export": "tests.perf.export",
    "pages": "tests.perf.pages",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.perf",
        description="Aftercare benchmarks. PostgreSQL and Redis when DATABASE_URL / CELERY_BROKER_URL point at them, "
                    "SQLite and kombu's filesystem broker otherwise; always a database of the benchmark's own.",
    )
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                        help=f"which to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--scale", type=float, default=float(os.environ.get("AFTERCARE_BENCH_SCALE") or 1.0),
                        help="multiply every size by this (default 1, the issue's sizes; env AFTERCARE_BENCH_SCALE)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a ratio misses its target")
    parser.add_argument("--keep", action="store_true", help="keep the database and scratch directory (to inspect them)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.benchmarks if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if not 0 < args.scale <= 10:
        parser.error("--scale must be in (0, 10]")
    args.benchmarks = args.benchmarks or list(BENCHMARKS)
    return args


def services_line() -> str:
    from django.conf import settings
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
    else:
        database = f"SQLite {sqlite3.sqlite_version}"
    broker_url = settings.CELERY_BROKER_URL
    if broker_url.startswith(("redis://", "rediss://")):
        import redis

        broker = f"Redis {redis.Redis.from_url(broker_url).info('server')['redis_version']}"
    else:
        broker = "kombu filesystem broker"
    return f"{database} + {broker}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = BenchEnvironment.from_environment()
    env.apply()
    try:
        env.create_database()
        return _run(args, env)
    finally:
        env.cleanup(keep=args.keep)
        if args.keep:
            print(f"kept: {env.database_url} and {env.scratch}")


def _run(args: argparse.Namespace, env: BenchEnvironment) -> int:
    import django
    from django.core.management import call_command

    # Static files are not collected for a benchmark; whitenoise says so once per process.
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
    django.setup()
    started = time.monotonic()
    call_command("migrate", verbosity=0)
    env.flush_broker()
    header = [
        f"Aftercare benchmarks, scale {args.scale:g}, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"machine:  {machine_line()}",
        f"services: {services_line()} (database {env.db_name or 'in a temporary file'}, DEBUG off)",
    ]
    print("\n".join(header), flush=True)
    results = []
    for name in args.benchmarks:
        module = importlib.import_module(BENCHMARKS[name])
        print(f"\n-- {name} --", flush=True)
        result = module.run(env=env, scale=args.scale, log=lambda text: print(text, flush=True))
        print(result.render(), flush=True)
        results.append(result)
    from tests.perf.report import render_summary

    print(f"\nREADME table ({time.monotonic() - started:.0f} s in all):\n")
    print(render_summary(results, header=header[1:]))
    failed_checks = [result.name for result in results if not result.checks_passed]
    missed = [result.name for result in results if result.target_met is False]
    if failed_checks:
        print(f"\nFAILED checks in: {', '.join(failed_checks)}", file=sys.stderr)
        return 1
    return 1 if args.strict and missed else 0
