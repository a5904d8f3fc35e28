"""Running a job: claim rows, run them JOB_CONCURRENCY at a time through the gateway, renew the leases while
working, and finish the job when no row is left. Safe to run on several workers at once and to run again after a
crash: everything it knows is in the database."""

import asyncio
import logging
import uuid
from collections import deque

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from common.request_id import request_id_var
from jobs import claims
from jobs.execution import ItemContext, run_item
from jobs.file_process import file_job_next_level
from jobs.inputs import BatchOptions
from jobs.models import JobItem, SourceKind

logger = logging.getLogger(__name__)


def _lease() -> float:
    return max(float(settings.JOB_ITEM_LEASE_SECONDS), 1.0)


async def _heartbeat(job_id, claim: str) -> None:
    while True:
        await asyncio.sleep(_lease() / 3)
        try:
            await sync_to_async(claims.items_renew)(job_id=job_id, claim=claim, lease_seconds=_lease())
        except Exception:  # a database hiccup: the next beat tries again, well within the lease
            logger.exception("Could not renew the leases of job %s", job_id)


class _Run:
    def __init__(self, job_id, ctx: ItemContext, claim: str) -> None:
        self.job_id, self.ctx, self.claim = job_id, ctx, claim
        self.queue: deque[JobItem] = deque()
        self.lock = asyncio.Lock()
        self.stopped = False

    async def _refill(self) -> None:
        async with self.lock:
            if self.queue or self.stopped:
                return
            state = await sync_to_async(claims.job_state)(job_id=self.job_id)
            if state.stop_code:
                await sync_to_async(claims.job_fail)(
                    job_id=self.job_id, code=state.stop_code, message=state.stop_message
                )
            if state.stop_code or state.status not in ("queued", "running"):
                self.stopped = True
                return
            self.queue.extend(
                await sync_to_async(claims.items_claim)(
                    job_id=self.job_id,
                    claim=self.claim,
                    limit=max(settings.JOB_CONCURRENCY, 1),
                    lease_seconds=_lease(),
                )
            )

    async def _consume(self) -> None:
        while not self.stopped:
            if not self.queue:
                await self._refill()
                if not self.queue:
                    return
            await self._process(self.queue.popleft())

    async def _process(self, item: JobItem) -> None:
        request_id_var.set(item.request_id)  # this consumer's own task: its log lines carry the row's id
        outcome = await run_item(
            self.ctx,
            prompt=item.prompt,
            model=item.model or None,
            request_id=item.request_id,
            variables=item.variables or None,
            on_record=claims.item_record_hook(item_id=item.pk, claim=self.claim, labels=self.ctx.options.labels),
        )
        if outcome.ok:
            return  # stored with its usage record, in one transaction
        await sync_to_async(claims.item_fail)(
            item_id=item.pk, claim=self.claim, code=outcome.error_code, message=outcome.error_message
        )
        if outcome.error_code == "budget_exceeded":
            await sync_to_async(claims.job_fail)(
                job_id=self.job_id, code=outcome.error_code, message=outcome.error_message
            )
            self.stopped = True

    async def drain(self) -> None:
        await asyncio.gather(*(self._consume() for _ in range(max(settings.JOB_CONCURRENCY, 1))))
        if self.queue:
            await sync_to_async(claims.items_release)(
                job_id=self.job_id, item_ids=[i.pk for i in self.queue], claim=self.claim
            )
            self.queue.clear()


async def job_run(job_id) -> None:
    job = await sync_to_async(claims.job_start)(job_id=job_id)
    if job is None:
        return
    cached_token = await sync_to_async(claims.job_token)(job)
    if cached_token is None:
        await sync_to_async(claims.job_fail)(job_id=job.pk, code="token_revoked", message="The job's token is gone.")
        return
    ctx = ItemContext(
        cached_token=cached_token,
        options=BatchOptions.model_validate(job.options),
        endpoint="job",
        batch_id=job.batch_id,
    )
    claim = uuid.uuid4().hex
    logger.info("Running job %s (%d rows) as %s", job.pk, job.total, claim)
    heartbeat = asyncio.create_task(_heartbeat(job.pk, claim))
    try:
        while True:
            run = _Run(job.pk, ctx, claim)
            await run.drain()
            if run.stopped:
                break
            if job.source_kind == SourceKind.FILE and await sync_to_async(file_job_next_level)(job_id=job.pk):
                continue  # the next reduce level's rows were added
            if await sync_to_async(claims.job_finish_if_complete)(job_id=job.pk):
                break
            # Rows another worker holds: wait for them to finish, or for its lease to run out if it died.
            expiry = await sync_to_async(claims.next_foreign_lease_expiry)(job_id=job.pk, claim=claim)
            wait = 0.5 if expiry is None else (expiry - timezone.now()).total_seconds()
            await asyncio.sleep(min(max(wait, 0.05), 1.0))
    finally:
        heartbeat.cancel()
    logger.info("Job %s: this worker is done with it", job.pk)
