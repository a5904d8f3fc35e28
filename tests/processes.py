"""Real djllm server processes (uvicorn, `config.asgi:application`) for tests about what several workers share:
revocation, rate limits. They use pytest-django's *test* database, so the test must use `transactional_db` (rows
are committed and visible to them) and a database two processes can share (PostgreSQL)."""

import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def require_shared_database() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("several server processes need a shared database: run with a PostgreSQL DATABASE_URL")


def shared_database_url() -> str:
    db = connection.settings_dict  # after pytest-django's setup, NAME is the test database
    if connection.vendor == "sqlite":  # the test database is a file (config/settings/test.py) others can open
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedProcess:
    """A child process whose output goes to a log file, stopped politely (then killed) at the end."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(args, cwd=BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} never logged {text!r}:\n{self.log()}")
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


class Worker(ManagedProcess):
    """One `uvicorn config.asgi:application` process on a free 127.0.0.1 port."""

    def __init__(self, name: str, env: dict, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ]
        super().__init__(f"worker-{name}", command, env, log_dir)
        self.name = name

    def wait_until_serving(self, timeout: float = 30.0) -> "Worker":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} did not start in {timeout}s:\n{self.log()}")


class Gunicorn(Worker):
    """`make serve`'s server: gunicorn with `workers` uvicorn workers and config/gunicorn.py, on a free port."""

    def __init__(self, name: str, env: dict, log_dir: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "gunicorn", "config.asgi:application", "-c", "config/gunicorn.py"]
        command += ["--workers", str(workers), "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning"]
        ManagedProcess.__init__(self, f"gunicorn-{name}", command, env, log_dir)
        self.name = name


def start_workers(names, env: dict, log_dir: Path) -> list[Worker]:
    workers: list[Worker] = []
    try:
        for name in names:
            workers.append(Worker(name, env, log_dir))
        for worker in workers:
            worker.wait_until_serving()
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers
