"""The report: a compact table on stdout (targets from issue 3 beside the measured values) and
bench/results/latest.json."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import RunResult

RESULTS = Path(__file__).resolve().parent / "results"
LITTLE_BOUND_LATENCY_S = 1.0


@dataclass
class Target:
    key: str
    label: str
    op: str  # "<=" or ">="
    goal: float
    unit: str
    measured: float | None = None
    detail: str = ""

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not run"
        ok = self.measured <= self.goal if self.op == "<=" else self.measured >= self.goal
        return "PASS" if ok else "MISS"

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "target": f"{self.op} {self.goal:g} {self.unit}",
            "measured": None if self.measured is None else round(self.measured, 3),
            "unit": self.unit,
            "verdict": self.verdict,
            "detail": self.detail,
        }


def find(runs: list[RunResult], target: str, name: str, concurrency: int) -> RunResult | None:
    return next((r for r in runs if (r.target, r.name, r.concurrency) == (target, name, concurrency)), None)


def added_latency(runs: list[RunResult], name: str, concurrency: int = 1) -> float | None:
    djllm, direct = find(runs, "djllm", name, concurrency), find(runs, "direct", name, concurrency)
    if djllm is None or direct is None:
        return None
    return djllm.p50_ms - direct.p50_ms


def slow_figures(run: RunResult | None, concurrency: int, latency_ms: float) -> dict | None:
    if run is None:
        return None
    bound = concurrency / (latency_ms / 1000)
    span_rps = run.span_rps or run.rps
    return {
        "concurrency": concurrency,
        "upstream_latency_ms": latency_ms,
        "littles_law_bound_rps": bound,
        "throughput_rps": round(span_rps, 1),
        "percent_of_bound": round(100 * span_rps / bound, 1),
        "wrk_rps": run.rps,
        "wrk_percent_of_bound": round(100 * run.rps / bound, 1),
        "mean_latency_ms": run.mean_ms,
    }


def targets(runs: list[RunResult], slow: dict | None) -> list[Target]:
    out = []
    for name in ("plain", "stream"):
        added = added_latency(runs, name)
        out.append(Target(f"added_p50_c1_{name}", f"added latency p50, c=1, {name}", "<=", 2.0, "ms", added))
    for name in ("plain", "stream"):
        run = find(runs, "djllm", name, 32)
        out.append(Target(f"rps_c32_{name}", f"req/s, c=32, 0 ms upstream, {name}", ">=", 400, "req/s",
                          run.rps if run else None))  # fmt: skip
    out.append(
        Target(
            "littles_law_c200",
            "c=200, 1000 ms upstream, % of Little's-law bound",
            ">=",
            95,
            "%",
            slow["percent_of_bound"] if slow else None,
            f"{slow['throughput_rps']} of {slow['littles_law_bound_rps']:g} req/s" if slow else "",
        )
    )
    return out


def _fmt(value: float | None, width: int = 8, digits: int = 2) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else " " * (width - 1) + "-"


def table(runs: list[RunResult], config: dict) -> str:
    lines = [
        "",
        f"djllm benchmark — {config['workers']} gunicorn+uvicorn workers, {config['database']}, "
        f"{config['cache']} cache, {config['cpus']} CPUs (wrk, the fake upstream and djllm share them)",
        "Rate limits OFF (RATE_LIMIT_ENABLED=false): a real per-token limit (RATE_LIMIT, default 60/m) would cap "
        "every throughput run.",
        "",
        f"{'':8}{'':>5} | {'djllm':^58} | {'direct to upstream':^36} | {'added':>7}",
        f"{'run':8}{'c':>5} | {'req/s':>9} {'p50':>8} {'p95':>8} {'p99':>8} {'err':>6} {'cpu/req':>7} {'others':>5} | "
        f"{'req/s':>9} {'p50':>8} {'p95':>8} {'p99':>8} | {'p50 ms':>7}",
    ]
    keys = []
    for run in runs:
        if run.target == "djllm" and (run.name, run.concurrency) not in keys:
            keys.append((run.name, run.concurrency))
    for name, concurrency in keys:
        d, b = find(runs, "djllm", name, concurrency), find(runs, "direct", name, concurrency)
        added = added_latency(runs, name, concurrency) if b else None
        direct = (
            f"{b.rps:9.1f} {b.p50_ms:8.2f} {b.p95_ms:8.2f} {b.p99_ms:8.2f}"
            if b
            else f"{'-':>9} {'-':>8} {'-':>8} {'-':>8}"
        )
        lines.append(
            f"{name:8}{concurrency:>5} | {d.rps:9.1f} {d.p50_ms:8.2f} {d.p95_ms:8.2f} {d.p99_ms:8.2f} "
            f"{d.error_count:>6} {_fmt(d.cpu_ms_per_request, 7)} {_fmt(d.other_cpus, 5)} | {direct} | {_fmt(added, 7)}"
        )
    lines.append(
        "(ms; err: non-2xx, timeouts and socket errors; cpu/req: CPU ms of the djllm workers per completed request;\n"
        " others: CPUs kept busy by other processes on the machine during the run (not the bench's own);\n"
        " cache: answered from djllm's response cache; slow: 1000 ms upstream)"
    )
    return "\n".join(lines)


def target_table(items: list[Target], slow: dict | None, cache_rps: float | None) -> str:
    lines = ["", f"{'Targets (issue 3)':52} {'target':>14} {'measured':>14}  verdict"]
    for t in items:
        measured = "-" if t.measured is None else f"{t.measured:.2f} {t.unit}"
        lines.append(f"{t.label:52} {t.op + ' ' + format(t.goal, 'g') + ' ' + t.unit:>14} {measured:>14}  {t.verdict}")
    if slow:
        lines.append(
            f"  c=200 @ 1000 ms: {slow['throughput_rps']} req/s over the span in which requests completed "
            f"(wrk's whole-run figure {slow['wrk_rps']} req/s = {slow['wrk_percent_of_bound']} %, which counts "
            f"the requests still in flight at the end as lost); mean latency {slow['mean_latency_ms']:.1f} ms"
        )
    if cache_rps is not None:
        lines.append(f"{'cache-hit req/s, c=32 (no target)':52} {'':>14} {cache_rps:>8.1f} req/s")
    return "\n".join(lines)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except OSError:
        return None


def write_json(payload: dict, path: Path | None = None) -> Path:
    path = path or RESULTS / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    path.write_text(json.dumps({**meta, **payload}, indent=2) + "\n")
    return path
