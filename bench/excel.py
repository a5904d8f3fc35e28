"""Issue 5's figure: 1,000 spreadsheet rows at 1000 ms upstream latency, through the batch API (chunks of 100, 4 at
a time, as the Office Script sends them) and through a background job; then the same again, which must cost $0
(the response cache: the rows are sent at temperature 0, as recalculating a workbook would).

    bench_excel(base_url, token)   against a running djllm (and a jobs worker) whose upstream answers in 1000 ms
    run(stack=stack)               what `make bench` calls: starts djllm as `make run` does (one uvicorn process and
                                   a Celery worker beside it, default settings) on the bench's database and fake
                                   upstream, at 1000 ms, then bench_excel()

Importing this module starts nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

GOAL_S = 60.0
LATENCY_MS = 1000


class ExcelBenchError(RuntimeError):
    pass


def _rows(n: int, tag: str) -> list[dict[str, str]]:
    return [
        {"id": f"A{i + 2}", "prompt": f"[{tag}] Customer comment {i}: the delivery took {i % 9 + 2} days; box dented."}
        for i in range(n)
    ]


def _options() -> dict[str, Any]:
    return {"type": "sentiment", "source": "excel", "parameters": {"temperature": 0, "max_tokens": 20}}


def _post_with_retries(http: httpx.Client, path: str, body: dict, attempts: int = 5) -> httpx.Response:
    """Like the Office Script: 429 and 503 are retried after Retry-After."""
    for attempt in range(attempts):
        response = http.post(path, json=body)
        if response.status_code not in (429, 503) or attempt == attempts - 1:
            return response
        time.sleep(min(float(response.headers.get("Retry-After", "1") or 1), 10))
    raise AssertionError("unreachable")


def _batch_run(http: httpx.Client, rows: list[dict], chunk_size: int, parallel: int) -> dict[str, Any]:
    chunks = [rows[i : i + chunk_size] for i in range(0, len(rows), chunk_size)]

    def send(chunk: list[dict]) -> dict:
        response = _post_with_retries(http, "/api/v1/batch", {**_options(), "items": chunk})
        if response.status_code != 200:
            raise ExcelBenchError(f"batch answered {response.status_code}: {response.text[:300]}")
        return response.json()["totals"]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        totals = list(pool.map(send, chunks))
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 2),
        "cost_usd": str(sum((Decimal(t["cost_usd"] or "0") for t in totals), Decimal("0"))),
        "errors": sum(t["errors"] for t in totals),
        "cached": sum(t["cached"] for t in totals),
        "requests": len(chunks),
    }


def _job_run(http: httpx.Client, rows: list[dict], poll_s: float, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    created = _post_with_retries(http, "/api/v1/jobs", {**_options(), "items": rows})
    if created.status_code != 202:
        raise ExcelBenchError(f"job creation answered {created.status_code}: {created.text[:300]}")
    location = created.headers["Location"]
    while True:
        # Poll more often than Retry-After (5 s) suggests, so the wall time is measured, not the polling period.
        time.sleep(poll_s)
        response = http.get(location)
        if response.status_code == 200:
            break
        if response.status_code != 202:
            raise ExcelBenchError(f"job polling answered {response.status_code}: {response.text[:300]}")
        if time.perf_counter() - started > timeout_s:
            raise ExcelBenchError(f"the job did not finish in {timeout_s:g} s: {response.json()}")
    wall = time.perf_counter() - started
    job = response.json()
    return {
        "wall_s": round(wall, 2),
        "cost_usd": job["cost_usd"],
        "errors": job["failed"],
        "cached": job["cached"],
        "status": job["status"],
    }


def bench_excel(
    base_url: str,
    token: str,
    *,
    rows: int = 1000,
    chunk_size: int = 100,
    parallel: int = 4,
    poll_s: float = 0.25,
    timeout_s: float = 600.0,
    out=sys.stdout,
) -> dict[str, Any]:
    """Runs the figure against a djllm at `base_url` (a jobs worker must be running) and prints it."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=parallel + 2)
    with httpx.Client(base_url=base_url, headers=headers, timeout=300, limits=limits) as http:
        batch_rows, job_rows = _rows(rows, "batch"), _rows(rows, "job")  # apart, so the job is not served by cache
        batch = _batch_run(http, batch_rows, chunk_size, parallel)
        batch["second_run"] = _batch_run(http, batch_rows, chunk_size, parallel)
        job = _job_run(http, job_rows, poll_s, timeout_s)
        job["second_run"] = _job_run(http, job_rows, poll_s, timeout_s)
    figure = {
        "rows": rows,
        "upstream_latency_ms": LATENCY_MS,
        "goal_s": GOAL_S,
        "batch": {**batch, "chunk_size": chunk_size, "parallel": parallel},
        "job": job,
    }
    figure["goal_met"] = (
        max(batch["wall_s"], job["wall_s"]) <= GOAL_S
        and Decimal(batch["second_run"]["cost_usd"]) == 0
        and Decimal(job["second_run"]["cost_usd"]) == 0
        and batch["errors"] == job["errors"] == 0
    )
    print(report(figure), file=out, flush=True)
    return figure


