"""A worker killed mid-job loses nothing, with real processes: a uvicorn server and Celery workers (threads pool)
sharing one database and broker. Worker A is killed with SIGKILL while rows are with the upstream; worker B is
started, resumes the job (workers resume unfinished jobs when they start; A's rows come free when their lease
runs out) and the job completes with every row billed exactly once: one usage record per row's request id.

Two stacks, one per CI pass: the embedded default (SQLite file database, Celery's SQLAlchemy transport on a SQLite
file; runs when the test database is SQLite) and PostgreSQL + Redis (the test database and REDIS_URL; runs in the
PostgreSQL + Redis pass).
"""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.processes import ManagedProcess, free_port, shared_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
ROWS = 40


class Stack:
    """Processes sharing a database and a broker, and a way to count rows in that database."""

    def __init__(self, env: dict, log_dir: Path, count) -> None:
        self.env, self.log_dir, self.count = env, log_dir, count
        self.procs: list[ManagedProcess] = []

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def web(self) -> str:
        port = free_port()
        args = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
        self.procs.append(
            ManagedProcess("web", [*args, "--lifespan", "off", "--log-level", "warning"], self.env, self.log_dir)
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(self.procs[-1].log())
            time.sleep(0.1)

    def worker(self, name: str) -> ManagedProcess:
        args = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads", "--concurrency", "2"]
        args += ["-l", "INFO", "-n", f"{name}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle"]
        proc = ManagedProcess(f"worker-{name}", args, self.env, self.log_dir)
        self.procs.append(proc)
        proc.wait_for_log(" ready.")
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()}" for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


def _base_env(fake_upstream) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        OPENAI_API_KEY="sk-test-openai-key-000000000000",
        OPENAI_BASE_URL=fake_upstream.openai_base_url,
        LLM_PROVIDER="openai",
        OPENAI_MODEL="gpt-4o-mini",
        LLM_RETRY_BASE_DELAY="0.01",
        RATE_LIMIT="1000/m",
        JOB_CONCURRENCY="4",
        JOB_ITEM_LEASE_SECONDS="2",
        JOB_SWEEP_SECONDS="0.5",
        LOG_LEVEL="INFO",
        DB_THREAD_ENABLED="true",  # as in production (the test settings turn it off for the in-process tests)
    )
    return env


@pytest.fixture
def sqlite_stack(tmp_path, fake_upstream, db):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite stack runs in the embedded pass; the PostgreSQL pass runs the PostgreSQL stack")
    env = _base_env(fake_upstream)
    env.pop("REDIS_URL", None)
    database = tmp_path / "db.sqlite3"
    env.update(DATABASE_URL=f"sqlite:///{database}", CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}")

    def count(sql: str, *params):
        with sqlite3.connect(database, timeout=10) as db_:
            return db_.execute(sql.replace("%s", "?"), params).fetchone()[0]

    stack = Stack(env, tmp_path, count)
    stack.manage("migrate", "--noinput", "-v", "0")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def postgres_stack(transactional_db, tmp_path, fake_upstream):
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip("needs the PostgreSQL test database and REDIS_URL (the PostgreSQL + Redis pass)")
    env = _base_env(fake_upstream)
    env.update(DATABASE_URL=shared_database_url(), CELERY_BROKER_URL=os.environ["REDIS_URL"])

    def count(sql: str, *params):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    stack = Stack(env, tmp_path, count)
    try:
        yield stack
    finally:
        stack.stop()  # before transactional_db flushes the tables


def _kill_a_worker_mid_job(stack: Stack, fake_upstream) -> None:
    fake_upstream.configure(latency_ms=300)
    plaintext = stack.manage("createtoken", "killtest", "--create-user").strip().splitlines()[-1]
    url = stack.web()
    worker_a = stack.worker("a")
    headers = {"Authorization": f"Bearer {plaintext}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        created = http.post("/api/v1/jobs", json={"items": [{"prompt": f"row {i}"} for i in range(ROWS)]})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]

        def progress() -> dict:
            return http.get(f"/api/v1/jobs/{job_id}").json()

        deadline = time.monotonic() + 30
        while progress()["done"] < 8:
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.05)
        # Rows finish together and the next ones start together: kill while rows are at the upstream.
        fake_upstream.wait_until(lambda: fake_upstream.stats["in_flight"] >= 2, timeout=10)
        worker_a.kill()
        at_kill = progress()
        assert at_kill["status"] == "running" and 8 <= at_kill["done"] < ROWS, at_kill
        # Worker A died with rows at the upstream: their connections were cut, and those rows were never billed.
        fake_upstream.wait_until(lambda: any(r.disconnected for r in fake_upstream.requests), timeout=5)
        cut = sum(r.disconnected for r in fake_upstream.requests)

        stack.worker("b")
        deadline = time.monotonic() + 60
        while (final := progress())["status"] == "running" or final["status"] == "queued":
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.1)

    assert (final["status"], final["done"], final["failed"]) == ("done", ROWS, 0), (final, stack.logs())
    batch_id = f"job_{job_id.replace('-', '')}"
    assert stack.count("SELECT COUNT(*) FROM llm_usagerecord WHERE batch_id = %s", batch_id) == ROWS
    assert stack.count("SELECT COUNT(*) FROM llm_usagerecord WHERE batch_id = %s AND status = 'ok'", batch_id) == ROWS
    billed_once = stack.count(
        "SELECT COUNT(*) FROM (SELECT request_id FROM llm_usagerecord WHERE batch_id = %s "
        "GROUP BY request_id HAVING COUNT(*) = 1) AS once",
        batch_id,
    )
    assert billed_once == ROWS  # 40 distinct rows, one record each
    linked = "SELECT COUNT(*) FROM jobs_jobitem WHERE usage_record_id IS NOT NULL AND status = 'ok' AND job_id = %s"
    assert stack.count(linked, job_id.replace("-", "") if connection.vendor == "sqlite" else job_id) == ROWS
    # The upstream saw every row once, plus the rows the kill cut off (run again by worker B).
    assert len(fake_upstream.requests) >= ROWS + cut
    assert "Traceback" not in stack.logs()


def test_killed_worker_loses_nothing_sqlite(sqlite_stack, fake_upstream):
    _kill_a_worker_mid_job(sqlite_stack, fake_upstream)


@pytest.mark.redis
def test_killed_worker_loses_nothing_postgres_redis(postgres_stack, fake_upstream):
    _kill_a_worker_mid_job(postgres_stack, fake_upstream)
