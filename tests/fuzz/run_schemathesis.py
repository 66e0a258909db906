"""Fuzz the REST API with schemathesis against a real server on a throwaway database.

``python -m tests.fuzz.run_schemathesis`` (or ``make fuzz``) migrates a fresh SQLite
database in a temporary folder, seeds the demo clinic, gives the demo clinic admin
and the demo clinician an API token each, starts gunicorn with production settings
(DEBUG off) on a free loopback port, and runs ``schemathesis run --checks all``
against ``/api/schema/`` once per user.  The exit code is schemathesis's: non-zero
when any check failed.  Everything it started is stopped and removed on the way out.

Why two users: the clinician may record treatments and outcomes, the clinic admin
may export, so together they reach every operation the API has (see ``USERS``).
Examples per operation are bounded (``FUZZ_MAX_EXAMPLES``, default 10) so a run
takes a few minutes on two cores; ``FUZZ_SEED`` picks another deterministic run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONFIG = Path(__file__).with_name("schemathesis.toml")
REPORTS = ROOT / "var" / "fuzz"  # JUnit reports, one per user, kept for a look after a failure
# Who fuzzes what. The clinician may do every write but exports; the clinic admin's
# run covers the exports (the clinician gets 403 there), so no operation goes untested.
USERS: dict[str, list[str]] = {
    "demo_clinician": [],
    "demo_admin": ["--include-path-regex", "^/api/v1/exports/"],
}


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment(var_dir: Path, port: int) -> dict[str, str]:
    """Production settings on the embedded default: SQLite, filesystem broker, emails to files."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"}}
    env.update({
        "AFTERCARE_VAR_DIR": str(var_dir),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "DATABASE_URL": f"sqlite:///{var_dir / 'fuzz.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "EMAIL_URL": f"filemail://{var_dir / 'mail'}",
        "DEFAULT_FROM_EMAIL": "care@aftercare.example.org",
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback; TLS is the proxy's job
        "DJANGO_SETTINGS_MODULE": "clinic.settings",
    })
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py, fixed arguments
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )
    return result.stdout


def prepare_database(env: dict[str, str]) -> dict[str, str]:
    """Migrate, seed the demo clinic and return an API token per fuzzing user."""
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    manage(env, "seed_demo")
    tokens = {}
    for username in USERS:
        # drf_create_token prints "Generated token <key> for user <name>".
        words = manage(env, "drf_create_token", username).split()
        tokens[username] = words[words.index("token") + 1]
    return tokens


def start_server(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    log = log_path.open("w")
    return subprocess.Popen(  # noqa: S603 - gunicorn from our own virtualenv, fixed arguments
        [str(BIN / "gunicorn"), "clinic.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "60"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def wait_until_up(url: str, server: subprocess.Popen, *, seconds: int = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a loopback URL we built
                return
        except OSError:  # refused, timed out or 503 while the workers start
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer {url} within {seconds} s")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def run_schemathesis(base_url: str, token: str, report: Path, *, work: Path, extra: list[str]) -> int:
    max_examples = os.environ.get("FUZZ_MAX_EXAMPLES", "10")
    command = [
        str(BIN / "schemathesis"), "--config-file", str(CONFIG), "run", f"{base_url}/api/schema/",
        "--header", f"Authorization: Token {token}",
        "--checks", "all",
        "--max-examples", max_examples,
        "--workers", "2",
        "--seed", os.environ.get("FUZZ_SEED", "20260101"),
        "--generation-database", "none",
        # The token above is the credential; generated session cookies would be mistaken for one.
        "--generation-with-security-parameters", "false",
        "--request-timeout", "30",
        "--report", "junit", "--report-junit-path", str(report),
        *extra,
    ]
    # Run from the temporary folder: schemathesis keeps a cache folder in its working directory.
    return subprocess.run(command, cwd=work, check=False).returncode  # noqa: S603 - fixed arguments


def operation_counts(reports: list[Path]) -> tuple[int, int]:
    """(passed, failed) test cases over schemathesis's JUnit reports: one per operation, plus the stateful phase."""
    passed = failed = 0
    for report in reports:
        if not report.exists():
            continue
        suites = ElementTree.parse(report).getroot()  # noqa: S314 - a report schemathesis just wrote
        bad = int(suites.get("failures", 0)) + int(suites.get("errors", 0))
        failed += bad
        passed += int(suites.get("tests", 0)) - bad - int(suites.get("skipped", 0))
    return passed, failed


def fuzz_every_user(base_url: str, tokens: dict[str, str], *, work: Path) -> int:
    """Run schemathesis once per user; return how many runs failed, after printing the closing line."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    failures = 0
    reports = []
    for username, extra in USERS.items():
        print(f"\n==> schemathesis as {username} {' '.join(extra)}", flush=True)
        report = REPORTS / f"{username}.xml"
        report.unlink(missing_ok=True)
        reports.append(report)
        if run_schemathesis(base_url, tokens[username], report, work=work, extra=extra) != 0:
            failures += 1
    passed, failed = operation_counts(reports)
    # One plain closing line: operations (and stateful scenarios) that passed every check, and those that
    # did not; a run that failed without a report (a crash) counts as failed too.
    print(f"\nschemathesis: {passed} passed, {max(failed, failures)} failed")
    return failures


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="aftercare-fuzz-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = server_environment(work / "var", port)
    server = None
    try:
        tokens = prepare_database(env)
        server = start_server(env, port, work / "server.log")
        wait_until_up(f"{base_url}/healthz", server)
        failures = fuzz_every_user(base_url, tokens, work=work)
        if failures:
            print("server log, last lines:")
            print("\n".join((work / "server.log").read_text().splitlines()[-60:]))
        return 1 if failures else 0
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
