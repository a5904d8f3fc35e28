"""`make bench`'s side-by-side run with the peer gateways: the table and its ratios, a peer that cannot be installed
reported as missing, the pins, and wrk's routing headers and kept raw output. Nothing here installs a peer or leaves
127.0.0.1; figures are made up, and none is a measured time."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import compare, gateways
from bench.loadgen import RunResult, run_wrk

ROOT = Path(__file__).resolve().parent.parent


def _run(target, name, c, *, rps=100.0, p50=10.0, p99=20.0, span_s=None, requests=1000):
    return RunResult(
        name=name, target=target, concurrency=c, duration_s=10.0, requests=requests, rps=rps,
        p50_ms=p50, p90_ms=p50, p95_ms=p50, p99_ms=p99, mean_ms=p50, max_ms=p99, span_s=span_s,
    )  # fmt: skip


RUNS = [
    _run("direct", "plain", 1, p50=1.0),
    _run("djllm", "plain", 1, p50=5.0),
    _run("litellm", "plain", 1, p50=31.0),
    _run("portkey", "plain", 1, p50=4.0),
    _run("direct", "plain", 32, rps=6000),
    _run("djllm", "plain", 32, rps=600),
    _run("litellm", "plain", 32, rps=100),
    _run("portkey", "plain", 32, rps=500),
    _run("direct", "slow", 200, p99=1010, span_s=10.0, requests=2000),
    _run("djllm", "slow", 200, p99=1300, span_s=10.0, requests=1800),
    _run("litellm", "slow", 200, p99=3000, span_s=10.0, requests=600),
    _run("portkey", "slow", 200, p99=1100, span_s=10.0, requests=1900),
]


def _row(rows, key):
    return next(r for r in rows if r.key == key)


def _cells(text, label):
    """The cells after a row's label (44 characters wide): the targets', the ratios, the goal and the verdict."""
    line = next(line for line in text.splitlines() if line.startswith(label))
    return line[44:].split()


def test_the_rows_hold_each_targets_figure_and_judge_the_goals():
    rows = compare.rows(RUNS, ["litellm", "portkey"], cache_ratio=2.1, rss_growth=3.25)
    added = _row(rows, "added_p50_c1_plain")
    assert added.values == {"direct": None, "djllm": 4.0, "litellm": 30.0, "portkey": 3.0}
    assert (added.goal, added.verdict) == ("<= portkey, <= litellm/5", "MISS")  # 4 ms > Portkey's 3 ms
    rps = _row(rows, "rps_c32_plain")
    assert rps.values == {"direct": 6000, "djllm": 600, "litellm": 100, "portkey": 500}
    assert rps.verdict == "PASS"  # >= 500 and >= 4 x 100
    share = _row(rows, "slow_share")
    assert share.values == {"direct": 100.0, "djllm": 90.0, "litellm": 30.0, "portkey": 95.0}
    assert share.verdict == "MISS"
    assert _row(rows, "slow_p99").verdict == "MISS"  # 1300 ms > 1150 ms
    assert (_row(rows, "cache_hit_vs_miss").goal, _row(rows, "cache_hit_vs_miss").verdict) == (">= 3x", "MISS")
    assert _row(rows, "rss_growth").verdict == "PASS"
    assert _row(rows, "rps_c32_stream").verdict == "not run"


def test_the_table_prints_a_column_per_target_and_djllms_ratio_to_each_peer():
    rows = compare.rows(RUNS, ["litellm", "portkey"], cache_ratio=2.1, rss_growth=3.25)
    labels = {"litellm": "LiteLLM proxy 1.108.7 (no DB, 2 workers)", "portkey": "Portkey gateway 1.15.2"}
    text = compare.table(rows, ["litellm", "portkey"], labels=labels)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("work"))
    assert header.split()[:8] == ["work", "direct", "djllm", "litellm", "portkey", "÷", "litellm", "÷"]
    plain = _cells(text, "plain c=32 (req/s)")
    # direct, djllm, litellm, portkey, djllm ÷ litellm, djllm ÷ portkey, then the goal and the verdict
    assert plain[:6] == ["6000", "600", "100", "500", "6.00x", "1.20x"]
    assert plain[-1] == "PASS"
    added = _cells(text, "plain c=1, added p50 (ms)")
    assert added[:6] == ["-", "4.00", "30.00", "3.00", "0.13x", "1.33x"]
    cache = _cells(text, "cache hit vs miss")
    assert cache[:4] == ["-", "2.10x", "-", "-"] and cache[-1] == "MISS"
    assert "  litellm: LiteLLM proxy 1.108.7 (no DB, 2 workers)" in lines
    assert "  portkey: Portkey gateway 1.15.2" in lines


def test_a_missing_peer_is_named_with_its_reason_and_its_cells_say_missing():
    runs = [r for r in RUNS if r.target != "litellm"]
    rows = compare.rows(runs, ["litellm", "portkey"])
    reason = "`make bench-litellm` failed (exit 2): ERROR: No matching distribution found for litellm"
    text = compare.table(rows, ["litellm", "portkey"], missing={"litellm": reason})
    assert f"  litellm: missing: {reason}" in text.splitlines()
    assert _cells(text, "plain c=32 (req/s)")[:6] == ["6000", "600", "missing", "500", "-", "1.20x"]
    assert _cells(text, "djllm workers' RSS growth")[:6] == ["-", "-", "-", "-", "-", "-"]  # djllm's own figure
    # The goal is judged on the peers that ran.
    assert _row(rows, "rps_c32_plain").verdict == "PASS"


def test_a_peer_left_out_of_a_scenario_says_failed_and_why():
    rows = compare.rows(RUNS, ["portkey"])
    failures = {"portkey": {"stream": "stream preflight to portkey: HTTP 500: Something went wrong"}}
    text = compare.table(rows, ["portkey"], failures=failures)
    assert _cells(text, "stream c=32 (req/s)")[:4] == ["-", "-", "failed", "-"]
    assert "  portkey: left out of stream: stream preflight to portkey: HTTP 500: Something went wrong" in text


def test_an_install_that_fails_makes_the_peer_missing_with_makes_last_words(tmp_path):
    calls = []

    def failing_make(cmd, **kwargs):
        calls.append((cmd, kwargs["env"]))
        stderr = "ERROR: No matching distribution found for litellm-proxy==1.110.2\nmake: *** [Makefile:1] Error 1\n"
        return subprocess.CompletedProcess(cmd, 2, stdout="", stderr=stderr)

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    reason = gateways.install("bench-litellm", run=failing_make)
    assert reason == (
        "`make bench-litellm` failed (exit 2): ERROR: No matching distribution found for litellm-proxy==1.110.2 "
        "/ make: *** [Makefile:1] Error 1"
    )
    (cmd, env), = calls  # fmt: skip
    assert cmd[-1] == "bench-litellm" and "MAKELEVEL" not in env


def test_bring_up_reports_the_missing_peer_and_goes_on(monkeypatch, tmp_path):
    monkeypatch.setattr(gateways, "install", lambda target: "npm is missing" if target == "bench-portkey" else None)
    started = []
    monkeypatch.setitem(
        gateways.STARTERS,
        "litellm",
        lambda stack, workers: started.append(workers) or gateways.Target("litellm", "u", "k"),
    )
    printed = []
    peers = gateways.bring_up(["litellm", "portkey"], stack=None, workers=2, log=lambda *a, **k: printed.append(a[0]))
    assert [(p.name, p.missing) for p in peers] == [("litellm", None), ("portkey", "npm is missing")]
    assert started == [2]
    assert "  portkey: missing: npm is missing" in printed


def test_peer_names():
    assert gateways.parse_names("portkey, LiteLLM") == ["litellm", "portkey"]
    assert gateways.parse_names("none") == gateways.parse_names("") == []
    with pytest.raises(ValueError, match="unknown peer"):
        gateways.parse_names("kong")


def test_the_peers_are_pinned():
    requirement = (ROOT / "bench/peers/litellm-requirements.txt").read_text()
    assert "litellm[proxy]==1.108.7" in requirement.splitlines()
    assert gateways.litellm_version() == "1.108.7"
    lock = json.loads((ROOT / "bench/peers/package-lock.json").read_text())["packages"]
    assert lock["node_modules/@portkey-ai/gateway"]["version"] == gateways.portkey_version() == "1.15.2"
    assert lock["node_modules/@hono/node-server"]["version"] == "1.13.8"  # later ones break its streams
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "bench/.venv-litellm/" in ignored and "bench/results/" in ignored and "node_modules/" in ignored


def test_wrk_sends_the_routing_headers_and_keeps_its_raw_output(fake_upstream, tmp_path):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    body = tmp_path / "plain.json"
    body.write_text(json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
    raw = tmp_path / "raw" / "portkey-plain-c1.txt"
    result = run_wrk(
        name="plain", target="portkey", url=fake_upstream.url + "/v1/chat/completions", body_file=body,
        concurrency=1, duration_s=1, token="sk-up", raw_path=raw,
        headers={"x-portkey-provider": "openai", "x-portkey-custom-host": "http://127.0.0.1:1/v1"},
    )  # fmt: skip
    assert result.requests > 0 and result.errors == {}
    seen = fake_upstream.requests[0].headers
    assert seen["x-portkey-provider"] == "openai"
    assert seen["x-portkey-custom-host"] == "http://127.0.0.1:1/v1"
    assert seen["authorization"] == "Bearer sk-up"
    text = raw.read_text()
    assert text.startswith("$ ") and "-c1" in text.splitlines()[0]
    assert "Requests/sec:" in text and "BENCH_JSON " in text
    assert result.raw_path == str(raw)