def report(figure: dict[str, Any]) -> str:
    def line(name: str, run: dict[str, Any]) -> str:
        again = run["second_run"]
        return (
            f"  {name:<42} {run['wall_s']:>6.1f} s  ${run['cost_usd']:<10} errors {run['errors']:<3}"
            f" | second run {again['wall_s']:>5.1f} s  ${again['cost_usd']} ({again['cached']} rows cached)"
        )

    batch = figure["batch"]
    lines = [
        f"[excel] {figure['rows']:,} rows at {figure['upstream_latency_ms']} ms upstream latency "
        f"(goal: at most {figure['goal_s']:g} s each; a second identical run costs $0)",
        line(f"batch ({batch['chunk_size']} rows a request, {batch['parallel']} at a time)", batch),
        line("job (one request, a worker runs it)", figure["job"]),
        f"  goal {'met' if figure['goal_met'] else 'NOT met'}",
    ]
    return "\n".join(lines)


def run(*, stack) -> dict[str, Any]:
    """For `make bench` (bench/__main__.py): djllm as `make run` starts it, on the bench stack's database."""
    from bench.stack import free_port

    stack.restart_fake(LATENCY_MS)
    # Default settings (the batch counts once against the rate limit); one web process, as `make run` has
    # (uvicorn would read the stack's WEB_CONCURRENCY=2).
    env = {**stack.build_env(), "RATE_LIMIT_ENABLED": "true", "WEB_CONCURRENCY": "1"}
    if not env.get("REDIS_URL"):
        env["CELERY_BROKER_URL"] = f"sqla+sqlite:///{Path(stack.workdir) / 'celery-broker.sqlite3'}"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_dir = Path(stack.workdir)
    server = stack.procs.start(
        "djllm (make run)",
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        log=log_dir / "excel-djllm.log",
    )
    worker = stack.procs.start(
        "jobs worker",
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads", "--concurrency", "2"]
        + ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env={**env, "LOG_LEVEL": "INFO"},  # its "ready." line is how we know it is up
        log=log_dir / "excel-worker.log",
    )
    try:
        _wait_until(lambda: httpx.get(base_url + "/api/v1/health", timeout=2).status_code == 200, server, 60)
        _wait_until(lambda: "ready." in (log_dir / "excel-worker.log").read_text(errors="replace"), worker, 60)
        return bench_excel(base_url, stack.token)
    finally:
        stack.procs.stop(worker)
        stack.procs.stop(server)


def _wait_until(check, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ExcelBenchError(f"a process it needs exited with {proc.returncode}")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise ExcelBenchError(f"not ready in {timeout:g} s")


if __name__ == "__main__":  # python -m bench.excel BASE_URL TOKEN
    print(json.dumps(bench_excel(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.environ["DJLLM_TOKEN"])))
