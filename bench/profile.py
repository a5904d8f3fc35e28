"""`python -m bench --profile`: py-spy records every djllm worker during each measured djllm run.

Raw collapsed stacks go to bench/results/profiles/<run>-<pid>.txt (feed them to flamegraph.pl or speedscope);
the summary ranks functions by self time (the frame on top of the stack) and by total time (anywhere on the
stack), as a share of all samples of all workers in that run. py-spy counts only busy samples (a thread waiting
in epoll or on a lock is idle and not sampled), so `busy` is samples / (rate x seconds x workers): ~100 % means
the workers' main threads were never idle. Install: `.venv/bin/pip install py-spy` (root, or ptrace allowed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.stack import Stack

RATE = 100
ROOT = Path(__file__).resolve().parent.parent  # the project's own files are named relative to it
_WRAPPERS = (
    "gunicorn",
    "uvicorn_worker/",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "stdlib/threading.py",
    "concurrent/futures/thread.py",
    "django/core/handlers/exception.py",
    "asgiref/sync.py",
    "<frozen",
)
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def _frame(frame: str) -> str:
    """'handle (/x/site-packages/django/core/handlers/asgi.py:160)' -> 'handle (django/core/handlers/asgi.py)'."""
    frame = _LINE.sub(")", frame)
    for marker in ("site-packages/", "/lib/python3", f"{ROOT}/"):
        head, sep, tail = frame.partition(marker)
        if sep:
            name = head.split(" (")[0]
            if marker == "/lib/python3":
                tail = "stdlib/" + tail.split("/", 1)[-1]
            return f"{name} ({tail}"
    return frame


def summarize(files: list[Path], seconds: float, top: int = 20) -> dict:
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_frame(f) for f in stack.split(";")]
            samples += count
            self_counts[frames[-1]] += count
            for name in set(frames):
                if not any(w in name for w in _WRAPPERS):
                    total_counts[name] += count
    expected = RATE * seconds * max(len(files), 1)

    def ranked(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / samples, 1)) for name, n in counter.most_common(top)] if samples else []

    return {
        "samples": samples,
        "busy_percent": round(100 * samples / expected, 1) if expected else None,
        "self": ranked(self_counts),
        "total": ranked(total_counts),
        "files": [str(p) for p in files],
    }


class Profiler:
    def __init__(self, stack: Stack, outdir: Path) -> None:
        self.stack = stack
        self.outdir = outdir
        self.binary = py_spy()
        self.results: dict[str, dict] = {}
        if self.binary is None:
            print("  --profile: py-spy is not installed (.venv/bin/pip install py-spy); not profiling", flush=True)

    def record(self, name: str, seconds: float):
        """Start py-spy on each worker for `seconds`; returns the function that waits for them and summarizes."""
        if self.binary is None:
            return lambda: None
        self.outdir.mkdir(parents=True, exist_ok=True)
        running = []
        for pid in self.stack.worker_pids():
            out = self.outdir / f"{name}-{pid}.txt"
            cmd = [self.binary, "record", "--pid", str(pid), "--duration", f"{max(int(seconds), 1)}"]
            cmd += ["--rate", str(RATE), "--format", "raw", "--gil", "--nonblocking", "-o", str(out)]
            log = self.outdir / f"{name}-{pid}.log"
            running.append((self.stack.procs.start(f"py-spy {pid}", cmd, env={"PATH": "/usr/bin:/bin"}, log=log), out))

        def stop() -> None:
            for proc, _ in running:
                try:
                    proc.wait(seconds + 30)
                except subprocess.TimeoutExpired:
                    self.stack.procs.stop(proc)
            files = [out for _, out in running if out.exists()]
            self.results[name] = summarize(files, max(int(seconds), 1))

        return stop

    def summary(self) -> str:
        lines = []
        for name, result in self.results.items():
            lines.append(
                f"\nprofile {name}: {result['samples']} samples, workers busy ~{result['busy_percent']} % "
                "(share of time holding the GIL)"
            )
            lines.append("  self %   function" + " " * 58 + "| total %  function")
            for (s_name, s_pct), (t_name, t_pct) in zip(result["self"], result["total"], strict=False):
                lines.append(f"  {s_pct:6.1f}   {s_name[:66]:66} | {t_pct:6.1f}   {t_name[:70]}")
        return "\n".join(lines)
