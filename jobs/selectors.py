"""Reads for jobs: one job of the caller, its progress, and its rows as results."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from common.errors import NotFound
from common.formatting import money
from jobs.models import ItemStatus, Job, JobItem, JobStatus

_PLACES = Decimal("1e-12")
_RESULT_FIELDS = ("position", "ref", "prompt", "status", "result", "error_code", "error_message", "cached", "cost_usd")


def job_get_for_user(*, job_id: UUID, user_id: int) -> Job:
    """Jobs are private to their user (any of the user's tokens may read them); others get a 404, not a 403."""
    job = Job.objects.defer("upload").filter(pk=job_id, user_id=user_id).first()
    if job is None:
        raise NotFound(f"No job {job_id}.", code="job_not_found")
    return job


def _item_stats(prefix: str = "") -> dict[str, Any]:
    """The counts and cost of a job's rows: aggregated over JobItem (`prefix` "") or annotated on Job ("items__")."""
    return {
        "ok": Count(f"{prefix}id", filter=Q(**{f"{prefix}status": ItemStatus.OK})),
        "failed": Count(f"{prefix}id", filter=Q(**{f"{prefix}status": ItemStatus.ERROR})),
        "cancelled": Count(f"{prefix}id", filter=Q(**{f"{prefix}status": ItemStatus.CANCELLED})),
        "running": Count(f"{prefix}id", filter=Q(**{f"{prefix}status": ItemStatus.RUNNING})),
        "cached": Count(f"{prefix}id", filter=Q(**{f"{prefix}cached": True})),
        "cost": Sum(f"{prefix}cost_usd"),
    }


def jobs_with_progress() -> QuerySet[Job]:
    """Every job, each with its rows' counts and cost (one query per page, see `job_progress`), unordered."""
    return Job.objects.defer("upload").annotate(**_item_stats("items__")).order_by()


def jobs_for_user(*, user_id: int) -> QuerySet[Job]:
    """The user's jobs, each with its rows' counts and cost. Ordering is left to the caller (the API pages newest
    first)."""
    return jobs_with_progress().filter(user_id=user_id)


def job_progress(*, job: Job) -> dict[str, Any]:
    """Total, done, failed, cost so far and an ETA: from the counts `jobs_for_user` annotated, else counted now."""
    if hasattr(job, "cost"):
        stats = {name: getattr(job, name) for name in _item_stats()}
    else:
        stats = JobItem.objects.filter(job=job).aggregate(**_item_stats())
    done = stats["ok"] + stats["failed"]
    pending = job.total - done - stats["cancelled"]
    return {
        "id": str(job.pk),
        "status": job.status,
        "total": job.total,
        "done": done,
        "failed": stats["failed"],
        "cancelled": stats["cancelled"],
        "pending": pending,
        "running": stats["running"],
        "cached": stats["cached"],
        "cost_usd": money(_exact(stats["cost"])),
        "eta_seconds": _eta(job, done, pending),
        "batch_id": job.batch_id,
        "source": job.source_kind,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _exact(total) -> Decimal:
    """SQLite sums decimals as floats: back to the column's 12 places."""
    return Decimal(total or 0).quantize(_PLACES)


def _eta(job: Job, done: int, pending: int) -> float | None:
    """Seconds left at the pace so far; None until a row is done (0 when nothing is left)."""
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING) or pending <= 0:
        return 0.0
    if not done or job.started_at is None:
        return None
    elapsed = (timezone.now() - job.started_at).total_seconds()
    return round(pending * elapsed / done, 1)


def job_rows(*, job: Job) -> Iterator[dict[str, Any]]:
    """The rows in input order, streamed from the database in chunks."""
    return JobItem.objects.filter(job=job).order_by("position").values(*_RESULT_FIELDS).iterator(chunk_size=2000)


def job_upload(*, job: Job) -> bytes | None:
    data = Job.objects.filter(pk=job.pk).values_list("upload", flat=True).first()
    return bytes(data) if data is not None else None
