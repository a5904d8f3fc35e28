"""Processing an uploaded document: its text split into chunks along its structure, each chunk one gateway call
(the map), then reduce calls combining the answers until one is left. Up to FILE_SYNC_MAX_CHUNKS chunks this is
done while the client waits; above it, as a background job whose rows are the calls (see `file_job_next_level`).

Every call goes through the gateway like a webhook call of the same `type` or `template` (its template, the user's
preferences, routing, budget reservation, cache) and leaves one usage record; all records of one document share its
batch id. With a named template, the document's text is `$prompt`: a chunk's text in a map call, the parts' answers
(`reduce_prompt`) in a reduce call; the form's `variables` fill the rest, the same for every call.
While the client waits, each call also counts against the token's rate limit; a job counts once, as jobs do."""

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.token_cache import CachedToken
from common.validation import invalid_request
from jobs import claims, services
from jobs.chunking import reduce_groups, reduce_prompt, split_sections
from jobs.documents import Document, document_read
from jobs.execution import ItemContext, check_options, item_call
from jobs.inputs import BatchOptions
from jobs.models import FINISHED_ITEM_STATUSES, ItemStatus, Job, JobItem, JobStatus
from llm import pipeline
from llm.limits import rate_limit_hit
from llm.providers import Usage
from llm.template_text import template_variables
from llm.templates_store import aget_template

logger = logging.getLogger(__name__)

FINAL_REF = "final"  # the job row holding the document's answer


@dataclass(frozen=True)
class FileCall:
    request_id: str
    step: str  # "map" (one chunk) or "reduce" (combining answers)
    result: pipeline.GatewayResult


@dataclass(frozen=True)
class FileSummary:
    batch_id: str
    document: Document
    chunks: int
    result: str
    calls: list[FileCall]

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            u = call.result.usage
            total = Usage(
                input_tokens=total.input_tokens + u.input_tokens,
                output_tokens=total.output_tokens + u.output_tokens,
                cached_input_tokens=total.cached_input_tokens + u.cached_input_tokens,
                cache_write_tokens=total.cache_write_tokens + u.cache_write_tokens,
                reasoning_tokens=total.reasoning_tokens + u.reasoning_tokens,
            )
        return total

    @property
    def cost_usd(self) -> Decimal:
        return sum((call.result.cost_usd or Decimal("0") for call in self.calls), Decimal("0"))


@dataclass(frozen=True)
class FileJob:
    job: Job
    document: Document
    chunks: int


async def file_options_check(cached_token: CachedToken, options: BatchOptions, *, request_id: str) -> None:
    """The form's options checked before the document is read, any call made or a job created: the webhook's checks
    on a stand-in text, the template's variables included; a named template must take the text as `$prompt`."""
    if options.user_template is not None:
        snapshot = await aget_template(user_id=cached_token.token.user_id, ref=options.user_template)
        details: dict[str, list[str]] = {}
        if "prompt" not in template_variables(snapshot.system, snapshot.user_template):
            details["template"] = [
                f"The template `{snapshot.name}` has no `$prompt`: the document's text is sent as `$prompt`."
            ]
        if "prompt" in (options.variables or {}):
            details["variables.prompt"] = ["`$prompt` is the document's text: it cannot be set in `variables`."]
        if details:
            raise invalid_request(details)
    await check_options(cached_token, options, request_id=request_id, endpoint="file", rows_have_variables=False)


def file_process(
    *, cached_token: CachedToken, options: BatchOptions, name: str, data: bytes, request_id: str
) -> FileSummary | FileJob:
    """Read the document (hostile content is a 400/413 before any call), answer it now or start a job, by its
    number of chunks, and keep the upload only if FILE_KEEP_UPLOADS says so."""
    document = document_read(name=name, data=data)
    chunks = split_sections(document.sections, max(settings.FILE_CHUNK_MAX_CHARS, 1))
    if len(chunks) <= settings.FILE_SYNC_MAX_CHUNKS:
        batch_id = f"file_{uuid.uuid4().hex}"
        _keep(data, name, batch_id)
        return async_to_sync(file_summarise)(
            cached_token=cached_token,
            options=options,
            chunks=chunks,
            request_id=request_id,
            batch_id=batch_id,
            document=document,
        )
    async_to_sync(rate_limit_hit)(cached_token)  # a job counts once against the rate limit, as jobs do
    refs = [FINAL_REF] if len(chunks) == 1 else [f"chunk {i}" for i in range(1, len(chunks) + 1)]
    job = services.job_create(
        cached_token=cached_token,
        options=options,
        items=[services.NewItem(ref=ref, prompt=text) for ref, text in zip(refs, chunks, strict=True)],
        request_id=request_id,
        document_name=name,
    )
    _keep(data, name, job.batch_id)
    return FileJob(job=job, document=document, chunks=len(chunks))


