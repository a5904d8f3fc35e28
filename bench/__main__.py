"""`make bench`: djllm under load against a fake upstream, beside the direct-to-upstream baseline and the peer
gateways (the LiteLLM proxy, Portkey's gateway) in the same run.

    python -m bench [--only plain,stream,cache,rss,slow] [--peers litellm,portkey|none] [--duration S]
                    [--slow-duration S] [--concurrency 1,32,200] [--rss-requests N] [--profile] [--serve]
                    [--workdir DIR] [--env NAME=VALUE ...] [--app MODULE:APP] [--no-excel]
    make bench BENCH_ARGS="--only plain --duration 5" BENCH_PEERS=none

Starts the fake upstream (bench/fake_upstream.py, 0 ms) and djllm the way `make serve` runs it (gunicorn with its
config/gunicorn.py and WEB_CONCURRENCY=2 uvicorn workers, production settings, a fresh migrated SQLite file unless
DATABASE_URL is set, REDIS_URL passed through, rate limits off, no access log) on free 127.0.0.1 ports, then
installs (once) and starts each peer (bench/gateways.py; one that cannot be installed or started is reported as
missing), drives them all with wrk one after the other, prints a table with the issue's targets and the
side-by-side table with djllm's ratio to each peer (bench/compare.py), the load average before and after, and
writes bench/results/latest.json; wrk's raw output of every measured run is kept in bench/results/run-<time>/.
After a full run it adds bench/excel.py's figure (issue 5) when that module exists. Everything it starts is stopped
on exit, Ctrl-C and SIGTERM included. See bench/scenarios.py for what each run measures.

Profiling: `--profile` records every djllm worker with py-spy during each measured djllm run and prints where the
CPU went (bench/profile.py); `--serve` starts the stack and waits, printing the token and a wrk command line, for
profiling by hand (`py-spy record --pid <worker pid>`). `--env` and `--app` run djllm with extra settings or a
wrapped ASGI app, for experiments; both are shown in the JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import compare, gateways, report
from bench.loadgen import LUA_SCRIPT, LoadError, wrk_path
from bench.scenarios import Bench, Options
from bench.stack import Processes, Stack, StackError, install_signal_handlers

SCENARIOS = ("plain", "stream", "cache", "rss", "slow")


def _csv_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="plain|stream|cache|rss|slow",
        help="run only these scenarios (comma list or repeated); default: all",
    )
    parser.add_argument(
        "--peers",
        default="litellm,portkey",
        help="peer gateways to run beside djllm: litellm, portkey (comma list) or none (default: both)",
    )
    parser.add_argument(
        "--rss-requests", type=int, default=100_000, help="plain requests of the RSS scenario (default 100000)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    parser.add_argument("--slow-duration", type=float, default=15.0, help="seconds of the 1000 ms run (default 15)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each djllm run")
    parser.add_argument("--concurrency", type=_csv_ints, default=[1, 32, 200], help="default 1,32,200")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY, default 2)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="most wrk threads per run (default 2)")
    parser.add_argument("--profile", action="store_true", help="py-spy each djllm worker during each djllm run")
    parser.add_argument("--workdir", type=Path, help="keep logs and the SQLite file here (default: a temp dir)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for djllm, e.g. CONN_MAX_AGE=60 (experiments; shown in the report)",
    )
    parser.add_argument("--app", default="config.asgi:application", help="ASGI app for gunicorn (experiments)")
    parser.add_argument(
        "--serve", action="store_true", help="start the stack, print how to load it by hand, wait for Ctrl-C"
    )
    parser.add_argument("--no-excel", action="store_true", help="skip bench/excel.py's figure")
    args = parser.parse_args(argv)
    only = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    try:
        args.extra_env = dict(item.split("=", 1) for item in args.env)
    except ValueError:
        parser.error("--env takes NAME=VALUE")
    args.scenarios = [s for s in SCENARIOS if s in only] if only else list(SCENARIOS)
    if args.duration <= 0 or args.slow_duration <= 0:
        parser.error("durations must be positive")
    if args.rss_requests < 1:
        parser.error("--rss-requests must be positive (leave the scenario out with --only instead)")
    try:
        args.peer_names = gateways.parse_names(args.peers)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _config(stack: Stack) -> dict:
    database = "PostgreSQL" if stack.env["DATABASE_URL"].startswith("postgres") else "SQLite"
    if stack.env["DATABASE_URL"].startswith("sqlite") and not stack.database_url:
        database = "SQLite (fresh temp file)"
    return {
        "workers": stack.workers,
        "database": database,
        "cache": "Redis" if stack.env.get("REDIS_URL") else "local-memory",
        "rate_limit_enabled": False,
        "cpus": os.cpu_count(),
        "server": "gunicorn -c config/gunicorn.py, uvicorn workers (make serve, without the access log)",
        "settings": "config.settings.production",
        "app": stack.app,
        "extra_env": stack.extra_env,
    }


def _excel_figure(stack: Stack) -> dict | None:
    """bench/excel.py (issue 5's figure: 1,000 rows at 1000 ms through batch and jobs), when it exists."""
    if importlib.util.find_spec("bench.excel") is None:
        return None
    try:
        from bench import excel

        return excel.run(stack=stack)
    except Exception:  # its failure must not cost the figures above
        traceback.print_exc()
        return {"error": "bench/excel.py failed; see the traceback above"}


def serve(stack: Stack, workdir: Path) -> int:
    """Keep the stack up for profiling by hand (py-spy record --pid <worker pid>) until Ctrl-C."""
    bench = Bench(stack=stack, options=Options(concurrencies=[1], duration_s=1, slow_duration_s=1), bodydir=workdir)
    body = bench.body_file("plain")
    print(f"  token {stack.token}\n  body files in {workdir} (plain.json; --only writes the others)")
    print(
        f"  load it: BENCH_BODY_FILE={body} BENCH_TOKEN={stack.token} wrk -t2 -c32 -d10s -s {LUA_SCRIPT} "
        f"{stack.url}/v1/chat/completions\n  Ctrl-C stops everything.",
        flush=True,
    )
    while True:
        time.sleep(3600)


def run(args: argparse.Namespace, stack: Stack, workdir: Path) -> int:
    started = time.monotonic()
    load_before = os.getloadavg()
    print(f"Starting the fake upstream and djllm ({args.workers} workers) in {workdir} ...", flush=True)
    stack.start_fake(0)
    stack.start_djllm()
    boot_rss = sum(stack.worker_rss_bytes().values())
    print(f"  djllm {stack.url} (worker pids {stack.worker_pids()}), fake upstream {stack.fake_url}", flush=True)
    if args.serve:
        return serve(stack, workdir)
    peers = gateways.bring_up(args.peer_names, stack, args.workers) if args.peer_names else []
    profiler = None
    if args.profile:
        from bench.profile import Profiler

        profiler = Profiler(stack, report.RESULTS / "profiles")
    options = Options(
        concurrencies=args.concurrency,
        duration_s=args.duration,
        slow_duration_s=args.slow_duration,
        warmup_s=args.warmup,
        wrk_threads=args.wrk_threads,
        rss_requests=args.rss_requests,
        around_run=profiler.record if profiler else None,
    )
    raw_dir = report.RESULTS / time.strftime("run-%Y%m%d-%H%M%S")
    bench = Bench(stack=stack, options=options, bodydir=workdir, raw_dir=raw_dir)
    bench.peers = [p.target for p in peers if p.target is not None]
    print("[warm-up]", flush=True)
    bench.warm([s for s in args.scenarios if s in ("plain", "stream")] or ["plain"])
    slow = None
    for scenario in args.scenarios:
        print(f"[{scenario}]", flush=True)
        if scenario in ("plain", "stream"):
            bench.throughput(scenario)
        elif scenario == "cache":
            bench.cache()
        elif scenario == "rss":
            bench.memory()
            bench.rss["boot_mb"] = round(boot_rss / 2**20, 1)
        else:
            slow = report.slow_figures(bench.slow(), options.slow_concurrency, options.slow_latency_ms)
    excel = None
    if not args.no_excel and set(args.scenarios) == set(SCENARIOS):
        excel = _excel_figure(stack)

    load_after = os.getloadavg()
    config = _config(stack)
    targets = report.targets(bench.runs, slow)
    cache_run = next((r for r in bench.runs if r.name == "cache"), None)
    miss_run = report.find(bench.runs, "djllm", "plain", cache_run.concurrency) if cache_run else None
    cache_ratio = round(cache_run.rps / miss_run.rps, 2) if cache_run and miss_run and miss_run.rps else None
    print(report.table(bench.runs, config))
    print(report.target_table(targets, slow, cache_run.rps if cache_run else None))
    side_by_side = compare.rows(
        bench.runs,
        args.peer_names,
        cache_ratio=cache_ratio,
        rss_growth=bench.rss["growth_percent"] if bench.rss else None,
        slow_concurrency=options.slow_concurrency,
        concurrency=cache_run.concurrency if cache_run else 32,
    )
    missing = {p.name: p.missing for p in peers if p.missing}
    labels = {p.name: f"{p.label} ({p.detail})" for p in peers}
    print(compare.table(side_by_side, args.peer_names, labels=labels, missing=missing, failures=bench.peer_failures))
    if bench.rss:
        rss = bench.rss
        print(
            f"djllm workers' RSS: {rss['boot_mb']} MB at start, {rss['start_mb']} MB warm, {rss['end_mb']} MB after "
            f"{rss['requests']} more requests: {rss['growth_percent']:+.1f} % (goal <= 10 %)"
        )
    print(compare.load_line(load_before, load_after))
    busy = [r for r in bench.runs if (r.other_cpus or 0) >= 0.25]
    if busy:
        worst = max(busy, key=lambda r: r.other_cpus)
        bench.notes.append(
            f"other processes kept the CPUs busy during {len(busy)} of {len(bench.runs)} runs (up to "
            f"{worst.other_cpus:.2f} of {os.cpu_count()} CPUs, in {worst.target} {worst.name} c={worst.concurrency}): "
            "those figures are pessimistic; see the `others` column"
        )
    problems = stack.log_problems()
    if problems:
        bench.notes.append("djllm logged warnings/errors: " + "; ".join(problems))
    for note in bench.notes:
        print(f"note: {note}")
    if profiler:
        print(profiler.summary())
    payload = {
        "scenarios": args.scenarios,
        "config": config,
        "runs": [r.as_dict() for r in bench.runs],
        "upstream_calls": bench.upstream_calls,
        "upstream_connections_opened": bench.upstream_connections,
        "added_latency_p50_ms": {name: report.added_latency(bench.runs, name) for name in ("plain", "stream")},
        "slow": slow,
        "cache_hit_rps": cache_run.rps if cache_run else None,
        "cache_hit_vs_miss": cache_ratio,
        "rss": bench.rss,
        "peers": [
            {
                "name": p.name,
                "version": p.version,
                "detail": p.detail,
                "missing": p.missing,
                "left_out": bench.peer_failures.get(p.name, {}),
            }
            for p in peers
        ],  # fmt: skip
        "side_by_side": [r.as_dict() for r in side_by_side],
        "load_average": {"before": load_before, "after": load_after},
        "raw_wrk_output": str(raw_dir),
        "targets": [t.as_dict() for t in targets],
        "notes": bench.notes,
        "excel": excel,
        "profiles": profiler.results if profiler else None,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    path = report.write_json(payload)
    print(f"\nWrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path} "
          f"({payload['elapsed_s']} s); wrk's raw output of each measured run: {raw_dir}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        wrk_path()
    except LoadError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    install_signal_handlers()
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="djllm-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        stack = Stack(
            workdir=workdir,
            procs=procs,
            workers=args.workers,
            database_url=os.environ.get("DATABASE_URL"),
            app=args.app,
            extra_env=args.extra_env,
        )
        try:
            return run(args, stack, workdir)
        except (StackError, LoadError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
