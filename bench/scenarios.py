"""What `make bench` measures: the request bodies, the preflight checks and the scenarios.

plain / stream  POST /v1/chat/completions through djllm, the same body straight to the fake upstream (the
                direct-to-upstream baseline) and through each peer gateway that runs (bench/gateways.py), one
                after the other at each concurrency. temperature 0.7: the response cache (on by default only for
                temperature 0 or `cache: true`) never answers these; each djllm run checks that the upstream saw
                as many calls as djllm answered.
cache           temperature 0, one body repeated: served by the response cache after the first call per worker;
                set against a miss (the plain body) at the same concurrency.
rss             the djllm workers' resident memory (VmRSS, summed) once warm, then again after N more plain
                requests (default 100,000) at concurrency 32.
slow            the fake upstream restarted with 1000 ms latency, every target at concurrency 200: completed
                requests over the span in which they completed, against Little's law (concurrency / latency =
                200 req/s) and against the direct run.

A peer that fails a scenario's preflight (a gateway that cannot stream, say) is left out of that scenario and
the report says why.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.gateways import Target
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
    rss_requests: int = 100_000
    rss_concurrency: int = 32
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
    peers: list[Target] = field(default_factory=list)  # the peer gateways that run
    peer_failures: dict[str, dict[str, str]] = field(default_factory=dict)  # peer -> scenario -> why it was left out
    raw_dir: Path | None = None  # wrk's raw output of every measured run goes here
    rss: dict | None = None

    def body_file(self, kind: str) -> Path:
        path = self.bodydir / f"{kind}.json"
        if not path.exists():
            path.write_text(json.dumps(BODIES[kind]))
        return path

    def log(self, message: str) -> None:
        print(message, flush=True)

    # ------------------------------------------------------------------------------------------ checks
    def target(self, name: str) -> Target:
        if name == "djllm":
            return Target("djllm", self.stack.url, self.stack.token)
        if name == "direct":
            return Target("direct", self.stack.fake_url, self.stack.upstream_key)
        return next(t for t in self.peers if t.name == name)

    def check_one(self, kind: str, target: Target) -> None:
        """One request, checked by hand: a 200 of the right shape (djllm: and the cache flag). StackError if not."""
        body = BODIES[kind]
        headers = {"Authorization": f"Bearer {target.token}", **target.headers}
        status, resp_headers, raw = http("POST", target.url + PATH, body, headers, timeout=30)
        if status != 200:
            raise StackError(f"{kind} preflight to {target.name}: HTTP {status}: {raw[:500]!r}")
        if body.get("stream"):
            if not raw.rstrip().endswith(b"data: [DONE]"):
                raise StackError(
                    f"{kind} preflight to {target.name}: the stream did not end with [DONE]: {raw[-500:]!r}"
                )
        elif "choices" not in json.loads(raw):
            raise StackError(f"{kind} preflight to {target.name}: no choices in {raw[:500]!r}")
        cached = {k.lower(): v for k, v in resp_headers.items()}.get("x-djllm-cached")
        if target.name == "djllm" and kind != "cache" and cached != "false":
            raise StackError(f"{kind} preflight: djllm answered X-Djllm-Cached: {cached} (must not be cached)")

    def preflight(self, kind: str) -> None:
        """djllm and direct must pass (else the run stops); a peer that fails is left out of this scenario."""
        self.check_one(kind, self.target("djllm"))
        self.check_one(kind, self.target("direct"))
        for peer in self.peers:
            self.peer_ready(kind, peer)

    def peer_ready(self, kind: str, peer: Target) -> bool:
        if kind in self.peer_failures.get(peer.name, {}):
            return False
        problem = None
        for attempt in range(3):  # a pooled connection to a restarted upstream may fail once
            try:
                self.check_one(kind, peer)
                return True
            except (StackError, OSError, ValueError) as exc:
                problem = str(exc)
                time.sleep(0.5 * (attempt + 1))
        self.peer_failures.setdefault(peer.name, {})[kind] = problem[:300]
        self.log(f"  {peer.name} left out of {kind}: {problem[:300]}")
        return False

    def runnable_peers(self, kind: str) -> list[Target]:
        return [p for p in self.peers if kind not in self.peer_failures.get(p.name, {})]

    # ------------------------------------------------------------------------------------------ runs
    def wrk(
        self, kind: str, target: str, concurrency: int, duration_s: float, *, timestamps=False, raw: str | None = None
    ) -> RunResult:
        """One wrk run against `target` (djllm, direct or a peer's name); `raw` names the file that keeps wrk's
        output in raw_dir (measured runs; warm-ups keep none)."""
        where = self.target(target)
        return run_wrk(
            name=kind,
            target=target,
            url=where.url + PATH,
            body_file=self.body_file(kind),
            concurrency=concurrency,
            duration_s=duration_s,
            token=where.token,
            headers=where.headers,
            timestamps=timestamps,
            max_threads=self.options.wrk_threads,
            raw_path=self.raw_dir / f"{raw}.txt" if raw and self.raw_dir else None,
        )

    def measure(self, kind: str, target: str, concurrency: int, duration_s: float, *, timestamps=False) -> RunResult:
        """A measured run after a warm-up at the same concurrency (none for direct: the fake needs none), with the
        target's CPU time per request (djllm: its workers; a peer: its process tree) and the upstream's calls."""
        djllm = target == "djllm"
        if target != "direct" and self.options.warmup_s > 0:
            self.wrk(kind, target, concurrency, self.options.warmup_s)
            self.stack.wait_quiet()
        where = self.target(target)
        cpu_of = self.stack.worker_cpu_seconds if djllm else where.cpu_seconds
        before, cpu_before = self.stack.fake_stats(), cpu_of()
        around = self.options.around_run if djllm else None
        stop = around(f"{kind}-c{concurrency}", duration_s) if around else None
        try:
            with Meter() as meter:
                result = self.wrk(kind, target, concurrency, duration_s, timestamps=timestamps,
                                  raw=f"{target}-{kind}-c{concurrency}")  # fmt: skip
        finally:
            if stop is not None:
                stop()
        result.other_cpus = meter.other_cpus
        cpu_after = cpu_of()  # before draining: only what the run's requests cost
        if target != "direct":
            self.stack.wait_quiet()
        if cpu_before is not None and cpu_after is not None and result.requests:
            result.cpu_ms_per_request = round(1000 * (cpu_after - cpu_before) / result.requests, 2)
        if djllm:
            after = self.stack.fake_stats()
            key = f"{kind}-c{concurrency}"
            self.upstream_calls[key] = after.get("total", 0) - before.get("total", 0)
            self.upstream_connections[key] = after.get("connections", 0) - before.get("connections", 0)
        self._record(result)
        return result

    def measure_djllm(self, kind: str, concurrency: int, duration_s: float, *, timestamps=False) -> RunResult:
        return self.measure(kind, "djllm", concurrency, duration_s, timestamps=timestamps)

    def _record(self, result: RunResult) -> None:
        self.runs.append(result)
        errors = f"  errors {result.errors}" if result.errors else ""
        if result.cpu_ms_per_request is not None:
            errors = f"  cpu {result.cpu_ms_per_request:.2f} ms/req{errors}"
        if result.other_cpus:
            errors += f"  (others busy: {result.other_cpus:.2f} CPUs)"
        self.log(
            f"  {result.target:7} {result.name:6} c={result.concurrency:<3} {result.rps:9.1f} req/s  "
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
            self.measure(kind, "direct", concurrency, self.options.duration_s)
            result = self.measure_djllm(kind, concurrency, self.options.duration_s)
            calls = self.upstream_calls[f"{kind}-c{concurrency}"]
            # wrk stops mid-flight: up to `concurrency` upstream calls may belong to requests it did not count.
            if not result.requests <= calls <= result.requests + concurrency:
                self.notes.append(
                    f"{kind} c={concurrency}: djllm answered {result.requests} requests but the upstream saw "
                    f"{calls} calls (expected one each; is something cached or retried?)"
                )
            for peer in self.runnable_peers(kind):
                self.measure(kind, peer.name, concurrency, self.options.duration_s)

    def cache(self) -> None:
        self.preflight("cache")
        concurrency = 32 if 32 in self.options.concurrencies else max(self.options.concurrencies)
        result = self.measure_djllm("cache", concurrency, self.options.duration_s)
        calls = self.upstream_calls[f"cache-c{concurrency}"]
        if calls:
            self.notes.append(f"cache c={concurrency}: {calls} upstream calls during the cached run (expected 0)")
        if result.requests == 0:
            self.notes.append("cache: no request completed")
        if not any((r.target, r.name, r.concurrency) == ("djllm", "plain", concurrency) for r in self.runs):
            self.log("  (a miss at the same concurrency, for the hit/miss ratio)")
            self.measure_djllm("plain", concurrency, self.options.duration_s)

    def memory(self) -> dict:
        """The workers' RSS once warm and after `rss_requests` more plain requests (several wrk runs in a row)."""
        options, stack = self.options, self.stack
        if stack.fake_latency_ms:
            stack.restart_fake(0)
        self.check_one("plain", self.target("djllm"))
        stack.wait_quiet()
        start = stack.worker_rss_bytes()
        done = errors = chunk = 0
        rps = None
        while done < options.rss_requests:
            left = options.rss_requests - done
            seconds = 10 if rps is None else min(60, max(2, math.ceil(1.02 * left / rps)))  # wrk takes whole seconds
            chunk += 1
            result = self.wrk("plain", "djllm", options.rss_concurrency, seconds, raw=f"djllm-rss-{chunk}")
            done += result.requests
            errors += result.error_count
            rps = result.rps or None
            if not result.requests:
                self.notes.append("rss: a run completed no request; stopped early")
                break
            self.log(f"  {done} of {options.rss_requests} requests")
        stack.wait_quiet()
        end = stack.worker_rss_bytes()
        common = sorted(set(start) & set(end))
        if set(start) != set(end):
            self.notes.append(f"rss: the workers changed during the run ({sorted(start)} -> {sorted(end)})")
        before, after = sum(start[p] for p in common), sum(end[p] for p in common)
        self.rss = {
            "requests": done,
            "errors": errors,
            "concurrency": options.rss_concurrency,
            "workers": common,
            "start_mb": round(before / 2**20, 1),
            "end_mb": round(after / 2**20, 1),
            "growth_percent": round(100 * (after - before) / before, 1) if before else None,
            "per_worker_mb": {str(p): [round(start[p] / 2**20, 1), round(end[p] / 2**20, 1)] for p in common},
        }
        self.log(
            f"  djllm workers' RSS {self.rss['start_mb']} MB warm -> {self.rss['end_mb']} MB after {done} requests "
            f"({self.rss['growth_percent']:+.1f} %)"
        )
        return self.rss

    def slow(self) -> RunResult:
        """Every target at c=200 against a 1000 ms upstream; returns djllm's run (the others join `runs`)."""
        options = self.options
        self.log(f"  restarting the fake upstream with {options.slow_latency_ms:g} ms latency")
        self.stack.restart_fake(options.slow_latency_ms)
        time.sleep(0.5)
        self.preflight("slow")
        c, seconds = options.slow_concurrency, options.slow_duration_s
        self.measure("slow", "direct", c, seconds, timestamps=True)
        result = self.measure_djllm("slow", c, seconds, timestamps=True)
        for peer in self.runnable_peers("slow"):
            self.measure("slow", peer.name, c, seconds, timestamps=True)
        return result
