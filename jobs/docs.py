"""OpenAPI descriptions and examples of the jobs API (the `extend_schema` arguments of jobs/apis.py); the errors
and the `Idempotency-Key` header are the shared ones of common/openapi.py."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from common.filters import MOMENT_HELP
from common.openapi import IDEMPOTENCY_PARAMETER, error_responses
from jobs.schema import BATCH_EXAMPLE, JOB_EXAMPLE, FileProcessOut, JobOut, JobResultsOut
from jobs.serializers import FileProcessSerializer, JobInputSerializer

_JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id.")
_ERRORS = error_responses(400, 401, 403, 404, 409, 429)

_UPLOAD_FORM = inline_serializer(
    "JobUploadForm",
    {
        "file": serializers.FileField(
            help_text="An .xlsx workbook or a .csv file (JOB_UPLOAD_MAX_BYTES, 20 MB; an .xlsx at most "
            "JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES, 50 MB, once decompressed). Only the chosen column is read."
        ),
        "column": serializers.CharField(help_text="The header of the column holding the prompts, or its letter."),
        "sheet": serializers.CharField(required=False, help_text="Workbook sheet; default: the first."),
        "header": serializers.BooleanField(required=False, default=True, help_text="Row 1 holds headers."),
        "type": serializers.CharField(required=False, help_text="summary, keywords, sentiment, ... (default custom)"),
        "template": serializers.CharField(
            required=False,
            help_text="A prompt template by name or id (a built-in type's name is an alias of type). Its variables "
            "are read from the columns with their names as headers; `$prompt` is `column`.",
        ),
        "source": serializers.CharField(required=False, default="excel"),
        "language": serializers.CharField(required=False),
        "provider": serializers.CharField(required=False),
        "model": serializers.CharField(required=False),
        "system": serializers.CharField(required=False),
        "temperature": serializers.FloatField(required=False),
        "max_tokens": serializers.IntegerField(required=False),
        "top_p": serializers.FloatField(required=False),
        "cache": serializers.BooleanField(required=False, allow_null=True, default=None),
    },
)

JOB_LIST = {
    "operation_id": "jobs_list",
    "tags": ["jobs"],
    "summary": "Your jobs",
    "description": (
        "Your jobs (made with any of your tokens), newest first, each with its progress as `GET /api/v1/jobs/{id}` "
        "shows it, in pages: follow `next` (a cursor); `limit` sets the page size (up to 500). Filter by `status` "
        "and by creation time (`from`, `to`: a date, the whole day in your timezone, or an ISO 8601 date-time)."
    ),
    "parameters": [
        OpenApiParameter("from", str, OpenApiParameter.QUERY, description=f"Created at or after this. {MOMENT_HELP}"),
        OpenApiParameter(
            "to",
            str,
            OpenApiParameter.QUERY,
            description=f"Created at or before this (a date: to its end). {MOMENT_HELP}",
        ),
    ],
    "responses": {200: JobOut},
}
JOB_CREATE = {
    "operation_id": "jobs_create",
    "tags": ["jobs"],
    "summary": "Start a background job",
    "description": (
        "For inputs too large for one batch: a batch-like JSON body of up to JOB_MAX_ITEMS items (default "
        "50,000), or a multipart upload of an .xlsx/.csv file plus the name (or letter) of the column holding "
        "the prompts. Answers 202 with `Location` (the job) and `Retry-After`. Workers run the rows with the "
        "same gateway as the batch API; the job counts once against the token's rate limit. Honours "
        "`Idempotency-Key`."
    ),
    "parameters": [IDEMPOTENCY_PARAMETER],
    "request": {"application/json": JobInputSerializer, "multipart/form-data": _UPLOAD_FORM},
    "responses": {
        202: OpenApiResponse(JobOut, description="The job, queued (Location: the job; Retry-After: seconds)."),
        **_ERRORS,
        **error_responses(
            413,
            meanings={
                413: "The body is over JOB_UPLOAD_MAX_BYTES (`body_too_large`), or an .xlsx decompresses past "
                "JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES (`workbook_too_large`); `details.limit` names it."
            },
        ),
    },
    "examples": [
        OpenApiExample("JSON rows", value=BATCH_EXAMPLE, request_only=True, media_type="application/json"),
        OpenApiExample("Queued", value={**JOB_EXAMPLE, "status": "queued"}, response_only=True, status_codes=["202"]),
    ],
}
JOB_DETAIL = {
    "operation_id": "jobs_retrieve",
    "parameters": [_JOB_ID],
    "tags": ["jobs"],
    "summary": "A job's progress",
    "description": (
        "Total, done, failed, cost so far and an ETA. Answers 202 (with `Location` and `Retry-After`) while the "
        "job is queued or running and 200 once it is done, cancelled or failed: the asynchronous request-reply "
        "pattern that Power Automate follows. Jobs are visible to every token of their user."
    ),
    "responses": {
        200: OpenApiResponse(JobOut, description="The job is finished."),
        202: OpenApiResponse(JobOut, description="The job is still queued or running; poll again."),
        **_ERRORS,
    },
    "examples": [
        OpenApiExample("Running", value=JOB_EXAMPLE, response_only=True, status_codes=["202"]),
        OpenApiExample(
            "Done",
            value={**JOB_EXAMPLE, "status": "done", "done": 1000, "pending": 0, "running": 0, "eta_seconds": 0},
            response_only=True,
            status_codes=["200"],
        ),
    ],
}
JOB_RESULTS = {
    "operation_id": "jobs_results",
    "tags": ["jobs"],
    "summary": "A job's results",
    "description": (
        "`format=json` (default): every row in input order, shaped like batch results. `format=csv`: a table "
        "(id, prompt, status, result, error, cached, cost). `format=xlsx`: for an uploaded workbook, that "
        "workbook with a result column added (errors read `#ERROR code: message`); otherwise the table as a "
        "workbook. Rows not finished yet show as pending or running."
    ),
    "parameters": [
        _JOB_ID,
        OpenApiParameter("format", str, OpenApiParameter.QUERY, enum=["json", "csv", "xlsx"], default="json"),
    ],
    "responses": {
        (200, "application/json"): OpenApiResponse(JobResultsOut, description="format=json"),
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="format=csv"),
        (200, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"): OpenApiResponse(
            OpenApiTypes.BINARY, description="format=xlsx"
        ),
        **_ERRORS,
    },
    "examples": [
        OpenApiExample(
            "Results",
            value={
                "id": JOB_EXAMPLE["id"],
                "status": "done",
                "batch_id": JOB_EXAMPLE["batch_id"],
                "results": [
                    {
                        "id": 2,
                        "status": "ok",
                        "result": "negative",
                        "error": None,
                        "cached": False,
                        "cost_usd": "0.0000089",
                    },
                    {
                        "id": 3,
                        "status": "error",
                        "result": None,
                        "error": {"code": "empty_prompt", "message": "The prompt is empty."},
                        "cached": False,
                        "cost_usd": None,
                    },
                ],
                "totals": {"items": 2, "ok": 1, "errors": 1, "cached": 0, "cost_usd": "0.0000089"},
            },
            response_only=True,
            media_type="application/json",
        )
    ],
}
JOB_CANCEL = {
    "operation_id": "jobs_cancel",
    "parameters": [_JOB_ID],
    "tags": ["jobs"],
    "summary": "Cancel a job",
    "description": (
        "Rows not started are cancelled; rows already with the upstream finish and are billed as usual. "
        "409 when the job is already finished."
    ),
    "request": None,
    "responses": {200: OpenApiResponse(JobOut, description="The job, cancelled."), **_ERRORS},
    "examples": [
        OpenApiExample("Cancelled", value={**JOB_EXAMPLE, "status": "cancelled"}, response_only=True),
    ],
}


FILE_PROCESS = {
    "operation_id": "files_process",
    "tags": ["files"],
    "summary": "Summarise (or otherwise process) a document",
    "description": (
        "Upload a document as `multipart/form-data`; any other form field is a 400. Its text is split along its "
        "structure (pages, headings, sheets, then paragraphs) into chunks of at most FILE_CHUNK_MAX_CHARS "
        "characters (default 12,000, about 3,000 tokens). Each chunk is one call with the template of `type` "
        "(map); the answers are then combined by reduce calls of the same `type` until one is left. With "
        "`template` (instead of `type`) your template makes every call: the document's text is `$prompt` (a "
        "chunk's text, or the parts' answers when reducing), `variables` (a JSON object) fill the rest, and a "
        "missing or unknown variable is a 400 naming it before any call; each usage record keeps the template "
        "version. Every call "
        "leaves one usage record, all with the answer's `batch_id`, and goes through the gateway like a webhook "
        "call: your preferences (language, default model and provider) when the form does not say, budgets "
        "reserved per call, the cache.\n\n"
        "Up to FILE_SYNC_MAX_CHUNKS chunks (default 8) the answer is a 200 with the result, every call and the "
        "total usage and cost; each call counts against your rate limit. Above it, a 202 with a background job, "
        "answered as `POST /api/v1/jobs` answers (poll `links.self`; the job counts once against the rate "
        "limit): its rows are the calls (`chunk n`, `reduce l.n`), and the row with id `final` holds the answer "
        "in `GET /api/v1/jobs/{id}/results`. A row that fails fails the job (`part_failed`).\n\n"
        "Refused before any call, with nothing recorded: an unsupported extension (`unsupported_file_type`), "
        "content that does not match it (`file_type_mismatch`), an empty file (`empty_file`), binary data "
        "(`binary_file`), an encrypted PDF (`encrypted_file`), a damaged file (`invalid_file`), no text "
        "(`no_text`), more than FILE_MAX_PAGES pages (`too_many_pages`, 400); over FILE_UPLOAD_MAX_BYTES "
        "(`file_too_large`), a .docx/.xlsx that decompresses past FILE_MAX_UNCOMPRESSED_BYTES "
        "(`file_too_large_uncompressed`: a zip bomb), more than FILE_MAX_CHARS characters of text "
        "(`too_much_text`) (413, `details.limit` and `details.setting` name the limit)."
    ),
    "request": {"multipart/form-data": FileProcessSerializer},
    "responses": {
        200: OpenApiResponse(FileProcessOut, description="The document's answer, its calls and their total."),
        202: OpenApiResponse(
            JobOut, description="More than FILE_SYNC_MAX_CHUNKS chunks: a job (Location, Retry-After)."
        ),
        **error_responses(400, 401, 402, 403, 429, 502, 504),
        **error_responses(
            413,
            meanings={
                413: "The file is over FILE_UPLOAD_MAX_BYTES, decompresses past FILE_MAX_UNCOMPRESSED_BYTES or holds "
                "more than FILE_MAX_CHARS characters; `details.setting` names the limit."
            },
        ),
    },
}
