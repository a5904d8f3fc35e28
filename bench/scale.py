"""The scale bench (issue 12): the usage pages at 1M and 10M usage records on PostgreSQL, `python -m bench.scale`
(the last step of `make bench`; `BENCH_SCALE=0` skips it).

For each size in `BENCH_SCALE_ROWS` (default "1000000 10000000") it uses one database named after
`BENCH_DATABASE_URL`'s with the size appended (default postgres://postgres@127.0.0.1:5432/djllm_bench ->
djllm_bench_1m, djllm_bench_10m). A missing one is created (the larger as a copy of the smaller, CREATE DATABASE
... TEMPLATE, so 10M adds 9M rows to the 1M ones) and migrated; rows are seeded with `INSERT ... SELECT
generate_series` (bench/seed_usage.py) up to the size, so a database that already holds them is reused as it is.
Then the daily rollups are rebuilt from the raw rows (`manage.py rebuild_usage_rollups`, when the command exists)
and the tables vacuumed and analysed (VACUUM ANALYZE, as autovacuum would).

It then starts djllm the way `make serve` does (bench/stack.py: gunicorn, 2 uvicorn workers, production settings)
on that database, logs in to the admin as a staff user over HTTP, and times each page below: one warm-up, then
`BENCH_SCALE_RUNS` (default 10) requests one after another, median and p95 of the wall time of the whole answer.
The table goes to stdout and bench/results/scale.json. Goal (issue 12): at most 300 ms at 10M rows.

Without a reachable PostgreSQL it prints that the scale bench is missing and why (and exits 0: the other figures
of `make bench` stand).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/djllm_bench"
DEFAULT_ROWS = "1000000 10000000"
GOAL_MS = 300
HEAVY_MODEL = "gpt-4o-mini"
STAFF = "bench-staff"
API_TOKEN_NAME = "bench-api"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ databases


def size_label(rows: int) -> str:
    for unit, suffix in ((1_000_000, "m"), (1_000, "k")):
        if rows >= unit and rows % unit == 0:
            return f"{rows // unit}{suffix}"
    return str(rows)


def url_for_size(base_url: str, rows: int) -> str:
    parts = urllib.parse.urlsplit(base_url)
    name = parts.path.lstrip("/") or "djllm_bench"
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}_{size_label(rows)}"))


def _conninfo(url: str, dbname: str | None = None) -> str:
    parts = urllib.parse.urlsplit(url)
    params = {
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "user": urllib.parse.unquote(parts.username or "postgres"),
        "dbname": dbname or parts.path.lstrip("/"),
        "connect_timeout": "5",
    }
    if parts.password:
        params["password"] = urllib.parse.unquote(parts.password)
    return " ".join(f"{key}='{value}'" for key, value in params.items())


def _server(url: str) -> str:
    """host:port and user, never the password."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.username or 'postgres'}@{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"


def _dbname(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


def admin_connection(url: str):
    """A connection to the server's `postgres` database (autocommit), to create databases. Raises when PostgreSQL
    cannot be reached."""
    import psycopg

    return psycopg.connect(_conninfo(url, "postgres"), autocommit=True)


def database_exists(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def ensure_database(url: str, template_url: str | None = None) -> str:
    """Create the database when missing, as a copy of `template_url`'s when that one exists. Returns what it did."""
    from psycopg import errors, sql

    name = _dbname(url)
    with admin_connection(url) as conn:
        if database_exists(conn, name):
            return "reused"
        template = _dbname(template_url) if template_url else None
        if template and database_exists(conn, template):
            for _ in range(30):  # a copy needs the template idle (autovacuum may be visiting it)
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)))  # fmt: skip
                    return f"copied from {template}"
                except errors.ObjectInUse:
                    time.sleep(2)
            log(f"  {template} stayed busy: {name} starts empty")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return "created"


# ------------------------------------------------------------------------------------------------ preparing (Django)


