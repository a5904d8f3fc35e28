"""`make soak`: minutes of mixed traffic against `make serve` while the upstream misbehaves, then the books.

    python -m bench.soak [--seconds S] [--concurrency N] [--workers N] [--seed N] [--workdir DIR]
    make soak SOAK_SECONDS=30

Needs PostgreSQL and Redis: DATABASE_URL names the server (its database part is replaced: the soak drops and
creates its own, SOAK_DATABASE, default `djllm_soak`), REDIS_URL the Redis database to use: nothing is flushed
(the soak's prompts carry a fresh run id, so no cached answer of another run is served), but give it a database no
other djllm uses, as its jobs worker takes every job message queued there. Starts:

- the fake upstream (bench/fake_upstream.py) with its ledger on: one entry per upstream attempt, with the usage
  each response reported (billed when delivered in full). After the warm-up it injects random 429s, 500/503s,
  timeouts (held past djllm's REQUEST_TIMEOUT, before the headers and mid-stream), connection resets and closes,
  cut streams and in-band stream errors;
- djllm exactly as `make serve` runs it (gunicorn + uvicorn workers, production settings, WEB_CONCURRENCY=2) with
  its own secret key, REQUEST_TIMEOUT=4 and short retry delays, and a jobs worker (Celery, threads);
- halfway through, a short storm of 429s (every upstream call is refused for STORM_SECONDS);
- a monthly budget on the soak's token and user (never reached), so every call reserves and settles;
- N client loops (asyncio) sending, by weight: plain and streamed chat completions (OpenAI's and, by model name,
  Anthropic's provider), plain ones through a route
  whose model always fails and falls back to another route, cached ones (a few prompts
  repeated at temperature 0), batches (POST /api/v1/batch), jobs (POST /api/v1/jobs), and requests the client
  hangs up on mid-way (plain: closed after a few ms; streamed: closed after the first chunk).

Every prompt carries a `[ledger:ID]` marker, so the upstream's ledger is joined to the request that caused it.
At the end (jobs finished, upstream quiet, records written, djllm stopped) it reads the usage rows and prices
from the database and prints bench/reconcile.py's books and each worker's RSS growth; it exits 1 on any mismatch
(the RSS figure is reported, never judged) and writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import random
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from bench import reconcile
from bench.stack import MODEL, Processes, StackError, children, free_port, http, install_signal_handlers

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REQUEST_TIMEOUT = 4.0  # per attempt: short, for timeouts to happen, yet far above a busy machine's normal answer
FAULT_MIX = {
    "429": 0.03,
    "500": 0.02,
    "503": 0.01,
    "timeout": 0.01,
    "stream_stall": 0.01,
    "reset": 0.02,
    "disconnect": 0.01,
    "stream_cut": 0.03,
    "stream_error": 0.01,
}
WEIGHTS = {
    "plain": 20,
    "fallback": 4,
    "stream": 16,
    "anthropic": 6,
    "anthropic_stream": 4,
    "cached": 15,
    "batch": 6,
    "job": 3,
    "hangup_plain": 8,
    "hangup_stream": 6,
    "hangup_batch": 2,
}
STORM_SECONDS = 1.5
RSS_SAMPLE_SECONDS = 5.0
BATCH_ITEMS = 6
JOB_ITEMS = 8
CACHED_PROMPTS = 6
CLAUDE = "claude-haiku-4-5"  # through /v1/chat/completions: djllm's Anthropic provider, the fake's /v1/messages
# Budgets on the token and its user (never reached), so every call reserves and settles. A route whose model
# always fails upstream (500) and falls back to another: retries and the fallback must stay
# inside the request's one row, billed at the fallback model's price.
FALLBACK_ALIAS, BROKEN_MODEL, BACKUP_ALIAS, BACKUP_MODEL = (
    "soak-primary",
    "gpt-4o-mini-broken",
    "soak-backup",
    "gpt-4.1-mini",
)
SETUP_SCRIPT = f"""
from accounts.models import APIToken, UserPreferences
from llm.models import ModelRoute
token = APIToken.objects.get(name="soak")
APIToken.objects.filter(pk=token.pk).update(monthly_budget_usd=1000)
UserPreferences.objects.update_or_create(user_id=token.user_id, defaults={{"monthly_budget_usd": 1000}})
backup = ModelRoute.objects.create(alias={BACKUP_ALIAS!r}, provider="openai", upstream_model={BACKUP_MODEL!r})
ModelRoute.objects.create(alias={FALLBACK_ALIAS!r}, provider="openai", upstream_model={BROKEN_MODEL!r}, fallback=backup)
"""
TOPICS = ("invoices", "a late delivery", "the weather", "a refund", "the quarterly report", "a broken part")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    default_seconds = float(os.environ.get("SOAK_SECONDS") or 180)
    parser.add_argument("--seconds", type=float, default=default_seconds, help="load duration (SOAK_SECONDS; 180)")
    parser.add_argument("--concurrency", type=int, default=8, help="client loops (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the traffic and fault mix (default random)")
    parser.add_argument("--workdir", type=Path, help="keep the logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.workers < 1:
        parser.error("--seconds, --concurrency and --workers must be positive")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


# ------------------------------------------------------------------------------------------------ services


def soak_database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise StackError(f"make soak needs PostgreSQL: DATABASE_URL is {parts.scheme or 'unset'}://…")
    return urlunsplit(parts._replace(path="/" + name))


def recreate_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = urlsplit(url).path.lstrip("/")
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise StackError(f"could not create the soak database {name!r} on {admin}: {exc}") from None


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise StackError(f"make soak needs Redis: {url} answered {exc}") from None


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def gunicorn_workers(root_pid: int) -> list[int]:
    """The workers of the gunicorn master somewhere under `make serve` (make -> shell -> gunicorn -> workers)."""
    stack = [root_pid]
    while stack:
        pid = stack.pop()
        if any(Path(arg).name == "gunicorn" for arg in _argv(pid)[:2]):  # the master (`python …/gunicorn …`)
            return children(pid)
        stack.extend(children(pid))
    return []


@dataclass
class Soak:
    args: argparse.Namespace
    workdir: Path
    procs: Processes
    database_url: str
    redis_url: str
    run_id: str = field(default_factory=lambda: "soak" + secrets.token_hex(4))
    fake_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    upstream_key: str = field(default_factory=lambda: "sk-soak-" + secrets.token_hex(8))
    env: dict[str, str] = field(default_factory=dict)
    token: str = ""
    server = None
    sent: list[reconcile.Sent] = field(default_factory=list)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> the POST's request id
    seq: int = 0
    http_requests: int = 0
    items: int = 0
    rss_samples: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # pid -> [(requests, RSS)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    # -------------------------------------------------------------------------------------------- start/stop
    def build_env(self) -> dict[str, str]:
        drop = ("DJANGO_SETTINGS_MODULE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SERVE_SETTINGS", "HOST")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            FIELD_ENCRYPTION_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),
            DEBUG="false",
            SECURE_SSL_REDIRECT="false",  # plain HTTP on 127.0.0.1; everything else stays production
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            RATE_LIMIT_ENABLED="false",
            LOG_LEVEL="WARNING",
            LLM_PROVIDER="openai",
            OPENAI_MODEL=MODEL,
            OPENAI_BASE_URL=self.fake_url + "/v1",
            OPENAI_API_KEY=self.upstream_key,
            ANTHROPIC_BASE_URL=self.fake_url,
            ANTHROPIC_API_KEY=self.upstream_key,
            REQUEST_TIMEOUT=f"{REQUEST_TIMEOUT:g}",
            LLM_RETRY_BASE_DELAY="0.05",
            LLM_RETRY_MAX_DELAY="0.5",
            BATCH_RATE_LIMIT_MAX_WAIT="1",
            JOB_SWEEP_SECONDS="5",
            PORT=str(self.port),
            WEB_CONCURRENCY=str(self.args.workers),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self) -> None:
        cmd = [sys.executable, "-m", "bench.fake_upstream", "--host", "127.0.0.1", "--port", str(self.fake_port)]
        cmd += ["--latency-ms", "40", "--chunk-delay-ms", "15", "--api-key", self.upstream_key, "--ledger"]
        log = self.workdir / "fake_upstream.log"
        fake = self.procs.start("fake upstream", cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, log=log)
        _wait(lambda: http("GET", self.fake_url + "/_fake/stats", timeout=2)[0] == 200, fake, log, 20)
        self.env = self.build_env()
        log = self.workdir / "djllm.log"
        self.server = self.procs.start("djllm", ["make", "--no-print-directory", "serve"], env=self.env, log=log)

        def ready() -> bool:
            if len(gunicorn_workers(self.server.pid)) < self.args.workers:
                return False
            return all(http("GET", self.url + "/api/v1/health", timeout=2)[0] == 200 for _ in range(4))

        _wait(ready, self.server, log, 180)
        django_env = {**self.env, "DJANGO_SETTINGS_MODULE": "config.settings.production"}
        out = _run([sys.executable, "manage.py", "createtoken", "soak", "--create-user", "--name", "soak"], django_env)
        self.token = out.strip().splitlines()[-1]
        _run([sys.executable, "manage.py", "shell", "-c", SETUP_SCRIPT], django_env)
        status, _, body = http(
            "POST", self.fake_url + "/_fake/fail_next", {"kind": "500", "times": None, "model": BROKEN_MODEL}
        )
        if status != 200:
            raise StackError(f"the fake upstream refused the broken model's fault: {body!r}")
        celery = Path(sys.executable).with_name("celery")
        cmd = [str(celery), "-A", "config", "worker", "--pool", "threads", "--concurrency", "4", "--loglevel"]
        cmd += ["WARNING", "--without-mingle", "--without-gossip", "-n", f"{self.run_id}@%h"]
        self.procs.start("jobs worker", cmd, env=django_env, log=self.workdir / "worker.log")

    def configure_fake(self, **fields) -> None:
        status, _, body = http("POST", self.fake_url + "/_fake/config", fields)
        if status != 200:
            raise StackError(f"the fake upstream refused {fields}: {body!r}")

    def stop_djllm(self) -> None:
        for name, proc in list(self.procs._procs):
            if name in ("djllm", "jobs worker"):
                self.procs.stop(proc, timeout=REQUEST_TIMEOUT + 30)  # make serve drains for REQUEST_TIMEOUT + 15 s

    def fetch_ledger(self) -> list[dict]:
        status, _, body = http("GET", self.fake_url + "/_fake/ledger", timeout=60)
        if status != 200:
            raise StackError(f"the fake upstream's ledger answered {status}")
        return json.loads(body)["entries"]

    def workers(self) -> list[int]:
        return gunicorn_workers(self.server.pid) if self.server else []

    # -------------------------------------------------------------------------------------------- traffic
    def _rid(self) -> str:
        self.seq += 1
        return f"{self.run_id}-{self.seq}"

    def _chat(self, tag: str, *, stream: bool = False, temperature: float = 0.7, model: str = MODEL) -> dict:
        topic = random.choice(TOPICS)
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": f"Write one sentence about {topic}. [ledger:{tag}]"},
            ],
            "temperature": temperature,
            "max_tokens": 64,
        }
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def _headers(self, rid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Request-ID": rid}

    async def one(self, client: httpx.AsyncClient, kind: str) -> None:
        rid = self._rid()
        if kind in ("plain", "cached"):
            tag = f"{self.run_id}-c{random.randrange(CACHED_PROMPTS)}" if kind == "cached" else rid
            body = self._chat(tag, temperature=0 if kind == "cached" else 0.7)
            sent = reconcile.Sent(rid, kind, (tag,), group=tag if kind == "cached" else "")
            await self._post(client, "/v1/chat/completions", body, sent)
        elif kind == "fallback":
            sent = reconcile.Sent(rid, kind, (rid,))
            await self._post(client, "/v1/chat/completions", self._chat(rid, model=FALLBACK_ALIAS), sent)
        elif kind in ("stream", "anthropic_stream"):
            sent = reconcile.Sent(rid, kind, (rid,))
            model = CLAUDE if kind == "anthropic_stream" else MODEL
            await self._stream(client, self._chat(rid, stream=True, model=model), sent)
        elif kind == "anthropic":
            sent = reconcile.Sent(rid, kind, (rid,))
            await self._post(client, "/v1/chat/completions", self._chat(rid, model=CLAUDE), sent)
        elif kind == "batch":
            tags, body = self._batch(rid)
            sent = reconcile.Sent(rid, kind, tags, rows_expected=BATCH_ITEMS)
            data = await self._post(client, "/api/v1/batch", body, sent)
            self.items += BATCH_ITEMS
            if data and isinstance(data.get("results"), list):
                sent.item_error_codes = tuple((r.get("error") or {}).get("code") or "" for r in data["results"])
        elif kind == "job":
            tags = tuple(f"{rid}.{i}" for i in range(JOB_ITEMS))
            body = {
                "items": [{"id": i, "prompt": f"Classify ticket {i}. [ledger:{t}]"} for i, t in enumerate(tags)],
                "parameters": {"temperature": 0.7, "max_tokens": 64},
            }
            sent = reconcile.Sent(rid, kind, (), rows_expected=0)
            data = await self._post(client, "/api/v1/jobs", body, sent)
            if sent.status == 202 and data and data.get("id"):
                job_hex = data["id"].replace("-", "")
                self.jobs[data["id"]] = rid
                self.items += JOB_ITEMS
                for i, tag in enumerate(tags):
                    item = reconcile.Sent(f"job_{job_hex}.{i}", "job_item", (tag,), status=None)
                    self.sent.append(item)
        else:
            await self._hang_up(kind, rid)

    async def _post(self, client, path: str, body: dict, sent: reconcile.Sent) -> dict | None:
        self.sent.append(sent)
        self.http_requests += 1
        try:
            response = await client.post(path, json=body, headers=self._headers(sent.request_id))
        except httpx.HTTPError:
            return None  # no answer: reconcile counts it
        sent.status = response.status_code
        try:
            data = response.json()
        except ValueError:
            return None
        if response.status_code >= 400 and isinstance(data, dict):
            sent.error_code = str(((data.get("error") or {}).get("code")) or "")
        return data if isinstance(data, dict) else None

    async def _stream(self, client, body: dict, sent: reconcile.Sent) -> None:
        self.sent.append(sent)
        self.http_requests += 1
        try:
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=self._headers(sent.request_id)
            ) as r:
                sent.status = r.status_code
                if r.status_code >= 400:
                    data = json.loads(await r.aread() or b"null")
                    sent.error_code = str(((data or {}).get("error") or {}).get("code") or "")
                    return
                async for _ in r.aiter_bytes():
                    pass
        except (httpx.HTTPError, ValueError):
            if sent.status == 200:
                sent.error_code = "broken_stream"  # the server cut its own answer short

    def _batch(self, rid: str) -> tuple[tuple[str, ...], dict]:
        tags = tuple(f"{rid}.{i}" for i in range(BATCH_ITEMS))
        body = {
            "items": [{"id": i, "prompt": f"Summarise order {i}. [ledger:{t}]"} for i, t in enumerate(tags)],
            "parameters": {"temperature": 0.7, "max_tokens": 64},
        }
        return tags, body

    async def _hang_up(self, kind: str, rid: str) -> None:
        """A client that goes away: plain ones and batches after a few ms (before, during or just after the
        upstream calls), streamed ones once the first chunk arrived. Half close politely (FIN), half abort (RST)."""
        stream = kind == "hangup_stream"
        if kind == "hangup_batch":
            tags, body = self._batch(rid)
            sent = reconcile.Sent(rid, kind, tags, rows_expected=BATCH_ITEMS, hung_up=True)
            path, linger = "/api/v1/batch", random.uniform(0.02, 0.15)
            self.items += BATCH_ITEMS
        else:
            sent = reconcile.Sent(rid, kind, (rid,), hung_up=True)
            body, path, linger = self._chat(rid, stream=stream), "/v1/chat/completions", random.uniform(0.005, 0.09)
        self.sent.append(sent)
        self.http_requests += 1
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nX-Request-ID: {rid}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return
        try:
            writer.write(head + payload)
            await writer.drain()
            if stream:
                seen = b""
                async with asyncio.timeout(15):
                    while b"data:" not in seen:
                        chunk = await reader.read(4096)
                        if not chunk:
                            break
                        seen += chunk
            else:
                await asyncio.sleep(linger)
        except (OSError, TimeoutError):
            pass
        finally:
            if random.random() < 0.5:
                writer.transport.abort()
            else:
                writer.close()

    async def drive(self, seconds: float, concurrency: int, storm: tuple[float, float] | None = None) -> None:
        """`storm` (start, length) in seconds: every upstream call answers 429 for that long (a provider's rate
        limit for a moment), then the fault mix resumes."""
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:

            async def loop() -> None:
                while time.monotonic() < deadline:
                    await self.one(client, random.choices(kinds, weights)[0])

            async def rate_limit_storm(start: float, length: float) -> None:
                await asyncio.sleep(start)
                await asyncio.to_thread(self.configure_fake, fault_mix={"429": 1.0})
                await asyncio.sleep(length)
                await asyncio.to_thread(self.configure_fake, fault_mix=FAULT_MIX)

            async def sample_rss() -> None:
                while time.monotonic() < deadline:
                    await asyncio.sleep(RSS_SAMPLE_SECONDS)
                    count = self.http_requests + self.items
                    for pid in self.workers():
                        rss = rss_bytes(pid)
                        if rss:
                            self.rss_samples.setdefault(pid, []).append((count, rss))

            extra = [rate_limit_storm(*storm), sample_rss()] if storm else []
            await asyncio.gather(*(loop() for _ in range(concurrency)), *extra)

    async def wait_jobs(self, timeout: float = 180) -> list[str]:
        """Until every job finished; returns the ids still unfinished at the timeout."""
        deadline = time.monotonic() + timeout
        pending = set(self.jobs)
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    r = await client.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {self.token}"})
                    if r.status_code == 200 and r.json().get("status") in ("done", "failed", "cancelled"):
                        pending.discard(job_id)
                if pending:
                    await asyncio.sleep(0.5)
        return sorted(pending)

    def wait_quiet(self, quiet_s: float = 1.0, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            status, _, body = http("GET", self.fake_url + "/_fake/stats")
            stats = json.loads(body) if status == 200 else {}
            if stats.get("total") != last or stats.get("in_flight"):
                last, since = stats.get("total"), time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.1)

    # -------------------------------------------------------------------------------------------- the books
    def read_database(self) -> tuple[list[dict], list[dict], dict[str, list[str]], list[dict]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            rows = conn.execute("SELECT * FROM llm_usagerecord").fetchall()
            prices = conn.execute("SELECT * FROM llm_modelprice WHERE effective_from <= CURRENT_DATE").fetchall()
            items = conn.execute("SELECT job_id, position, status, error_code FROM jobs_jobitem").fetchall()
            counters = conn.execute("SELECT * FROM llm_spendcounter").fetchall()
        item_errors: dict[str, list[str]] = {}
        for item in items:
            rid = f"job_{item['job_id'].hex}.{item['position']}"
            item_errors[rid] = [item["error_code"]] if item["error_code"] else []
        return rows, prices, item_errors, counters

    def wait_rows_settled(self, quiet_s: float = 1.5, timeout: float = 30.0) -> int:
        import psycopg

        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                count = conn.execute("SELECT count(*) FROM llm_usagerecord").fetchone()[0]
                if count != last:
                    last, since = count, time.monotonic()
                elif time.monotonic() - since >= quiet_s:
                    break
                time.sleep(0.25)
        return last


def _wait(check, proc, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
            raise StackError(f"{log.stem} exited with {proc.returncode}:\n{tail}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise StackError(f"{log.stem} did not become ready in {timeout:g} s")


def _run(cmd: list[str], env: dict[str, str]) -> str:
    import subprocess

    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise StackError(f"{' '.join(cmd[1:3])} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def run(args: argparse.Namespace, soak: Soak) -> int:
    random.seed(args.seed)
    started = time.monotonic()
    print(f"Soak {soak.run_id}: {args.seconds:g} s, {args.concurrency} clients, seed {args.seed}, logs in "
          f"{soak.workdir}", flush=True)  # fmt: skip
    db = urlsplit(soak.database_url)
    print(f"  PostgreSQL database {db.path.lstrip('/')} on {db.hostname}:{db.port or 5432}, Redis {soak.redis_url}",
          flush=True)  # fmt: skip
    soak.start()
    print(f"  make serve on {soak.url}: workers {soak.workers()}; fake upstream {soak.fake_url}", flush=True)
    warmup = min(max(5.0, args.seconds * 0.1), 20.0, args.seconds / 2)
    print(f"[warm-up {warmup:g} s, no faults]", flush=True)
    asyncio.run(soak.drive(warmup, args.concurrency))
    soak.wait_quiet(quiet_s=0.5, timeout=30)
    pids = soak.workers()
    warm_rss = {pid: rss_bytes(pid) for pid in pids}
    for pid, rss in warm_rss.items():
        if rss:
            soak.rss_samples[pid] = [(soak.http_requests + soak.items, rss)]
    warm_count = soak.http_requests + soak.items
    mix = ", ".join(f"{k} {v:.0%}" for k, v in FAULT_MIX.items())
    print(f"[load {args.seconds - warmup:g} s with faults: {mix}; halfway, {STORM_SECONDS:g} s of 429 only]",
          flush=True)  # fmt: skip
    soak.configure_fake(fault_mix=FAULT_MIX, fault_hold_s=REQUEST_TIMEOUT + 1.5, fault_seed=args.seed)
    load = args.seconds - warmup
    asyncio.run(soak.drive(load, args.concurrency, storm=(load / 2, STORM_SECONDS)))
    soak.configure_fake(fault_mix={})
    print(f"[drain: {len(soak.jobs)} jobs to finish]", flush=True)
    unfinished = asyncio.run(soak.wait_jobs())
    soak.wait_quiet()
    end_pids = soak.workers()
    end_rss = {pid: rss_bytes(pid) for pid in end_pids}
    load_count = soak.http_requests + soak.items - warm_count
    soak.wait_rows_settled()
    soak.stop_djllm()  # SIGTERM: drain and flush, like a deploy
    ledger = soak.fetch_ledger()
    soak.procs.stop_all()
    rows, prices, item_errors, counters = soak.read_database()
    (soak.workdir / "soak-data.json").write_text(  # for a post-mortem: what was sent, and the upstream's ledger
        json.dumps({"sent": [dataclasses.asdict(s) for s in soak.sent], "ledger": ledger}, default=str)
    )
    for sent in soak.sent:
        if sent.kind == "job_item":
            sent.item_error_codes = tuple(item_errors.get(sent.request_id, ()))
    books = reconcile.reconcile(soak.sent, rows, ledger, reconcile.price_rows(prices), counters)
    if unfinished:
        books.failures.append(f"{len(unfinished)} jobs did not finish within the drain (e.g. {unfinished[0]})")
    restarted = sorted(set(pids) ^ set(end_pids))
    if restarted:
        books.failures.append(f"gunicorn workers changed during the load (a worker died): {pids} -> {end_pids}")
    samples = {pid: (warm_rss[pid], end_rss[pid]) for pid in pids if warm_rss.get(pid) and end_rss.get(pid)}
    print("\n=== soak: the books")
    print(books.text())
    print("=== memory (a figure, not a check)")
    for line in reconcile.rss_growth(samples, load_count, args.workers):
        print(line)
    for pid in sorted(samples):
        points = soak.rss_samples.get(pid, []) + [(warm_count + load_count, end_rss[pid])]
        trend = reconcile.rss_trend(points, args.workers)
        late = reconcile.rss_trend(points[len(points) // 2 :], args.workers)
        if trend:
            line = (f"worker {pid}: least-squares line over {len(points)} samples every {RSS_SAMPLE_SECONDS:g} s: "
                    f"{trend[0]:+.1f} MiB ({trend[1]:+.1%}) per 100k requests")  # fmt: skip
            if late:
                line += f"; over the second half alone {late[0]:+.1f} MiB ({late[1]:+.1%})"
            print(line)
    elapsed = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_id": soak.run_id,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "seed": args.seed,
        "fault_mix": FAULT_MIX,
        "figures": books.figures,
        "failures": books.failures,
        "rss": {str(pid): {"after_warmup": w, "end": e} for pid, (w, e) in samples.items()},
        "rss_samples": {str(pid): points for pid, points in soak.rss_samples.items()},
        "requests_after_warmup": load_count,
        "elapsed_s": elapsed,
    }
    (RESULTS / "soak.json").write_text(json.dumps(payload, indent=2, default=str))
    print(f"\n{'FAILED' if books.failures else 'OK'}: wrote bench/results/soak.json ({elapsed} s)")
    return 1 if books.failures else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    procs = Processes()
    try:
        database_url = soak_database_url(
            os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, os.environ.get("SOAK_DATABASE") or "djllm_soak"
        )
        redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        check_redis(redis_url)
        recreate_database(database_url)
    except StackError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="djllm-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        soak = Soak(args=args, workdir=workdir, procs=procs, database_url=database_url, redis_url=redis_url)
        try:
            return run(args, soak)
        except StackError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("soak: interrupted", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
