"""Writes for jobs: creating one (from JSON items or an uploaded sheet), cancelling it, and handing it to a worker."""

import logging
import uuid
from dataclasses import dataclass, replace

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.token_cache import CachedToken
from common.errors import InvalidRequest
from jobs.inputs import BatchOptions
from jobs.models import FINISHED_JOB_STATUSES, ItemStatus, Job, JobItem, JobStatus, SourceKind
from jobs.spreadsheets import read_rows
from llm.template_text import template_variables
from llm.templates_store import aget_template

logger = logging.getLogger(__name__)

_BULK = 2000


@dataclass(frozen=True)
class NewItem:
    ref: object  # the client's id or the row number
    prompt: str
    model: str = ""
    variables: dict[str, str] | None = None


@dataclass(frozen=True)
class Upload:
    name: str
    kind: str  # "xlsx" or "csv"
    data: bytes
    column: str
    sheet: str = ""
    has_header: bool = True


def _check_count(count: int) -> None:
    if count > settings.JOB_MAX_ITEMS:
        raise InvalidRequest(
            f"{count} items; the limit is JOB_MAX_ITEMS={settings.JOB_MAX_ITEMS} per job.",
            code="too_many_items",
            details={"limit": settings.JOB_MAX_ITEMS, "items": count},
            param="items",
        )
    if count == 0:
        raise InvalidRequest("The job has no items (every cell of the column is empty).", code="no_items")


def job_create(
    *,
    cached_token: CachedToken,
    options: BatchOptions,
    items: list[NewItem],
    request_id: str,
    upload: Upload | None = None,
    upload_sheet: str = "",
    upload_column: int | None = None,
    document_name: str = "",
) -> Job:
    """Rows first, then the task (after commit), so a worker never looks for a job that is not there yet.
    `document_name`: the job of an uploaded document (jobs/file_process.py), whose bytes are not kept."""
    _check_count(len(items))
    token = cached_token.token
    job = Job(
        id=uuid.uuid4(),
        user_id=token.user_id,
        token=token,
        request_id=request_id,
        options=options.options(),
        total=len(items),
    )
    if upload is not None:
        job.source_kind = SourceKind(upload.kind)
        job.upload_name = upload.name[:255]
        # Only a workbook is read again (its results are that workbook with a column added); a CSV's results are
        # written from the rows, so its bytes are not kept (up to 20 MB less to hold and store).
        job.upload = upload.data if upload.kind == SourceKind.XLSX else None
        job.header_row = upload.has_header
        job.upload_sheet, job.upload_column = upload_sheet, upload_column
    if document_name:
        job.source_kind, job.upload_name = SourceKind.FILE, document_name[:255]
    with transaction.atomic():
        job.save(force_insert=True)
        # In slices: bulk_create makes a list of whatever it is given, and 50,000 model instances are ~60 MB.
        for start in range(0, len(items), _BULK):
            JobItem.objects.bulk_create(
                JobItem(
                    job=job,
                    position=position,
                    ref=_storable(item.ref),
                    prompt=_storable(item.prompt),
                    model=item.model,
                    variables={name: _storable(value) for name, value in (item.variables or {}).items()},
                )
                for position, item in enumerate(items[start : start + _BULK], start=start)
            )
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return job


def _storable(value):
    """PostgreSQL's text and jsonb cannot hold NUL; a NUL in a cell or an id means nothing to a model anyway."""
    return value.replace("\x00", "") if isinstance(value, str) else value


def job_create_from_upload(*, cached_token: CachedToken, options: BatchOptions, upload: Upload, request_id: str) -> Job:
    if len(upload.data) > settings.JOB_UPLOAD_MAX_BYTES:
        raise InvalidRequest(
            f"The file is {len(upload.data)} bytes; the limit is JOB_UPLOAD_MAX_BYTES={settings.JOB_UPLOAD_MAX_BYTES}.",
            code="file_too_large",
        )
    found = read_rows(
        upload.kind,
        upload.data,
        column=upload.column,
        sheet=upload.sheet,
        has_header=upload.has_header,
        max_items=settings.JOB_MAX_ITEMS,
    )
    items = [NewItem(ref=row, prompt=text) for row, text in found.rows]
    if options.user_template is not None:
        items = _with_column_variables(cached_token, options, upload, items)
    _check_count(len(items))
    return job_create(
        cached_token=cached_token,
        options=options,
        items=items,
        request_id=request_id,
        upload=upload,
        upload_sheet=found.sheet,
        upload_column=found.column,
    )


def _with_column_variables(
    cached_token: CachedToken, options: BatchOptions, upload: Upload, items: list[NewItem]
) -> list[NewItem]:
    """A named template over a workbook: each of its variables is read from the column with that header (unless
    the job's `variables` set it); `$prompt` is the chosen column. An empty cell is an empty value."""
    snapshot = async_to_sync(aget_template)(user_id=cached_token.token.user_id, ref=options.user_template)
    names = template_variables(snapshot.system, snapshot.user_template)
    given = options.variables or {}
    columns = {}
    for name in names:
        if name in ("prompt", "language") or name in given:
            continue
        found = read_rows(
            upload.kind,
            upload.data,
            column=name,
            sheet=upload.sheet,
            has_header=True,
            max_items=settings.JOB_MAX_ITEMS,
        )
        columns[name] = dict(found.rows)
    uses_prompt = "prompt" in names
    return [
        replace(
            item,
            prompt=item.prompt if uses_prompt else "",
            variables={name: column.get(item.ref, "") for name, column in columns.items()},
        )
        for item in items
    ]


def job_enqueue(*, job_id: uuid.UUID) -> None:
    """Wake a worker. If the broker is down the job still runs: workers resume unfinished jobs when they start and
    sweep for stalled ones every JOB_SWEEP_SECONDS."""
    from jobs.tasks import job_process

    try:
        job_process.delay(str(job_id))
    except Exception:  # the broker is a wake-up call, not the source of truth
        logger.exception("Could not queue job %s; a worker will pick it up on its next sweep", job_id)


def job_cancel(*, job: Job) -> Job:
    """Rows not yet started are cancelled; rows already with the upstream finish and are billed as usual."""
    now = timezone.now()
    with transaction.atomic():
        updated = (
            Job.objects.filter(pk=job.pk)
            .exclude(status__in=FINISHED_JOB_STATUSES)
            .update(status=JobStatus.CANCELLED, finished_at=now)
        )
        if updated:  # rows not started, and rows a dead worker held; rows at the upstream finish
            job.items.filter(Q(status=ItemStatus.PENDING) | Q(status=ItemStatus.RUNNING, lease_until__lt=now)).update(
                status=ItemStatus.CANCELLED, finished_at=now
            )
    job.refresh_from_db()
    return job
