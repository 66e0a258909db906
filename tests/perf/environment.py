"""Where a benchmark run happens: its own database and broker, production-like settings, and the machine.

A run never touches anybody else's data. On PostgreSQL it creates a database
of its own (``aftercare_bench_<pid>`` by default, so two runs never share one) on the server ``DATABASE_URL``
names and drops it afterwards; otherwise it uses a SQLite file in a temporary
directory. On Redis it uses a database number of its own (13 by default) and
empties only that one; otherwise kombu's filesystem broker in the temporary
directory. This module imports nothing from Django: it runs before the
settings are read.
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

DEFAULT_DB_NAME = "aftercare_bench"
DEFAULT_REDIS_DB = 13


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://", "pgsql://"))


def _with_path(url: str, path: str) -> str:
    return urlunparse(urlparse(url)._replace(path=path))


@dataclass
class BenchEnvironment:
    """The benchmark's own database, broker and scratch directory, and how to clean them up."""

    database_url: str
    broker_url: str
    scratch: Path
    db_name: str = ""
    maintenance_url: str = ""
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> BenchEnvironment:
        """PostgreSQL and Redis when ``DATABASE_URL`` / ``CELERY_BROKER_URL`` point at them, SQLite and files otherwise."""
        environ = dict(os.environ if environ is None else environ)
        scratch = Path(tempfile.mkdtemp(prefix="aftercare-bench-"))
        source_db = environ.get("DATABASE_URL", "")
        if _is_postgres(source_db):
            db_name = environ.get("AFTERCARE_BENCH_DB_NAME") or f"{DEFAULT_DB_NAME}_{os.getpid()}"
            database_url = _with_path(source_db, f"/{db_name}")
            maintenance_url = _with_path(source_db, "/postgres")
        else:
            db_name, maintenance_url = "", ""
            database_url = f"sqlite:///{scratch / 'bench.sqlite3'}"
        source_broker = environ.get("CELERY_BROKER_URL", "")
        if source_broker.startswith(("redis://", "rediss://")):
            number = environ.get("AFTERCARE_BENCH_REDIS_DB") or str(DEFAULT_REDIS_DB)
            broker_url = _with_path(source_broker, f"/{number}")
        else:
            broker_url = "filesystem://"
        return cls(database_url=database_url, broker_url=broker_url, scratch=scratch, db_name=db_name,
                   maintenance_url=maintenance_url)

    @property
    def on_postgres(self) -> bool:
        return _is_postgres(self.database_url)

    @property
    def on_redis(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://"))

    def settings_environ(self) -> dict[str, str]:
        """Variables for this process and every subprocess: production settings (DEBUG off) on the bench's own stores.

        DEBUG off matters: with it on Django keeps every query it runs and the
        templates carry debug information, which is not what production pays.
        """
        return {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
            "SITE_URL": "https://aftercare.bench.invalid",
            # The pages are requested in-process over plain HTTP.
            "SECURE_SSL_REDIRECT": "false",
            # Static files are not collected for a benchmark: use the plain storage, not the manifest one.
            "AFTERCARE_TESTING": "true",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "EMAIL_URL": "smtp://127.0.0.1:2525",  # replaced by the SMTP sink's port where mail is sent
            "DEFAULT_FROM_EMAIL": "Aftercare <aftercare@bench.invalid>",
            "AFTERCARE_VAR_DIR": str(self.scratch / "var"),
            "LOG_LEVEL": "WARNING",
        }

    def apply(self) -> None:
        os.environ.update(self.settings_environ())
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        os.environ["DJANGO_SETTINGS_MODULE"] = "clinic.settings"

    # --- the database ------------------------------------------------------------------

    def create_database(self) -> None:
        """A fresh, empty database for the run (PostgreSQL); SQLite creates its file on first use."""
        if not self.on_postgres:
            return
        self._maintenance(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self._maintenance(f'CREATE DATABASE "{self.db_name}"')

    def drop_database(self) -> None:
        if self.on_postgres:
            self._maintenance(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def _maintenance(self, statement: str) -> None:
        import psycopg

        parsed = urlparse(self.maintenance_url)
        with psycopg.connect(
            host=parsed.hostname or "127.0.0.1", port=parsed.port or 5432, user=parsed.username or "postgres",
            password=parsed.password or None, dbname="postgres", autocommit=True,
        ) as connection:
            connection.execute(statement)

    def flush_broker(self) -> None:
        """Empty the bench's own Redis database (nothing else lives there)."""
        if self.on_redis:
            import redis

            redis.Redis.from_url(self.broker_url).flushdb()

    def cleanup(self, *, keep: bool = False) -> None:
        if keep:
            return
        self.flush_broker()
        self.drop_database()
        shutil.rmtree(self.scratch, ignore_errors=True)


# --- the machine ------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def machine_line() -> str:
    """Cores, CPU model, memory and the load when the run started (other work on the machine skews timings)."""
    memory = memory_gib()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    parts = [f"{os.cpu_count()} cores", cpu_model()]
    if memory:
        parts.append(f"{memory:.0f} GiB RAM")
    parts += [f"Python {platform.python_version()}", f"{platform.system()} {platform.release()}", f"load average {load}"]
    return ", ".join(parts)
