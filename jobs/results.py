"""A job's results as JSON, CSV or XLSX (the uploaded workbook with a result column, when it came from one)."""

from decimal import Decimal
from typing import Any

from common.formatting import money
from jobs import selectors
from jobs.inputs import BatchOptions
from jobs.models import ItemStatus, Job, SourceKind
from jobs.spreadsheets import csv_bytes, new_workbook_bytes, workbook_with_results

FORMATS = ("json", "csv", "xlsx")
TABLE_HEADER = ["id", "prompt", "status", "result", "error_code", "error_message", "cached", "cost_usd"]


def item_out(row: dict[str, Any]) -> dict[str, Any]:
    """The same shape as a batch result (status may also be pending, running or cancelled while the job runs)."""
    error = {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None
    return {
        "id": row["ref"],
        "status": row["status"],
        "result": row["result"] if row["status"] == ItemStatus.OK else None,
        "error": error,
        "cached": row["cached"],
        "cost_usd": money(row["cost_usd"]),
    }


def results_json(job: Job) -> dict[str, Any]:
    results = [item_out(row) for row in selectors.job_rows(job=job)]
    cost = sum((Decimal(r["cost_usd"]) for r in results if r["cost_usd"]), Decimal("0"))
    return {
        "id": str(job.pk),
        "status": job.status,
        "batch_id": job.batch_id,
        "results": results,
        "totals": {
            "items": len(results),
            "ok": sum(r["status"] == ItemStatus.OK for r in results),
            "errors": sum(r["status"] == ItemStatus.ERROR for r in results),
            "cached": sum(r["cached"] for r in results),
            "cost_usd": money(cost),
        },
    }


def _table_rows(job: Job):
    for row in selectors.job_rows(job=job):
        yield [
            row["ref"],
            row["prompt"],
            row["status"],
            row["result"],
            row["error_code"],
            row["error_message"],
            row["cached"],
            money(row["cost_usd"]) or "",
        ]


def cell_text(row: dict[str, Any]) -> str:
    """What goes into the result column: the answer, or a short readable error (as the Office Script writes it)."""
    if row["status"] == ItemStatus.OK:
        return row["result"]
    if row["status"] == ItemStatus.ERROR:
        return f"#ERROR {row['error_code']}: {row['error_message']}"[:250]
    return f"#{row['status'].upper()}"


def results_csv(job: Job) -> bytes:
    return csv_bytes(TABLE_HEADER, _table_rows(job))


def results_xlsx(job: Job) -> bytes:
    upload = selectors.job_upload(job=job) if job.source_kind == SourceKind.XLSX else None
    if upload is None:
        return new_workbook_bytes(TABLE_HEADER, _table_rows(job))
    kind = BatchOptions.model_construct(**job.options).kind
    return workbook_with_results(
        upload,
        sheet=job.upload_sheet,
        column=job.upload_column or 1,
        has_header=job.header_row,
        title=f"djllm {kind}",
        cells={row["ref"]: cell_text(row) for row in selectors.job_rows(job=job)},
    )
