"""What `make bench` measures: the request bodies, the preflight checks and the four scenarios.

plain / stream  POST /v1/chat/completions through djllm, and the same body straight to the fake upstream (the
                direct-to-upstream baseline), at each concurrency. temperature 0.7: the response cache (on by
                default only for temperature 0 or `cache: true`) never answers these; each run checks that the
                upstream saw as many calls as djllm answered.
slow            the fake upstream restarted with 1000 ms latency, djllm at concurrency 200: completed requests
                over the span in which they completed, against Little's law (concurrency / latency = 200 req/s).
cache           temperature 0, one body repeated: served by the response cache after the first call per worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import RunResult, run_wrk
from bench.machine import Meter
from bench.stack import MODEL, Stack, StackError, http

PROMPT = (
    "Summarise this customer comment in one sentence: The delivery was two days late, but the support team "
    "answered within minutes and the replacement part fits perfectly."
)
BODIES: dict[str, dict] = {
    "plain": {
        "model": MODEL,
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPT}],
        "temperature": 0.7,
        "max_tokens": 64,
    },
}
BODIES["stream"] = {**BODIES["plain"], "stream": True, "stream_options": {"include_usage": True}}
BODIES["cache"] = {**BODIES["plain"], "temperature": 0}
BODIES["slow"] = BODIES["plain"]
PATH = "/v1/chat/completions"


@dataclass
class Options:
    concurrencies: list[int]
    duration_s: float
    slow_duration_s: float
    slow_concurrency: int = 200
    slow_latency_ms: float = 1000
    warmup_s: float = 2.0
    wrk_threads: int = 2
    # called around each measured djllm run: (name) -> stop(), e.g. a py-spy recording
    around_run: Callable[[str, float], Callable[[], None]] | None = None


@dataclass
class Bench:
    stack: Stack
    options: Options
    bodydir: Path
    runs: list[RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    upstream_calls: dict[str, int] = field(default_factory=dict)
    upstream_connections: dict[str, int] = field(default_factory=dict)  # opened during the run (pooling: few)

    def body_file(self, kind: str) -> Path:
        path = self.bodydir / f"{kind}.json"
        if not path.exists():
            path.write_text(json.dumps(BODIES[kind]))
        return path

    def log(self, message: str) -> None:
        print(message, flush=True)

    # ------------------------------------------------------------------------------------------ checks
    def preflight(self, kind: str) -> None:
        """One request each way, checked by hand before any load: a 200 of the right shape, and the cache flag."""
        body = BODIES[kind]
        for target, url, headers in (
            ("djllm", self.stack.url + PATH, {"Authorization": f"Bearer {self.stack.token}"}),
            ("direct", self.stack.fake_url + PATH, {"Authorization": f"Bearer {self.stack.upstream_key}"}),
        ):
            status, resp_headers, raw = http("POST", url, body, headers, timeout=30)
            if status != 200:
                raise StackError(f"{kind} preflight to {target}: HTTP {status}: {raw[:500]!r}")
            if body.get("stream"):
                if not raw.rstrip().endswith(b"data: [DONE]"):
                    raise StackError(f"{kind} preflight to {target}: the stream did not end with [DONE]: {raw!r}")
            elif "choices" not in json.loads(raw):
                raise StackError(f"{kind} preflight to {target}: no choices in {raw[:500]!r}")
            cached = {k.lower(): v for k, v in resp_headers.items()}.get("x-djllm-cached")
            if target == "djllm" and kind != "cache" and cached != "false":
                raise StackError(f"{kind} preflight: djllm answered X-Djllm-Cached: {cached} (must not be cached)")

    # ------------------------------------------------------------------------------------------ runs
    def wrk(self, kind: str, target: str, concurrency: int, duration_s: float, *, timestamps=False) -> RunResult:
        djllm = target == "djllm"
        return run_wrk(
            name=kind,
            target=target,
            url=(self.stack.url if djllm else self.stack.fake_url) + PATH,
            body_file=self.body_file(kind),
            concurrency=concurrency,
            duration_s=duration_s,
            token=self.stack.token if djllm else self.stack.upstream_key,
            timestamps=timestamps,
            max_threads=self.options.wrk_threads,
        )

    def measure_djllm(self, kind: str, concurrency: int, duration_s: float, *, timestamps=False) -> RunResult:
        if self.options.warmup_s > 0:
            self.wrk(kind, "djllm", concurrency, self.options.warmup_s)
            self.stack.wait_quiet()
        before, cpu_before = self.stack.fake_stats(), self.stack.worker_cpu_seconds()
        stop = self.options.around_run(f"{kind}-c{concurrency}", duration_s) if self.options.around_run else None
        try:
            with Meter() as meter:
                result = self.wrk(kind, "djllm", concurrency, duration_s, timestamps=timestamps)
        finally:
            if stop is not None:
                stop()
        result.other_cpus = meter.other_cpus
        cpu = self.stack.worker_cpu_seconds() - cpu_before  # before draining: only what the run's requests cost
        self.stack.wait_quiet()
        after = self.stack.fake_stats()
        key = f"{kind}-c{concurrency}"
        if result.requests:
            result.cpu_ms_per_request = round(1000 * cpu / result.requests, 2)
        self.upstream_calls[key] = after.get("total", 0) - before.get("total", 0)
        self.upstream_connections[key] = after.get("connections", 0) - before.get("connections", 0)
        self._record(result)
        return result

    def measure_direct(self, kind: str, concurrency: int, duration_s: float) -> RunResult:
        with Meter() as meter:
            result = self.wrk(kind, "direct", concurrency, duration_s)
        result.other_cpus = meter.other_cpus
        self._record(result)
        return result

    def _record(self, result: RunResult) -> None:
        self.runs.append(result)
        errors = f"  errors {result.errors}" if result.errors else ""
        if result.cpu_ms_per_request is not None:
            errors = f"  cpu {result.cpu_ms_per_request:.2f} ms/req{errors}"
        if result.other_cpus:
            errors += f"  (others busy: {result.other_cpus:.2f} CPUs)"
        self.log(
            f"  {result.target:6} {result.name:6} c={result.concurrency:<3} {result.rps:9.1f} req/s  "
            f"p50 {result.p50_ms:8.2f}  p95 {result.p95_ms:8.2f}  p99 {result.p99_ms:8.2f} ms{errors}"
        )

    # ------------------------------------------------------------------------------------------ scenarios
    def warm(self, kinds: list[str]) -> None:
        """A few seconds of load over several connections, so every worker has imported the SDK's lazy modules,
        built its clients and filled its caches before anything is measured."""
        for kind in kinds:
            self.preflight(kind)
            if self.options.warmup_s > 0:
                self.wrk(kind, "djllm", 8, max(self.options.warmup_s, 2.0))
        self.stack.wait_quiet()

    def throughput(self, kind: str) -> None:
        self.preflight(kind)
        for concurrency in self.options.concurrencies:
            self.measure_direct(kind, concurrency, self.options.duration_s)
            result = self.measure_djllm(kind, concurrency, self.options.duration_s)
            calls = self.upstream_calls[f"{kind}-c{concurrency}"]
            # wrk stops mid-flight: up to `concurrency` upstream calls may belong to requests it did not count.
            if not result.requests <= calls <= result.requests + concurrency:
                self.notes.append(
                    f"{kind} c={concurrency}: djllm answered {result.requests} requests but the upstream saw "
                    f"{calls} calls (expected one each; is something cached or retried?)"
                )

    def cache(self) -> None:
        self.preflight("cache")
        concurrency = 32 if 32 in self.options.concurrencies else max(self.options.concurrencies)
        result = self.measure_djllm("cache", concurrency, self.options.duration_s)
        calls = self.upstream_calls[f"cache-c{concurrency}"]
        if calls:
            self.notes.append(f"cache c={concurrency}: {calls} upstream calls during the cached run (expected 0)")
        if result.requests == 0:
            self.notes.append("cache: no request completed")

    def slow(self) -> RunResult:
        options = self.options
        self.log(f"  restarting the fake upstream with {options.slow_latency_ms:g} ms latency")
        self.stack.restart_fake(options.slow_latency_ms)
        time.sleep(0.5)
        self.preflight("slow")
        return self.measure_djllm("slow", options.slow_concurrency, options.slow_duration_s, timestamps=True)