def ensure_accounts() -> dict:
    """The bench's users (4 tokens each), a staff user with a fresh password, and a fresh API token of the user with
    the most rows (user 0). Run inside Django."""
    import secrets

    from django.contrib.auth import get_user_model

    from accounts.models import APIToken
    from accounts.services import api_token_create
    from bench.seed_usage import TOKENS_PER_USER, USERS

    User = get_user_model()
    users, tokens = [], []
    for i in range(USERS):
        user, _ = User.objects.get_or_create(username=f"bench-user-{i:02d}")
        users.append(user.pk)
        have = list(APIToken.objects.filter(user=user, name__startswith="bench-").exclude(name=API_TOKEN_NAME)
                    .order_by("pk").values_list("pk", flat=True)[:TOKENS_PER_USER])  # fmt: skip
        while len(have) < TOKENS_PER_USER:
            token, _ = api_token_create(user=user, name=f"bench-{len(have)}")
            have.append(token.pk)
        tokens.extend(have)
    heavy = User.objects.get(pk=users[0])
    APIToken.objects.filter(user=heavy, name=API_TOKEN_NAME).delete()
    _, plaintext = api_token_create(user=heavy, name=API_TOKEN_NAME)
    staff, _ = User.objects.get_or_create(username=STAFF, defaults={"is_staff": True, "is_superuser": True})
    password = secrets.token_urlsafe(16)
    staff.is_staff = staff.is_superuser = staff.is_active = True
    staff.set_password(password)
    staff.save()
    return {
        "users": users,
        "tokens": tokens,
        "heavy_user_id": users[0],
        "api_token": plaintext,
        "staff_username": STAFF,
        "staff_password": password,
    }


def rollup_command() -> str | None:
    from django.core.management import get_commands

    return "rebuild_usage_rollups" if "rebuild_usage_rollups" in get_commands() else None


