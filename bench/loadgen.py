"""Load generation with wrk (Debian package `wrk`) and bench/lua/post.lua, which prints one JSON line per run."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "lua" / "post.lua"
MARKER = "BENCH_JSON "


class LoadError(RuntimeError):
    pass


@dataclass
class RunResult:
    """One wrk run. Latencies in milliseconds; `rps` is wrk's own figure (completed requests / run duration)."""

    name: str
    target: str  # "djllm", "direct" or a peer gateway's name ("litellm", "portkey")
    concurrency: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    # Only with timestamps: seconds from the first thread's start to the last response.
    span_s: float | None = None
    # djllm runs: the workers' CPU time (user + system, all threads) over the run / completed requests.
    cpu_ms_per_request: float | None = None
    # CPUs other processes on the machine kept busy during the run, on average (bench/machine.py).
    other_cpus: float | None = None
    # Where wrk's own output of this run was kept (raw: its summary and the script's JSON line).
    raw_path: str | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def span_rps(self) -> float | None:
        """Completed requests over the time in which they completed (no requests cut off by the end of the run)."""
        if not self.span_s:
            return None
        return self.requests / self.span_s

    def as_dict(self) -> dict:
        data = asdict(self)
        data["span_rps"] = self.span_rps
        data["error_count"] = self.error_count
        return data


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadError("wrk is not installed (Debian: apt-get install wrk; `make bench` installs it as root)")
    return path


def wrk_threads(concurrency: int, max_threads: int) -> int:
    return max(1, min(concurrency, max_threads))


def run_wrk(
    *,
    name: str,
    target: str,
    url: str,
    body_file: Path,
    concurrency: int,
    duration_s: float,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timestamps: bool = False,
    max_threads: int = 2,
    timeout_s: float = 30.0,
    raw_path: Path | None = None,
) -> RunResult:
    """One wrk run; `raw_path`, when given, keeps wrk's command line, stdout and stderr there."""
    env = {
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_TOKEN": token or "",
        "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in (headers or {}).items()),
        "BENCH_TIMESTAMPS": "1" if timestamps else "0",
        "PATH": "/usr/bin:/bin",
    }
    cmd = [
        wrk_path(),
        f"-t{wrk_threads(concurrency, max_threads)}",
        f"-c{concurrency}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"wrk did not finish: {' '.join(cmd)}") from exc
    if raw_path is not None:
        raw_path.parent.mkdir(parents=True, exist_ok=True)
        raw_path.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        raise LoadError(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    data = json.loads(line[len(MARKER) :])
    lat = data["latency_us"]
    duration = data["duration_us"] / 1e6
    return RunResult(
        name=name,
        target=target,
        concurrency=concurrency,
        duration_s=round(duration, 3),
        requests=data["requests"],
        rps=round(data["requests"] / duration, 1) if duration else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p95_ms=lat["p95"] / 1000,
        p99_ms=lat["p99"] / 1000,
        mean_ms=round(lat["mean"] / 1000, 3),
        max_ms=lat["max"] / 1000,
        errors={k: v for k, v in data["errors"].items() if v},
        span_s=data["span_s"],
        raw_path=str(raw_path) if raw_path is not None else None,
    )
