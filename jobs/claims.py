"""The database side of running a job: claiming items under a lease, storing results, finishing the job.

A claim is a conditional UPDATE (`pending`, or `running` with an expired lease), so two workers never hold the
same row; on PostgreSQL the candidate rows are also read with `SELECT ... FOR UPDATE SKIP LOCKED` so workers do
not queue behind each other. A row's result is written in the same transaction as the usage record that bills
it (see `item_record_hook`), so a worker killed at any moment leaves each row either unbilled and claimable again
or billed and finished — never billed twice.
"""

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.db import connection, transaction
from django.db.models import F, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import UserPreferences
from accounts.token_cache import CachedToken
from jobs.execution import RecordHook
from jobs.inputs import label_of
from jobs.models import FINISHED_JOB_STATUSES, ItemStatus, Job, JobItem, JobStatus
from llm.models import UsageRecord, UsageStatus
from llm.providers import Completion

UNFINISHED_ITEMS = (ItemStatus.PENDING, ItemStatus.RUNNING)


@dataclass(frozen=True)
class JobState:
    status: str
    stop_code: str = ""  # why the job must stop now (token revoked or expired), "" to go on
    stop_message: str = ""


def job_start(*, job_id: UUID | str) -> Job | None:
    """Mark the job running; None when it is finished (or gone) and there is nothing to do."""
    now = timezone.now()
    Job.objects.filter(pk=job_id, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).update(
        status=JobStatus.RUNNING, started_at=Coalesce("started_at", now), heartbeat_at=now
    )
    job = Job.objects.select_related("token__user").filter(pk=job_id).first()
    return None if job is None or job.is_finished else job


def job_token(job: Job) -> CachedToken | None:
    token = job.token
    if token is None:
        return None
    preferences = UserPreferences.objects.filter(user_id=token.user_id).first()
    return CachedToken(token=token, preferences=preferences)


def job_state(*, job_id: UUID) -> JobState:
    job = (
        Job.objects.select_related("token__user")
        .only("status", "token__revoked_at", "token__expires_at", "token__user__is_active")
        .filter(pk=job_id)
        .first()
    )
    if job is None:  # deleted while running
        return JobState(status=JobStatus.CANCELLED)
    token = job.token
    if job.is_finished:
        return JobState(status=job.status)
    if token is None or token.is_revoked or not token.user.is_active:
        return JobState(
            job.status, "token_revoked", "The job's API token was revoked; the remaining rows were not run."
        )
    if token.is_expired:
        return JobState(job.status, "token_expired", "The job's API token expired; the remaining rows were not run.")
    return JobState(status=job.status)


def items_claim(*, job_id: UUID, claim: str, limit: int, lease_seconds: float) -> list[JobItem]:
    now = timezone.now()
    claimable = Q(status=ItemStatus.PENDING) | Q(status=ItemStatus.RUNNING, lease_until__lt=now)
    with transaction.atomic():
        candidates = JobItem.objects.filter(job_id=job_id).filter(claimable).order_by("position")
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        JobItem.objects.filter(pk__in=ids).filter(claimable).update(
            status=ItemStatus.RUNNING,
            claim=claim,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=F("attempts") + 1,
        )
    return list(JobItem.objects.filter(pk__in=ids, claim=claim, status=ItemStatus.RUNNING).order_by("position"))


def items_renew(*, job_id: UUID, claim: str, lease_seconds: float) -> None:
    now = timezone.now()
    with transaction.atomic():
        Job.objects.filter(pk=job_id).update(heartbeat_at=now)
        JobItem.objects.filter(job_id=job_id, claim=claim, status=ItemStatus.RUNNING).update(
            lease_until=now + timedelta(seconds=lease_seconds)
        )


def items_release(*, job_id: UUID, item_ids: list[int], claim: str) -> None:
    """Claimed rows this worker will not run: back to pending, or cancelled with the job when it was stopped."""
    with transaction.atomic():
        JobItem.objects.filter(pk__in=item_ids, claim=claim, status=ItemStatus.RUNNING).update(
            status=ItemStatus.PENDING, claim="", lease_until=None
        )
        job = Job.objects.filter(pk=job_id).only("status", "error_code", "error_message").first()
        if job is None or job.is_finished:
            JobItem.objects.filter(job_id=job_id, status=ItemStatus.PENDING).update(
                status=ItemStatus.CANCELLED,
                error_code=job.error_code if job else "",
                error_message=job.error_message if job else "",
                finished_at=timezone.now(),
            )


def item_record_hook(*, item_id: int, claim: str, labels: list[str] | None = None) -> RecordHook:
    """Runs inside the usage record's transaction: a successful row is finished together with its bill. A failed
    attempt changes nothing here (the row may still be retried); `item_fail` finishes it if it was the last. With
    `labels`, an answer that is none of them is a failure too (the runner fails the row `answer_not_in_labels`)."""

    def hook(record: UsageRecord, completion: Completion | None) -> None:
        if completion is None:
            return
        text = completion.text if not labels else label_of(completion.text, labels)
        if text is None:
            return
        JobItem.objects.filter(pk=item_id, claim=claim, status=ItemStatus.RUNNING).update(
            status=ItemStatus.OK,
            result=text.replace("\x00", ""),  # PostgreSQL's text cannot hold NUL
            cached=record.status == UsageStatus.CACHED,
            cost_usd=record.cost_usd,
            usage_record=record,
            error_code="",
            error_message="",
            lease_until=None,
            finished_at=timezone.now(),
        )

    return hook


def item_fail(*, item_id: int, claim: str, code: str, message: str) -> None:
    JobItem.objects.filter(pk=item_id, claim=claim, status=ItemStatus.RUNNING).update(
        status=ItemStatus.ERROR,
        error_code=code[:60],
        error_message=message,
        lease_until=None,
        finished_at=timezone.now(),
    )


def job_fail(*, job_id: UUID, code: str, message: str) -> None:
    """A reason that concerns every row (budget used up, token revoked): stop, and cancel the rows not started."""
    now = timezone.now()
    with transaction.atomic():
        stopped = (
            Job.objects.filter(pk=job_id)
            .exclude(status__in=FINISHED_JOB_STATUSES)
            .update(status=JobStatus.FAILED, error_code=code[:60], error_message=message, finished_at=now)
        )
        if stopped:
            JobItem.objects.filter(job_id=job_id, status=ItemStatus.PENDING).update(
                status=ItemStatus.CANCELLED, error_code=code[:60], error_message=message, finished_at=now
            )


def job_finish_if_complete(*, job_id: UUID) -> bool:
    """True when no row is left to run (and the job is marked done unless it was cancelled or failed)."""
    if JobItem.objects.filter(job_id=job_id, status__in=UNFINISHED_ITEMS).exists():
        return False
    Job.objects.filter(pk=job_id, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).update(
        status=JobStatus.DONE, finished_at=timezone.now()
    )
    return True


def next_foreign_lease_expiry(*, job_id: UUID, claim: str):
    """When the earliest row held by another worker becomes claimable (None: no such row)."""
    return (
        JobItem.objects.filter(job_id=job_id, status=ItemStatus.RUNNING)
        .exclude(claim=claim)
        .aggregate(first=Min("lease_until"))["first"]
    )


def jobs_stalled(*, lease_seconds: float) -> list[UUID]:
    """Unfinished jobs no worker has shown life for within a lease (their worker died, or their message was lost)."""
    cutoff = timezone.now() - timedelta(seconds=lease_seconds)
    return list(
        Job.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at=None, created_at__lt=cutoff))
        .values_list("pk", flat=True)
    )


def jobs_unfinished() -> list[UUID]:
    return list(
        Job.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