def prepare(rows: int) -> dict:
    """Seed up to `rows` usage rows, rebuild the rollups when rows were added (or never built), ANALYZE. Run inside
    Django, on the database to fill (the bench's, or the test database)."""
    from django.core.management import call_command
    from django.db import connection

    from bench.seed_usage import seed, seeded_rows
    from llm.models import UsageDaily

    info = ensure_accounts()
    connection.ensure_connection()
    raw = connection.connection  # psycopg 3
    raw.commit()
    with raw.cursor() as cursor:
        before = seeded_rows(cursor)
    started = time.monotonic()
    if before < rows:
        log(f"  seeding {rows - before:,} usage rows ({before:,} already there) ...")
    added = seed(raw, target=rows, users=info["users"], tokens=info["tokens"], log=log)
    info["seeded"] = added
    info["seed_s"] = round(time.monotonic() - started, 1)
    if added == 0:
        log(f"  reusing the {before:,} usage rows already seeded")
    command = rollup_command()
    info["rollups"] = "missing: no rebuild_usage_rollups command yet"
    if command is None:
        log("  no `manage.py rebuild_usage_rollups` yet: the rollups stay empty")
    elif added or not UsageDaily.objects.exists():
        started = time.monotonic()
        log("  rebuilding the daily rollups from the raw rows ...")
        call_command(command, verbosity=0)
        info["rollups"] = f"rebuilt in {time.monotonic() - started:.1f} s"
    else:
        info["rollups"] = "already filled (no rows added)"
    with connection.cursor() as cursor:
        started = time.monotonic()
        # VACUUM too: a table that autovacuum has visited (index-only scans need its visibility map).
        for table in ("llm_usagerecord", "llm_usagedaily", "llm_usagelatencydaily"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        info["analyze_s"] = round(time.monotonic() - started, 1)
        cursor.execute("SELECT count(*) FROM llm_usagerecord")
        info["rows"] = cursor.fetchone()[0]
    return info


def _prepare_main(rows: int) -> int:
    import django

    django.setup()
    from django.core.management import call_command

    log("  migrating ...")
    call_command("migrate", interactive=False, verbosity=0)
    info = prepare(rows)
    print(json.dumps(info))
    return 0


# ------------------------------------------------------------------------------------------------ timing over HTTP


@dataclass
class Client:
    """Blocking HTTP/1.1 to djllm without following redirects, keeping its own cookies (the session's cookie is
    `Secure` under production settings: a cookie jar would not send it over plain http)."""

    base_url: str
    cookies: dict[str, str] = field(default_factory=dict)
    timeout: float = 180

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        parts = urllib.parse.urlsplit(self.base_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            for header in resp.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            return resp.status, data
        finally:
            conn.close()

    def login(self, username: str, password: str) -> None:
        status, page = self.request("GET", "/admin/login/")
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or not match:
            raise RuntimeError(f"the admin login page answered {status}")
        form = urllib.parse.urlencode({
            "csrfmiddlewaretoken": match.group(1).decode(), "username": username, "password": password,
            "next": "/admin/",
        }).encode()  # fmt: skip
        status, _ = self.request(
            "POST", "/admin/login/", form,
            {"Content-Type": "application/x-www-form-urlencoded", "Referer": self.base_url + "/admin/login/"},
        )  # fmt: skip
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"the admin login answered {status} (no session)")


def pages(info: dict, now: datetime | None = None) -> list[tuple[str, str, str]]:
    """(label, kind, path): kind "admin" (staff session) or "api" (the heavy user's token)."""
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
    day_from, day_to = start.date().isoformat(), now.date().isoformat()
    changelist = "/admin/llm/usagerecord/"
    model_range = urllib.parse.urlencode({
        "upstream_model": HEAVY_MODEL, "created_at__gte": start.isoformat(), "created_at__lt": now.isoformat(),
    })  # fmt: skip
    return [
        ("admin dashboard", "admin", "/admin/dashboard/"),
        ("changelist, unfiltered", "admin", changelist),
        ("changelist, one user", "admin", f"{changelist}?user__id__exact={info['heavy_user_id']}"),
        ("changelist, model + 30 days", "admin", f"{changelist}?{model_range}"),
        ("changelist, page 50", "admin", f"{changelist}?p=50"),
        ("/api/v1/usage (this month)", "api", "/api/v1/usage"),
        ("/api/v1/usage 30 d by model", "api", f"/api/v1/usage?from={day_from}&to={day_to}&group_by=model"),
        ("/api/v1/usage/records", "api", "/api/v1/usage/records"),
    ]


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def time_pages(base_url: str, info: dict, runs: int = 10) -> list[dict]:
    admin = Client(base_url)
    admin.login(info["staff_username"], info["staff_password"])
    api = Client(base_url)
    bearer = {"Authorization": f"Bearer {info['api_token']}"}
    results = []
    for label, kind, path in pages(info):
        client, headers = (admin, {}) if kind == "admin" else (api, bearer)
        status, _ = client.request("GET", path, headers=headers)  # warm-up
        timings, statuses = [], set()
        if status == 200:
            for _ in range(runs):
                started = time.perf_counter()
                status, _ = client.request("GET", path, headers=headers)
                timings.append((time.perf_counter() - started) * 1000)
                statuses.add(status)
        else:
            statuses.add(status)
        status = max(statuses)
        results.append({
            "page": label, "path": path, "status": status,
            "outcome": "ok" if status == 200 else ("missing" if status == 404 else f"HTTP {status}"),
            "runs": len(timings),
            "median_ms": round(statistics.median(timings), 1) if timings and status == 200 else None,
            "p95_ms": round(_p95(timings), 1) if timings and status == 200 else None,
        })  # fmt: skip
        log(f"    {label}: {results[-1]['outcome']} {results[-1]['median_ms']} ms")
    return results


# ------------------------------------------------------------------------------------------------ report


def verdict(result: dict, rows: int, goal_rows: int) -> str:
    if result["outcome"] != "ok":
        return result["outcome"]
    if rows < goal_rows:
        return ""
    return "PASS" if result["p95_ms"] <= GOAL_MS else "MISS"


def table(sizes: list[dict], runs: int, goal_rows: int = 10_000_000) -> str:
    lines = [
        "",
        f"Scale bench — usage pages over PostgreSQL (real HTTP: gunicorn + 2 uvicorn workers, production settings); "
        f"median and p95 of {runs} requests after 1 warm-up; goal (issue 12): <= {GOAL_MS} ms at "
        f"{goal_rows:,} rows",
        "",
        f"{'page':34} {'rows':>12} {'status':>7} {'median ms':>10} {'p95 ms':>9}  verdict",
    ]
    for size in sizes:
        for result in size["pages"]:
            median = "-" if result["median_ms"] is None else f"{result['median_ms']:.1f}"
            p95 = "-" if result["p95_ms"] is None else f"{result['p95_ms']:.1f}"
            lines.append(
                f"{result['page']:34} {size['rows']:>12,} {result['status']:>7} {median:>10} {p95:>9}  "
                f"{verdict(result, size['rows'], goal_rows)}"
            )
        lines.append(
            f"  ({size['database']}: {size['rows']:,} usage rows, {size['database_action']}; seeded "
            f"{size['seeded']:,} in {size['seed_s']} s; rollups {size['rollups']})"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main


def run_size(rows: int, url: str, template_url: str | None, procs, workdir: Path, runs: int) -> dict:
    from bench.stack import Stack

    action = ensure_database(url, template_url)
    log(f"[scale {rows:,} rows] {_dbname(url)}: {action}")
    # Production settings send the session cookie only over https unless told otherwise; the bench speaks http.
    extra = {"SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false"}
    stack = Stack(workdir=workdir, procs=procs, database_url=url, extra_env=extra)
    env = stack.build_env()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--prepare", str(rows)],
        cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"preparing {_dbname(url)} failed (exit {proc.returncode})")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    stack.start_djllm()
    try:
        log(f"  timing the pages at {stack.url} ({runs} runs each) ...")
        results = time_pages(stack.url, info, runs=runs)
    finally:
        procs.stop(stack.server)
    return {
        "rows": info["rows"],
        "database": _dbname(url),
        "database_action": action,
        "seeded": info["seeded"],
        "seed_s": info["seed_s"],
        "rollups": info["rollups"],
        "analyze_s": info["analyze_s"],
        "pages": results,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--prepare"]:
        return _prepare_main(int(argv[1]))
    if os.environ.get("BENCH_SCALE", "1") == "0":
        print("scale bench: skipped (BENCH_SCALE=0)")
        return 0
    from bench import report
    from bench.stack import Processes, install_signal_handlers

    sizes = sorted({int(part.replace("_", "")) for part in os.environ.get("BENCH_SCALE_ROWS", DEFAULT_ROWS).split()})
    runs = int(os.environ.get("BENCH_SCALE_RUNS", "10"))
    base_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    try:
        admin_connection(base_url).close()
    except Exception as exc:  # any failure to connect: say so, loudly
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        message = (
            f"scale bench MISSING: PostgreSQL is unreachable at {_server(base_url)} ({reason}). "
            "Start PostgreSQL or set BENCH_DATABASE_URL (BENCH_SCALE=0 skips this step)."
        )
        print(message)
        print(message, file=sys.stderr)
        report.write_json({"scale": None, "missing": message}, report.RESULTS / "scale.json")
        return 0
    install_signal_handlers()
    procs = Processes()
    measured, previous = [], None
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="djllm-scale-") as tmp:
            for rows in sizes:
                url = url_for_size(base_url, rows)
                measured.append(run_size(rows, url, previous, procs, Path(tmp), runs))
                previous = url
    except KeyboardInterrupt:
        print("scale bench: interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
    print(table(measured, runs))
    path = report.write_json(
        {"scale": measured, "runs": runs, "goal_ms": GOAL_MS, "elapsed_s": round(time.monotonic() - started, 1)},
        report.RESULTS / "scale.json",
    )
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
