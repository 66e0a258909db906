"""The Celery application, wired the standard way (``CELERY_`` settings namespace).

Database connections in the worker live like a web request's: Celery's Django
fix-up would close them before and after every task (unless
``CELERY_DB_REUSE_MAX`` says otherwise, which the settings do), and a send task
would then pay for a new PostgreSQL connection — a server process — every time.
Instead, before and after each task Django's own rule applies: close a
connection that is older than ``CONN_MAX_AGE``, broken, or left mid-transaction;
keep (and health-check) the others.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings")

app = Celery("aftercare")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(*, task: Any = None, **_kwargs: Any) -> None:
    # Not for a task run eagerly inside the caller (a test, a shell): its
    # connection belongs to the caller, possibly mid-transaction.
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
