"""Celery tasks for exports: thin wrappers that load by id and call ``patients.exports``."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from patients import exports


# A million-row FHIR bundle validates every resource, which takes far longer
# than the project-wide five-minute limit meant for sending one email.
@shared_task(name="patients.export_tasks.run_export", time_limit=4 * 3600, soft_time_limit=4 * 3600 - 60)
def run_export(export_id: int) -> str:
    """Run one pending export into a stored file, writing its progress as it goes."""
    export = exports.run_export(export_id)
    return export.status if export is not None else "not claimed"


@shared_task(name="patients.export_tasks.delete_expired_exports")
def delete_expired_exports() -> dict[str, int]:
    """Hourly (beat schedule in the database): delete files past retention, fail runs that died."""
    now = timezone.now()
    return {
        "deleted": exports.delete_expired_exports(now=now),
        "failed_stale": exports.fail_stale_exports(now=now),
    }