def _keep(data: bytes, name: str, batch_id: str) -> None:
    """With FILE_KEEP_UPLOADS, the upload in FILE_UPLOAD_DIR named by the batch id of its usage records."""
    if not settings.FILE_KEEP_UPLOADS:
        return
    folder = Path(settings.FILE_UPLOAD_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[-100:] or "upload"
    (folder / f"{batch_id}-{safe}").write_bytes(data)


class _Calls:
    """The calls of one document: run JOB_CONCURRENCY at a time; after a failure no new call starts (those already
    sent finish and are recorded as usual), and the first failure is raised once they have."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(max(settings.JOB_CONCURRENCY, 1))
        self.failed = False

    async def guarded(self, call: Awaitable[str]) -> str | None:
        async with self.slots:
            if self.failed:
                call.close()  # never started: nothing sent, nothing recorded
                return None
            try:
                return await call
            except Exception:
                self.failed = True
                raise

    async def all(self, calls: list[Awaitable[str]]) -> list[str]:
        outcomes = await asyncio.gather(*(self.guarded(c) for c in calls), return_exceptions=True)
        error = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if error is not None:
            raise error
        return outcomes


async def file_summarise(
    *,
    cached_token: CachedToken,
    options: BatchOptions,
    chunks: list[str],
    request_id: str,
    batch_id: str,
    document: Document,
) -> FileSummary:
    ctx = ItemContext(cached_token=cached_token, options=options, endpoint="file", batch_id=batch_id)
    runner = _Calls()
    calls: list[tuple[int, FileCall]] = []

    async def one(order: int, step: str, call_id: str, prompt: str) -> str:
        call = await item_call(ctx, prompt=prompt, model=None, request_id=call_id)
        result = await pipeline.complete(call)
        calls.append((order, FileCall(request_id=call_id, step=step, result=result)))
        return result.completion.text

    answers = await runner.all([one(i, "map", f"{request_id}.{i}", text) for i, text in enumerate(chunks, start=1)])
    level, order = 0, len(chunks)
    while len(answers) > 1:
        level += 1
        groups = reduce_groups(answers, settings.FILE_CHUNK_MAX_CHARS)
        answers = await runner.all(
            [
                one(order + j, "reduce", f"{request_id}.r{level}.{j}", reduce_prompt(group))
                for j, group in enumerate(groups, start=1)
            ]
        )
        order += len(groups)
    return FileSummary(
        batch_id=batch_id,
        document=document,
        chunks=len(chunks),
        result=answers[0],
        calls=[call for _, call in sorted(calls, key=lambda pair: pair[0])],
    )


# ---- As a job ---------------------------------------------------------------------------------------------------------


def _level(ref) -> int:
    """0 for a chunk, n for the rows of reduce level n ("reduce n.j"); the final row is the last level."""
    if isinstance(ref, str) and ref.startswith("reduce "):
        return int(ref.split(" ", 1)[1].split(".", 1)[0])
    return 0


def file_job_next_level(*, job_id) -> bool:
    """Called by a worker when it finds no row to run in a document's job: when every row of the last level is
    answered, add the rows of the next (their prompts the answers, grouped) and say True so the worker runs them.
    False when there is nothing to add: rows still running elsewhere, the final answer there, or the job stopped
    (a failed row fails the job: the document cannot be combined without it)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.RUNNING).first()
        if job is None:
            return False
        rows = list(
            JobItem.objects.filter(job_id=job_id).order_by("position").values("position", "ref", "status", "result")
        )
        if not rows or any(r["status"] not in FINISHED_ITEM_STATUSES for r in rows):
            return False
        if any(r["ref"] == FINAL_REF for r in rows):
            return False
        level = max(_level(r["ref"]) for r in rows)
        last = [r for r in rows if _level(r["ref"]) == level]
        failed = next((r for r in last if r["status"] != ItemStatus.OK), None)
        if failed is not None:
            claims.job_fail(
                job_id=job_id,
                code="part_failed",
                message=f"Row `{failed['ref']}` did not get an answer, so the document was not combined.",
            )
            return False
        groups = reduce_groups([r["result"] for r in last], settings.FILE_CHUNK_MAX_CHARS)
        start = rows[-1]["position"] + 1
        refs = [FINAL_REF] if len(groups) == 1 else [f"reduce {level + 1}.{j}" for j in range(1, len(groups) + 1)]
        try:
            with transaction.atomic():
                JobItem.objects.bulk_create(
                    JobItem(job_id=job_id, position=start + j, ref=ref, prompt=reduce_prompt(group))
                    for j, (ref, group) in enumerate(zip(refs, groups, strict=True))
                )
        except IntegrityError:  # another worker added this level first
            return True
        Job.objects.filter(pk=job_id).update(total=F("total") + len(groups))
    logger.info("Job %s: %d reduce row(s) added (level %d)", job_id, len(groups), level + 1)
    return True
