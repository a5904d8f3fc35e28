"""The side-by-side table: direct, djllm and each peer gateway on the same work in one run, djllm's ratio to each
peer, and issue 13's goals with a verdict.

Ratios are djllm ÷ peer: below 1 is better for latencies, above 1 for throughput and the share of direct.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.loadgen import RunResult
from bench.report import find

LOWER, HIGHER = "lower", "higher"


@dataclass
class Row:
    key: str
    label: str
    unit: str
    better: str  # LOWER or HIGHER
    scenario: str  # which scenario's preflight a peer must have passed for its cell
    values: dict[str, float | None] = field(default_factory=dict)  # target -> value
    goal: str = ""
    verdict: str = ""
    djllm_only: bool = False  # a figure only djllm has (its cache, its workers' memory): no peer cells

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "values": self.values,
            "goal": self.goal,
            "verdict": self.verdict,
        }


def _p50(runs: list[RunResult], target: str, name: str, c: int) -> float | None:
    run = find(runs, target, name, c)
    return run.p50_ms if run else None


def _added(runs: list[RunResult], target: str, name: str, c: int = 1) -> float | None:
    mine, direct = _p50(runs, target, name, c), _p50(runs, "direct", name, c)
    return None if mine is None or direct is None else round(mine - direct, 2)


def _rps(runs: list[RunResult], target: str, name: str, c: int) -> float | None:
    run = find(runs, target, name, c)
    return run.rps if run else None


def _slow_rps(run: RunResult | None) -> float | None:
    if run is None:
        return None
    return run.span_rps or run.rps


def _share(runs: list[RunResult], target: str, c: int) -> float | None:
    mine, direct = _slow_rps(find(runs, target, "slow", c)), _slow_rps(find(runs, "direct", "slow", c))
    if mine is None or not direct:
        return None
    return round(100 * mine / direct, 1)


def _verdict(checks: list[bool | None]) -> str:
    known = [c for c in checks if c is not None]
    if not known:
        return "not run"
    return "PASS" if all(known) else "MISS"


def _peer_goal(row: Row, *, litellm_factor: float) -> None:
    """djllm level with Portkey, and `litellm_factor` times better than LiteLLM (issue 13's goals)."""
    djllm, portkey, litellm = row.values.get("djllm"), row.values.get("portkey"), row.values.get("litellm")
    if row.better == LOWER:
        row.goal = f"<= portkey, <= litellm/{litellm_factor:g}"
        checks = [
            None if djllm is None or portkey is None else djllm <= portkey,
            None if djllm is None or litellm is None else djllm <= litellm / litellm_factor,
        ]
    else:
        row.goal = f">= portkey, >= {litellm_factor:g}x litellm"
        checks = [
            None if djllm is None or portkey is None else djllm >= portkey,
            None if djllm is None or litellm is None else djllm >= litellm * litellm_factor,
        ]
    row.verdict = _verdict(checks) if djllm is not None else "not run"


def _bound_goal(row: Row, op: str, goal: float) -> None:
    value = row.values.get("djllm")
    row.goal = f"{op} {goal:g}x" if row.unit == "x" else f"{op} {goal:g} {row.unit}"
    if value is None:
        row.verdict = "not run"
    else:
        row.verdict = "PASS" if (value <= goal if op == "<=" else value >= goal) else "MISS"


def rows(
    runs: list[RunResult],
    peers: list[str],
    *,
    cache_ratio: float | None = None,
    rss_growth: float | None = None,
    slow_concurrency: int = 200,
    concurrency: int = 32,
) -> list[Row]:
    targets = ["djllm", *peers]
    out = []
    for name in ("plain", "stream"):
        row = Row(f"added_p50_c1_{name}", f"{name} c=1, added p50", "ms", LOWER, name)
        row.values = {"direct": None, **{t: _added(runs, t, name) for t in targets}}
        if name == "plain":
            _peer_goal(row, litellm_factor=5)
        out.append(row)
    for name in ("plain", "stream"):
        row = Row(f"rps_c{concurrency}_{name}", f"{name} c={concurrency}", "req/s", HIGHER, name)
        row.values = {t: _rps(runs, t, name, concurrency) for t in ["direct", *targets]}
        _peer_goal(row, litellm_factor=4)
        out.append(row)
    c = slow_concurrency
    share = Row("slow_share", f"1000 ms upstream c={c}, share of direct", "%", HIGHER, "slow")
    share.values = {"direct": 100.0 if find(runs, "direct", "slow", c) else None}
    share.values.update({t: _share(runs, t, c) for t in targets})
    _bound_goal(share, ">=", 95)
    p99 = Row("slow_p99", f"1000 ms upstream c={c}, p99", "ms", LOWER, "slow")
    p99.values = {t: (r.p99_ms if (r := find(runs, t, "slow", c)) else None) for t in ["direct", *targets]}
    _bound_goal(p99, "<=", 1150)
    out += [share, p99]
    cache = Row("cache_hit_vs_miss", f"cache hit vs miss req/s, c={concurrency}", "x", HIGHER, "cache", djllm_only=True)
    cache.values = {"djllm": cache_ratio}
    _bound_goal(cache, ">=", 3)
    rss = Row("rss_growth", "djllm workers' RSS growth", "%", LOWER, "rss", djllm_only=True)
    rss.values = {"djllm": rss_growth}
    _bound_goal(rss, "<=", 10)
    return out + [cache, rss]


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "req/s":
        return f"{value:.0f}"
    if unit == "%":
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(row: Row, target: str, missing: dict[str, str], failures: dict[str, dict[str, str]]) -> str:
    value = row.values.get(target)
    if value is not None:
        return _number(value, row.unit)
    if row.djllm_only and target != "djllm":
        return "-"
    if target in missing:
        return "missing"
    if row.scenario in failures.get(target, {}):
        return "failed"
    return "-"


def ratio(row: Row, peer: str) -> str:
    """djllm ÷ peer, for the rows where both have a figure (not the djllm-only rows)."""
    mine, theirs = row.values.get("djllm"), row.values.get(peer)
    if row.djllm_only or mine is None or theirs is None or theirs == 0:
        return "-"
    return f"{mine / theirs:.2f}x"


def table(
    items: list[Row],
    peers: list[str],
    *,
    labels: dict[str, str] | None = None,
    missing: dict[str, str] | None = None,
    failures: dict[str, dict[str, str]] | None = None,
) -> str:
    """The issue's table: a column per target, djllm ÷ each peer, the goal and its verdict; then a line per peer
    saying what it is, or why it is missing or was left out of a scenario."""
    missing, failures, labels = missing or {}, failures or {}, labels or {}
    columns = ["direct", "djllm", *peers]
    head = f"{'work':44}" + "".join(f"{c:>10}" for c in columns)
    head += "".join(f"{'÷ ' + p:>11}" for p in peers) + f"  {'goal':28} verdict"
    lines = [
        "",
        "Side by side: same fake upstream, same request body, one run (÷ peer: djllm's figure over the peer's;",
        "below 1 is better for ms, above 1 for req/s and %)",
        head,
    ]
    for row in items:
        label = f"{row.label} ({row.unit})"
        line = f"{label:44}" + "".join(f"{cell(row, c, missing, failures):>10}" for c in columns)
        line += "".join(f"{ratio(row, p):>11}" for p in peers)
        lines.append(f"{line}  {row.goal:28} {row.verdict}")
    for peer in peers:
        if peer in missing:
            lines.append(f"  {peer}: missing: {missing[peer]}")
            continue
        lines.append(f"  {peer}: {labels.get(peer, peer)}")
        for scenario, reason in failures.get(peer, {}).items():
            lines.append(f"  {peer}: left out of {scenario}: {reason}")
    return "\n".join(lines)


def load_line(before: tuple[float, float, float], after: tuple[float, float, float] | None) -> str:
    text = "load average (1, 5, 15 min) before: " + " ".join(f"{v:.2f}" for v in before)
    if after is not None:
        text += "; after: " + " ".join(f"{v:.2f}" for v in after)
    return text
