"""The processes under test: the fake upstream and djllm as `make serve` runs it (gunicorn + uvicorn workers).

Every process is started in its own session (process group) and registered with `Processes`, which stops them
all, newest first, by process-group id: on normal exit, on an exception, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: dict | bytes | None = None, headers: dict | None = None, timeout: float = 10):
    """A small blocking HTTP call: (status, headers, body bytes). HTTP errors are answers, not exceptions."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Processes:
    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 15.0) -> None:
        """SIGTERM to the process group (gunicorn passes it to its workers), SIGKILL if it lingers."""
        self._procs = [(n, p) for n, p in self._procs if p is not proc]
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(proc.pid, signal.SIGKILL)  # anything left in the group (a stray worker)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self) -> None:
        """Newest first, but djllm before the fake upstream it calls (no upstream errors while it drains)."""
        ordered = sorted(reversed(self._procs), key=lambda item: item[0] == "fake upstream")
        for _, proc in ordered:
            self.stop(proc)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C does, so `finally` blocks stop what was started."""

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)
    # Ctrl-C raises KeyboardInterrupt even when started in the background (where SIGINT starts out ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its live descendants (a gateway's master and its workers)."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += cpu_seconds(current)
        stack.extend(children(current))
    return total


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Stack:
    """The fake upstream and djllm on free 127.0.0.1 ports, sharing one work directory for logs and the DB."""

    workdir: Path
    procs: Processes
    workers: int = 2
    database_url: str | None = None  # None: a fresh SQLite file in workdir
    fake_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    upstream_key: str = field(default_factory=lambda: "sk-bench-" + secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    # Production settings refuse to start without FIELD_ENCRYPTION_KEYS (a Fernet key: 32 url-safe base64 bytes).
    field_encryption_key: str = field(
        default_factory=lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    )
    fake: subprocess.Popen | None = None
    fake_latency_ms: float = 0
    server: subprocess.Popen | None = None
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    app: str = "config.asgi:application"
    extra_env: dict[str, str] = field(default_factory=dict)  # applied last: experiments (CONN_MAX_AGE=60, ...)

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------------------------------- fake upstream
    def start_fake(self, latency_ms: float = 0) -> None:
        cmd = [sys.executable, "-m", "bench.fake_upstream", "--host", "127.0.0.1", "--port", str(self.fake_port)]
        cmd += ["--latency-ms", f"{latency_ms:g}", "--api-key", self.upstream_key]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = self.workdir / "fake_upstream.log"
        self.fake = self.procs.start("fake upstream", cmd, env=env, log=log)
        self.fake_latency_ms = latency_ms
        self.wait_ready(lambda: http("GET", self.fake_url + "/_fake/stats", timeout=2)[0] == 200, self.fake, log, 20)

    def restart_fake(self, latency_ms: float) -> None:
        if self.fake is not None:
            self.procs.stop(self.fake)
        self.start_fake(latency_ms)

    def fake_stats(self) -> dict:
        status, _, body = http("GET", self.fake_url + "/_fake/stats")
        return json.loads(body) if status == 200 else {}

    def wait_quiet(self, quiet_s: float = 0.5, timeout: float = 30.0) -> None:
        """Until the upstream has no call in flight and no new call for `quiet_s`: the requests wrk cut off at the
        end of a run keep djllm (and its upstream) busy for a while, and must not leak into the next run."""
        deadline = time.monotonic() + timeout
        last_total, since = None, time.monotonic()
        while time.monotonic() < deadline:
            stats = self.fake_stats()
            total = stats.get("total")
            if total != last_total or stats.get("in_flight"):
                last_total, since = total, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.05)

    # ---------------------------------------------------------------------------------------- djllm
    def build_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "MAKEFLAGS", "MFLAGS")}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.production",
            DJANGO_SECRET_KEY=self.secret_key,
            FIELD_ENCRYPTION_KEYS=self.field_encryption_key,
            DEBUG="false",
            SECURE_SSL_REDIRECT="false",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DATABASE_URL=self.database_url or f"sqlite:///{self.workdir / 'bench.sqlite3'}",
            RATE_LIMIT_ENABLED="false",
            LOG_LEVEL="WARNING",
            LLM_PROVIDER="openai",
            OPENAI_MODEL=MODEL,
            OPENAI_BASE_URL=self.fake_url + "/v1",
            OPENAI_API_KEY=self.upstream_key,
            PORT=str(self.port),
            WEB_CONCURRENCY=str(self.workers),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def manage(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise StackError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def start_djllm(self) -> None:
        self.env = self.build_env()
        self.manage("migrate", "--noinput", "-v", "0")
        self.token = self.manage("createtoken", "bench", "--create-user", "--name", "bench").strip().splitlines()[-1]
        gunicorn = Path(sys.executable).with_name("gunicorn")
        runner = [str(gunicorn)] if gunicorn.exists() else [sys.executable, "-m", "gunicorn"]
        # `make serve`'s command line (its gunicorn settings file included: worker class, timeouts, the metrics
        # directory the workers share), minus --access-logfile: a line per request would be measured too.
        cmd = runner + [self.app, "-c", str(ROOT / "config" / "gunicorn.py")]
        cmd += ["--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}"]
        log = self.workdir / "djllm.log"
        self.server = self.procs.start("djllm", cmd, env=self.env, log=log)

        def ready() -> bool:
            if len(children(self.server.pid)) < self.workers:
                return False
            return all(http("GET", self.url + "/api/v1/health", timeout=2)[0] == 200 for _ in range(4))

        self.wait_ready(ready, self.server, log, 60)

    def worker_pids(self) -> list[int]:
        return children(self.server.pid) if self.server else []

    def worker_rss_bytes(self) -> dict[int, int]:
        """pid -> resident memory (VmRSS) of each djllm worker."""
        return {pid: rss for pid in self.worker_pids() if (rss := rss_bytes(pid)) is not None}

    def worker_cpu_seconds(self) -> float:
        """User + system CPU time used so far by the djllm workers (all their threads)."""
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def log_problems(self, top: int = 5) -> list[str]:
        """djllm's WARNING/ERROR log lines, grouped by message with the numbers blanked, most frequent first."""
        counts: dict[str, int] = {}
        try:
            lines = (self.workdir / "djllm.log").read_text(errors="replace").splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                message = re.sub(r"[0-9a-f]{32}|\d+(\.\d+)?", "#", str(entry.get("message", "")))[:160]
                key = f"{entry['level']} {entry.get('logger', '')}: {message}"
                counts[key] = counts.get(key, 0) + 1
        return [f"{n} x {key}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]

    def wait_ready(self, check, proc: subprocess.Popen, log: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"{log.stem} exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise StackError(f"{log.stem} did not become ready in {timeout:g} s:\n{_tail(log)}")
