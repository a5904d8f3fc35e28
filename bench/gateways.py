"""The gateways `make bench` measures beside djllm: same machine, same fake upstream, same request body, one run.

litellm   The LiteLLM proxy, pinned in bench/peers/litellm-requirements.txt and installed in its own venv
          (bench/.venv-litellm, `make bench-litellm`). bench/peers/litellm.yaml routes gpt-4o-mini to the fake
          upstream; no database, a master key, as many workers as djllm (`--num_workers`), uvicorn's access log
          off (djllm's is off in the bench too), the bundled model price map (no fetch at start).
portkey   Portkey's open-source gateway (`@portkey-ai/gateway`), pinned in bench/peers/package-lock.json and
          installed with `npm ci` (`make bench-portkey`); one Node process (the machine's node) started with
          `--port=N --headless`. Each request names its upstream with `x-portkey-provider: openai` and
          `x-portkey-custom-host: <fake upstream>/v1` and carries the upstream's key; no auth, no records.
          The lockfile holds @hono/node-server at 1.13.8: with the later releases npm picks by default, the
          gateway answers every streamed request with "Something went wrong" (TypeError: immutable, Portkey's
          issue #1389).

Each peer is installed by its make target (reused when present) and started on a free port. One that cannot be
installed or started is reported as missing, with the reason, and the rest of the run goes on.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.stack import ROOT, Stack, StackError, free_port, http, tree_cpu_seconds

PEERS_DIR = ROOT / "bench" / "peers"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
PORTKEY_SERVER = PEERS_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
NAMES = ("litellm", "portkey")
LABELS = {"litellm": "LiteLLM proxy", "portkey": "Portkey gateway"}


@dataclass
class Target:
    """Where wrk sends the benchmark's requests: a base URL, the bearer token and any routing headers."""

    name: str
    url: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)
    pid: int | None = None  # the process (and its children) whose CPU time is the target's

    def cpu_seconds(self) -> float | None:
        return tree_cpu_seconds(self.pid) if self.pid else None


@dataclass
class Peer:
    """A gateway to compare with: `target` once it runs, else `missing` says why not."""

    name: str
    make_target: str
    version: str | None = None
    detail: str = ""
    target: Target | None = None
    missing: str | None = None

    @property
    def label(self) -> str:
        return f"{LABELS.get(self.name, self.name)} {self.version or ''}".strip()


def parse_names(text: str) -> list[str]:
    """`litellm,portkey` -> the names, in the bench's order; `none` or empty -> []. Unknown names raise ValueError."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; choose from {', '.join(NAMES)} or none")
    return [n for n in NAMES if n in names]


def _last_lines(text: str, count: int = 2) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    return " / ".join(lines[-count:])[:400]


def install(make_target: str, *, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str | None:
    """Run `make <make_target>` (nothing to do when already installed): None when it worked, else the reason."""
    make = shutil.which("make")
    if make is None:
        return "make is not installed"
    # Started from `make bench`, this process inherits MAKELEVEL/MAKEFLAGS: this make starts afresh instead.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    try:
        proc = run(
            [make, "--no-print-directory", make_target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`make {make_target}` did not finish: {exc}"
    if proc.returncode != 0:
        return f"`make {make_target}` failed (exit {proc.returncode}): {_last_lines(proc.stderr or proc.stdout)}"
    return None


def litellm_version() -> str | None:
    text = (PEERS_DIR / "litellm-requirements.txt").read_text()
    found = re.search(r"^litellm\[proxy\]==(\S+)", text, re.M)
    return found.group(1) if found else None


def portkey_version() -> str | None:
    lock = json.loads((PEERS_DIR / "package-lock.json").read_text())
    return lock["packages"].get("node_modules/@portkey-ai/gateway", {}).get("version")


def _peer_env(extra: dict[str, str]) -> dict[str, str]:
    """A small environment of its own: a peer must not pick up djllm's settings (LiteLLM's proxy would take
    DATABASE_URL, REDIS_URL or a provider's API key from the bench's environment and change what it does)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **extra}


def start_litellm(stack: Stack, workers: int) -> Target:
    port, key = free_port(), "sk-bench-litellm-" + secrets.token_hex(8)
    env = _peer_env(
        {
            "BENCH_UPSTREAM_BASE": stack.fake_url + "/v1",
            "BENCH_UPSTREAM_KEY": stack.upstream_key,
            "BENCH_LITELLM_MASTER_KEY": key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map from the internet at start
            "LITELLM_LOG": "ERROR",
            "PYTHONUNBUFFERED": "1",
        }
    )
    cmd = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(PEERS_DIR / "litellm.yaml")]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", str(workers)]
    cmd += ["--log_config", str(PEERS_DIR / "litellm-logging.json")]
    log = stack.workdir / "litellm.log"
    proc = stack.procs.start("litellm", cmd, env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    stack.wait_ready(lambda: http("GET", url + "/health/liveliness", timeout=2)[0] == 200, proc, log, 300)
    return Target("litellm", url, key, pid=proc.pid)


def start_portkey(stack: Stack, workers: int) -> Target:
    node = shutil.which("node")
    if node is None:
        raise StackError("node is not installed")
    port = free_port()
    cmd = [node, str(PORTKEY_SERVER), f"--port={port}", "--headless"]
    log = stack.workdir / "portkey.log"
    proc = stack.procs.start("portkey", cmd, env=_peer_env({"NODE_ENV": "production"}), log=log)
    url = f"http://127.0.0.1:{port}"
    stack.wait_ready(lambda: http("GET", url + "/", timeout=2)[0] == 200, proc, log, 120)
    headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": stack.fake_url + "/v1"}
    return Target("portkey", url, stack.upstream_key, headers=headers, pid=proc.pid)


STARTERS: dict[str, Callable[[Stack, int], Target]] = {"litellm": start_litellm, "portkey": start_portkey}


def describe(name: str, workers: int) -> Peer:
    if name == "litellm":
        return Peer(name, "bench-litellm", litellm_version(), f"no DB, {workers} workers, master key")
    return Peer(name, "bench-portkey", portkey_version(), "Node, 1 process, no auth, no records")


def bring_up(names: list[str], stack: Stack, workers: int, *, log=print) -> list[Peer]:
    """Install and start each named peer; a failure makes that peer `missing` (with the reason), never the run."""
    peers = []
    for name in names:
        peer = describe(name, workers)
        log(f"  {peer.label}: make {peer.make_target} (minutes the first time) ...", flush=True)
        peer.missing = install(peer.make_target)
        if peer.missing is None:
            try:
                peer.target = STARTERS[name](stack, workers)
            except (StackError, OSError) as exc:
                peer.missing = f"did not start: {_last_lines(str(exc), 3)}"
        if peer.missing:
            log(f"  {name}: missing: {peer.missing}", file=sys.stderr, flush=True)
        else:
            log(f"  {peer.label} {peer.target.url} (pid {peer.target.pid})", flush=True)
        peers.append(peer)
    return peers
