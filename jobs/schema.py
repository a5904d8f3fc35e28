"""The output models of the batch API (an async view that builds its answer from them and documents itself with
them, like the webhook) and of the jobs API, with the examples and the batch's description."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from common.openapi import IDEMPOTENCY_KEY, UsageOut
from common.operations import Body


class ItemError(BaseModel):
    code: str = Field(description="e.g. upstream_rate_limited, upstream_server_error, empty_prompt, budget_exceeded")
    message: str


class BatchItemOut(BaseModel):
    id: str | int = Field(description="The item's id as sent (its index when none was sent).")
    status: Literal["ok", "error"]
    result: str | None
    error: ItemError | None
    cached: bool = Field(description="Answered from the response cache, at no cost.")
    cost_usd: str | None = Field(description="Decimal string; null when the model has no price.")


class BatchTotals(BaseModel):
    items: int
    ok: int
    errors: int
    cached: int
    cost_usd: str | None


class BatchOut(BaseModel):
    batch_id: str = Field(description="Carried by the usage record of every item.")
    request_id: str
    results: list[BatchItemOut] = Field(description="In input order.")
    totals: BatchTotals


class DryRunItemOut(BaseModel):
    id: str | int = Field(description="The item's id as sent (its index when none was sent).")
    status: Literal["ok", "error"] = Field(description="error: the real run would refuse this item (see `error`).")
    error: ItemError | None
    cached: bool | None = Field(default=None, description="The response cache holds the answer: no call, $0.")
    provider: str | None = None
    model: str | None = Field(default=None, description="The upstream model the item is routed to.")
    priced: bool | None = Field(default=None, description="False: no price row (UNPRICED_* rates, if set, apply).")
    input_tokens: int | None = Field(
        default=None,
        description="The input tokens a budget reservation counts for this call: an upper bound of what the "
        "provider reports (UTF-8 bytes of everything sent plus framing).",
    )
    max_output_tokens: int | None = Field(default=None, description="max_tokens, else the model's output limit.")
    input_usd_per_mtok: str | None = Field(default=None, description="The input rate the usage record bills at.")
    input_cost_usd: str | None = Field(default=None, description="input_tokens at that rate; 0 when cached.")
    max_cost_usd: str | None = Field(
        default=None,
        description="The most the call can cost (what a budget reservation holds); 0 when cached; null: no price.",
    )


class DryRunTotals(BaseModel):
    items: int
    calls: int = Field(description="Items that would reach the upstream (not cached, not refused).")
    cached: int
    errors: int
    input_tokens: int = Field(description="Of the calls (cached items cost nothing).")
    input_cost_usd: str | None = Field(description="null when a called model has no price.")
    max_cost_usd: str | None = Field(description="An upper bound of the batch's cost; null when a model has no price.")


class BudgetOut(BaseModel):
    scope: Literal["token", "user"]
    budget_usd: str
    spent_usd: str
    reserved_usd: str = Field(description="Held by requests in flight.")
    left_usd: str


class BudgetLeftOut(BaseModel):
    left_usd: str | None = Field(description="The least left of the budgets that apply; null: no budget applies.")
    budgets: list[BudgetOut]


class BatchDryRunOut(BaseModel):
    dry_run: Literal[True]
    request_id: str
    results: list[DryRunItemOut] = Field(description="In input order.")
    totals: DryRunTotals
    budget: BudgetLeftOut = Field(description="This month's budgets of the token and of its user.")


class JobLinks(BaseModel):
    self: str
    results: str
    cancel: str


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "cancelled", "failed"]
    total: int
    done: int = Field(description="Rows finished, failed ones included.")
    failed: int
    cancelled: int
    pending: int = Field(description="Rows not finished yet (running ones included).")
    running: int
    cached: int
    cost_usd: str = Field(description="Cost so far (decimal string).")
    eta_seconds: float | None = Field(description="Seconds left at the pace so far; null until a row is done.")
    batch_id: str
    source: Literal["json", "xlsx", "csv", "file"] = Field(description="`file`: a document (/api/v1/files/process).")
    error: ItemError | None = Field(description="Why a failed job stopped (budget used up, token revoked).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks


class FileOut(BaseModel):
    name: str
    format: Literal["txt", "md", "csv", "pdf", "docx", "xlsx"]
    bytes: int
    characters: int = Field(description="Characters of text taken out of the document.")
    pages: int | None = Field(description="A PDF's pages; null for the other formats.")
    chunks: int = Field(description="Chunks the text was split into (FILE_CHUNK_MAX_CHARS each at most).")


class FileCallOut(BaseModel):
    request_id: str = Field(description="The usage record's request id.")
    step: Literal["map", "reduce"] = Field(description="map: one chunk; reduce: combining answers.")
    model: str
    cached: bool
    usage: UsageOut
    cost_usd: str | None = Field(description="null when the model has no price.")


class FileProcessOut(BaseModel):
    batch_id: str = Field(description="On the usage record of every call: `GET /api/v1/usage-records?batch_id=`.")
    request_id: str
    type: str = Field(description="The built-in type the calls used; `custom` when a `template` made them.")
    result: str = Field(description="The answer for the whole document.")
    file: FileOut
    calls: list[FileCallOut] = Field(description="Every call in order: the chunks' (map), then the reduce calls.")
    usage: UsageOut = Field(description="The sum over the calls.")
    cost_usd: str = Field(description="The sum over the calls (decimal string).")


class JobItemOut(BaseModel):
    id: Any = Field(description="The item's id as sent, or the row number of an uploaded sheet.")
    status: Literal["pending", "running", "ok", "error", "cancelled"]
    result: str | None
    error: ItemError | None
    cached: bool
    cost_usd: str | None


class JobResultsOut(BaseModel):
    id: str
    status: str
    batch_id: str
    results: list[JobItemOut]
    totals: BatchTotals


BATCH_EXAMPLE = {
    "type": "sentiment",
    "source": "excel",
    "language": "English",
    "model": "gpt-4o-mini",
    "parameters": {"temperature": 0, "max_tokens": 20},
    "items": [
        {"id": "A2", "prompt": "The delivery was late and the box was damaged."},
        {"id": "A3", "prompt": "Great service, thank you!"},
    ],
}
BATCH_RESPONSE_EXAMPLE = {
    "batch_id": "batch_5b0c8a4e2f6d4c9e8f1a2b3c4d5e6f70",
    "request_id": "3f2a9c0e",
    "results": [
        {"id": "A2", "status": "ok", "result": "negative", "error": None, "cached": False, "cost_usd": "0.0000089"},
        {"id": "A3", "status": "ok", "result": "positive", "error": None, "cached": True, "cost_usd": "0"},
    ],
    "totals": {"items": 2, "ok": 2, "errors": 0, "cached": 1, "cost_usd": "0.0000089"},
}
DRY_RUN_RESPONSE_EXAMPLE = {
    "dry_run": True,
    "request_id": "3f2a9c0e",
    "results": [
        {
            "id": "A2",
            "status": "ok",
            "error": None,
            "cached": False,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "priced": True,
            "input_tokens": 151,
            "max_output_tokens": 20,
            "input_usd_per_mtok": "0.15",
            "input_cost_usd": "0.00002265",
            "max_cost_usd": "0.00003465",
        },
        {
            "id": "A3",
            "status": "ok",
            "error": None,
            "cached": True,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "priced": True,
            "input_tokens": 129,
            "max_output_tokens": 20,
            "input_usd_per_mtok": "0.15",
            "input_cost_usd": "0",
            "max_cost_usd": "0",
        },
    ],
    "totals": {
        "items": 2,
        "calls": 1,
        "cached": 1,
        "errors": 0,
        "input_tokens": 151,
        "input_cost_usd": "0.00002265",
        "max_cost_usd": "0.00003465",
    },
    "budget": {
        "left_usd": "8.5",
        "budgets": [{"scope": "token", "budget_usd": "10", "spent_usd": "1.5", "reserved_usd": "0", "left_usd": "8.5"}],
    },
}
JOB_EXAMPLE = {
    "id": "8d7f2c1e-4b3a-4f5e-9a8b-7c6d5e4f3a2b",
    "status": "running",
    "total": 1000,
    "done": 250,
    "failed": 1,
    "cancelled": 0,
    "pending": 750,
    "running": 32,
    "cached": 0,
    "cost_usd": "0.0021",
    "eta_seconds": 24.5,
    "batch_id": "job_8d7f2c1e4b3a4f5e9a8b7c6d5e4f3a2b",
    "source": "xlsx",
    "error": None,
    "created_at": "2026-01-05T09:00:00Z",
    "started_at": "2026-01-05T09:00:01Z",
    "finished_at": None,
    "links": {
        "self": "https://djllm.example.com/api/v1/jobs/8d7f2c1e-4b3a-4f5e-9a8b-7c6d5e4f3a2b",
        "results": "https://djllm.example.com/api/v1/jobs/8d7f2c1e-4b3a-4f5e-9a8b-7c6d5e4f3a2b/results",
        "cancel": "https://djllm.example.com/api/v1/jobs/8d7f2c1e-4b3a-4f5e-9a8b-7c6d5e4f3a2b/cancel",
    },
}
BATCH = {
    "path": "/api/v1/batch",
    "method": "post",
    "operation_id": "batch_process",
    "tags": ("batch",),
    "summary": "Process many texts at once",
    "description": (
        "Runs the webhook's template (`type`, or its alias `template`) over each item, concurrently "
        "(BATCH_CONCURRENCY per token), and answers every item in input order with its own status, error, "
        "`cached` and `cost_usd`. A failed item never fails the batch; an upstream rate limit is met with "
        "backoff. At most BATCH_MAX_ITEMS items (default 200). The batch counts once against the token's "
        "rate limit; each item still counts toward budgets and leaves a usage record with the `batch_id`. "
        "With `temperature: 0`, recalculating the same rows is answered from the cache at no cost.\n\n"
        "`dry_run: true` prices the batch instead of running it (BatchDryRunOut): per item and in total, "
        "the calls it would make, their input tokens (the bound a budget reservation counts) and cost at "
        "the rate the usage record bills, the most they can cost (what budgets reserve: with `max_tokens` "
        "set, an upper bound of the real cost), which items the response cache would answer ($0), and "
        "what is left of this month's budgets. Nothing is sent upstream, no usage record is written, and a "
        "dry run does not count against the rate limit."
    ),
    "parameters": (IDEMPOTENCY_KEY,),
    "request_example": BATCH_EXAMPLE,
    "responses": {
        200: Body(
            "One result per item, in input order (a dry run: one estimate per item).",
            model=(BatchOut, BatchDryRunOut),
            examples={"batch": BATCH_RESPONSE_EXAMPLE, "dry_run": DRY_RUN_RESPONSE_EXAMPLE},
        ),
    },
    "errors": (400, 401, 403, 409, 415, 429),
}
