"""Large exports run as a Celery task into a stored file with progress, kept for a limited time."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from unittest import mock

import pytest
import time_machine

from clinic.models import AuditEvent, Membership
from patients import export_tasks
from patients.exports import ExportRequest, start_export
from patients.models import Export
from tests.exports.conftest import NOW
from tests.exports.helpers import csv_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(auditor, clinic_a, outcome_data, django_capture_on_commit_callbacks):
    """A background export, its task message captured instead of sent to a broker."""
    with mock.patch.object(export_tasks.run_export, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        export = start_export(user=auditor, request=ExportRequest(clinic=clinic_a, identified=True), background=True)
    delay.assert_called_once_with(export.pk)
    return export


def test_it_queues_a_large_export_after_commit(auditor, clinic_a, outcome_data, settings, django_capture_on_commit_callbacks):
    settings.AFTERCARE_EXPORT_INLINE_MAX_ROWS = 3
    with mock.patch.object(export_tasks.run_export, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            export = start_export(user=auditor, request=ExportRequest(clinic=clinic_a))
        delay.assert_not_called()  # nothing reaches the broker before the job row is committed
        for callback in callbacks:
            callback()
    delay.assert_called_once_with(export.pk)
    assert not export.streamed
    assert export.rows_total == len(outcome_data.assessments)


def test_it_streams_a_small_export_without_a_task(auditor, clinic_a, outcome_data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        export = start_export(user=auditor, request=ExportRequest(clinic=clinic_a))
    assert export.streamed
    assert callbacks == []


def test_it_writes_the_file_with_progress_and_a_true_manifest(queued, outcome_data, monkeypatch):
    from patients import exports

    monkeypatch.setattr(exports, "PROGRESS_EVERY", 2)
    progress = []
    original = Export.objects.filter

    def spy(*args, **kwargs):  # records every progress write the task makes
        queryset = original(*args, **kwargs)
        if kwargs.get("pk") == queued.pk and set(kwargs) == {"pk"}:
            real_update = queryset.update

            def update(**values):
                if "rows_done" in values:
                    progress.append(values["rows_done"])
                return real_update(**values)

            queryset.update = update
        return queryset

    monkeypatch.setattr(Export.objects, "filter", spy)

    assert export_tasks.run_export(queued.pk) == "done"

    export = Export.objects.get(pk=queued.pk)
    assert progress == [2, 4]
    assert export.status == Export.Status.DONE
    assert export.rows_done == export.rows_total == export.row_count == len(outcome_data.assessments) == 5
    assert export.percent == 100
    assert export.expires_at == NOW + dt.timedelta(hours=24)
    body = export.file.read()
    assert hashlib.sha256(body).hexdigest() == export.sha256 == export.manifest["sha256"]
    assert len(csv_rows(body)) == 5
    assert export.file.name.startswith(f"exports/{export.clinic_id}/")
    assert AuditEvent.objects.get(action="export.run").detail["manifest"]["sha256"] == export.sha256


def test_it_runs_a_job_only_once(queued):
    assert export_tasks.run_export(queued.pk) == "done"
    assert export_tasks.run_export(queued.pk) == "not claimed"  # a redelivered message
    assert AuditEvent.objects.filter(action="export.run").count() == 1


def test_it_fails_the_job_when_the_requester_lost_the_export_role(queued, auditor):
    Membership.objects.filter(user=auditor).update(role="coordinator")

    assert export_tasks.run_export(queued.pk) == "failed"

    export = Export.objects.get(pk=queued.pk)
    assert not export.file
    assert "no longer" in export.error


def test_it_deletes_files_after_the_retention_period_and_keeps_the_record(queued, settings):
    export_tasks.run_export(queued.pk)
    export = Export.objects.get(pk=queued.pk)
    path = export.file.path

    with time_machine.travel(NOW + dt.timedelta(hours=23), tick=False):
        assert export_tasks.delete_expired_exports() == {"deleted": 0, "failed_stale": 0}
    with time_machine.travel(NOW + dt.timedelta(hours=24, minutes=1), tick=False):
        assert export_tasks.delete_expired_exports() == {"deleted": 1, "failed_stale": 0}

    export.refresh_from_db()
    assert export.status == Export.Status.EXPIRED
    assert not export.file
    assert export.sha256  # the record of what was exported stays
    assert not Path(path).exists()


def test_it_fails_runs_whose_worker_died(queued):
    Export.objects.filter(pk=queued.pk).update(status=Export.Status.RUNNING, started_at=NOW)

    with time_machine.travel(NOW + dt.timedelta(hours=7), tick=False):
        assert export_tasks.delete_expired_exports()["failed_stale"] == 1

    assert Export.objects.get(pk=queued.pk).status == Export.Status.FAILED


def test_the_worker_finds_the_tasks_through_celery_imports():
    from clinic.celery import app

    app.loader.import_default_modules()

    assert "patients.export_tasks.run_export" in app.tasks
    assert "patients.export_tasks.delete_expired_exports" in app.tasks
    assert app.tasks["patients.export_tasks.run_export"].time_limit > 3600


def test_it_runs_through_celerys_task_machinery(queued):
    result = export_tasks.run_export.apply(args=[queued.pk])

    assert result.get() == "done"
    assert Export.objects.get(pk=queued.pk).status == Export.Status.DONE


def test_the_cleanup_is_in_the_beat_schedule_stored_in_the_database():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="patients.export_tasks.delete_expired_exports")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "hours")
