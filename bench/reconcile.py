"""The soak's books: what the clients sent, what djllm recorded and what the fake upstream billed, side by side.

Pure functions over plain data (no Django, no I/O), so the checks themselves are unit-tested
(tests/test_soak.py) with hand-made mismatches.

- `Sent`: one HTTP request the soak made (or one job row), with the request id djllm must record it under, the
  `[ledger:TAG]` markers its prompts carried (one per prompt; a batch has one per item) and what it got back.
- rows: djllm's usage records (dicts with the `llm_usagerecord` columns).
- ledger: the fake upstream's entries (`FakeUpstream.ledger_json()`): one per upstream attempt, with the usage
  its response reported when the response was delivered in full.
- prices: `{(provider, model): Price}` from the same `llm_modelprice` rows djllm prices with.

Checks (each failure is a line in `Books.failures`; the soak exits non-zero when there is any):
1. rows by request id: every request exactly its expected number of rows (a batch: one per item). A request the
   client hung up on may have no row only if none of its prompts reached the upstream; once one did, it was
   billed and must be recorded. Rows under request ids nobody sent are failures too.
2. attempts: upstream calls per prompt from the ledger (retries and fallbacks must stay inside one row); when the
   rows have an `attempts` column, its sum per request group must equal the ledger's count.
3. cost: per group of requests (a request; the requests sharing a cached prompt), the cost djllm recorded on rows
   with provider-reported usage against the cost of the usage the upstream reported, priced with the same price
   rows. Groups with an estimated row (cut streams, aborted calls) are counted and summed apart, not compared.
4. 5xx answers whose error code is not a mapped upstream error (`upstream_*`), batch or job rows that failed with
   `internal_error`, and requests that got no answer at all although the client waited: all must be 0.
5. budget counters (when given): each one's spent equals the recorded cost of its rows, and nothing is left
   reserved once every call has ended.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

MILLION = Decimal(1_000_000)
TOLERANCE = Decimal("0.000000001")  # rows keep 12 decimals; list prices are exact well above that
EXAMPLES = 5


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal


@dataclass
class Sent:
    request_id: str
    kind: str  # plain, stream, cached, batch, job_item, hangup_plain, hangup_stream, ...
    tags: tuple[str, ...]
    rows_expected: int = 1
    group: str = ""  # requests sharing a group are reconciled together (a cached prompt); default: request_id
    hung_up: bool = False
    status: int | None = None  # HTTP status answered; None: no answer (a hang-up, or a broken connection)
    error_code: str = ""
    item_error_codes: tuple[str, ...] = ()  # a batch's or a job's rows that failed

    @property
    def group_key(self) -> str:
        return self.group or self.request_id


def price_rows(rows: Iterable[dict]) -> dict[tuple[str, str], Price]:
    """`llm_modelprice` rows already filtered to `effective_from <= today` -> the newest price per model."""
    newest: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["provider"], row["model"])
        if key not in newest or row["effective_from"] > newest[key]["effective_from"]:
            newest[key] = row
    prices = {}
    for key, row in newest.items():
        base = Decimal(row["input_per_mtok"])
        cached = row.get("cached_input_per_mtok")
        write = row.get("cache_write_per_mtok")
        prices[key] = Price(
            input=base,
            output=Decimal(row["output_per_mtok"]),
            cached_input=Decimal(cached) if cached is not None else base,
            cache_write=Decimal(write) if write is not None else base,
        )
    return prices


def price_for(prices: dict[tuple[str, str], Price], provider: str, model: str) -> Price | None:
    """Exact name, else the longest priced name the model starts with (dated snapshots), as djllm matches."""
    if (provider, model) in prices:
        return prices[(provider, model)]
    candidates = [m for (p, m) in prices if p == provider and model.startswith(m)]
    return prices[(provider, max(candidates, key=len))] if candidates else None


def billed_cost(entry: dict, prices: dict[tuple[str, str], Price]) -> Decimal | None:
    """What the upstream's reported usage costs, read in the provider's own fields: OpenAI's input count includes
    its cached tokens; Anthropic's excludes cache reads and writes."""
    usage = entry["usage"]
    price = price_for(prices, entry["provider"] or "", entry["model"] or "")
    if usage is None or price is None:
        return None
    cached, written = usage.get("cached_tokens", 0), usage.get("cache_write_tokens", 0)
    if entry["provider"] == "anthropic":
        uncached = usage["input_tokens"]
    else:
        uncached, written = usage["input_tokens"] - cached, 0
    total = (
        uncached * price.input
        + cached * price.cached_input
        + written * price.cache_write
        + usage["output_tokens"] * price.output
    )
    return total / MILLION


def _money(value: Decimal) -> str:
    return f"${value:.9f}"


@dataclass
class Books:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        out = list(self.lines)
        if self.failures:
            out.append(f"MISMATCHES ({len(self.failures)}):")
            out += [f"  - {line}" for line in self.failures]
        else:
            out.append("No mismatch.")
        return "\n".join(out)


def reconcile(
    sent: list[Sent],
    rows: list[dict],
    ledger: list[dict],
    prices: dict[tuple[str, str], Price],
    counters: list[dict] | None = None,
) -> Books:
    books = Books()
    rows_by_rid: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        rows_by_rid[row["request_id"]].append(row)
    entries_by_tag: dict[str, list[dict]] = defaultdict(list)
    for entry in ledger:
        entries_by_tag[entry["tag"]].append(entry)
    _check_rows(books, sent, rows_by_rid, entries_by_tag, ledger)
    _check_attempts(books, sent, rows_by_rid, entries_by_tag)
    _check_cost(books, sent, rows_by_rid, entries_by_tag, prices)
    _check_answers(books, sent)
    if counters is not None:
        _check_spend(books, rows, counters)
    return books


def _check_spend(books, rows, counters) -> None:
    """Budget counters (`llm_spendcounter`) once every call has ended: spent = the recorded cost of the key's rows,
    and nothing left reserved (each reservation settled with its record, whatever the call's end)."""
    if not counters:
        books.lines.append("budget counters: none (no budget applied)")
        return
    column = {"token": "token_id", "user": "user_id"}
    wrong = []
    for counter in counters:
        field_name = column.get(counter["scope"])
        if field_name is None:
            continue
        recorded = sum(
            (Decimal(row["cost_usd"] or 0) for row in rows if row.get(field_name) == counter["key"]), Decimal(0)
        )
        spent, reserved = Decimal(counter["spent_usd"]), Decimal(counter.get("reserved_usd") or 0)
        books.lines.append(
            f"budget counter {counter['scope']} {counter['key']}: spent {_money(spent)} (its rows: {_money(recorded)})"
            f", reserved {_money(reserved)} after the last call"
        )
        if abs(spent - recorded) > TOLERANCE:
            wrong.append(f"{counter['scope']} {counter['key']} spent {_money(spent)}, its rows cost {_money(recorded)}")
        if reserved != 0:
            wrong.append(
                f"{counter['scope']} {counter['key']} keeps {_money(reserved)} reserved with no call in flight"
            )
    if wrong:
        books.failures.append("budget counters disagree with the rows: " + "; ".join(wrong))


def _check_rows(books, sent, rows_by_rid, entries_by_tag, ledger) -> None:
    kinds = Counter(s.kind for s in sent)
    expected = sum(s.rows_expected for s in sent)
    books.lines.append(
        f"requests sent: {len(sent)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); "
        f"rows expected: {expected} (batch items and job rows one each), rows recorded: "
        f"{sum(len(v) for v in rows_by_rid.values())}"
    )
    known = {s.request_id for s in sent}
    duplicate_ids = [rid for rid, n in Counter(s.request_id for s in sent).items() if n > 1]
    if duplicate_ids:
        books.failures.append(f"the soak sent {len(duplicate_ids)} request ids twice (e.g. {duplicate_ids[0]})")
    missing, extra, unbilled_missing = [], [], []
    hung_up_without_row = 0
    for s in sent:
        got = len(rows_by_rid.get(s.request_id, ()))
        if not s.hung_up:
            if got < s.rows_expected:
                missing.append(f"{s.request_id} ({s.kind}: {got} of {s.rows_expected})")
            elif got > s.rows_expected:
                extra.append(f"{s.request_id} ({s.kind}: {got} rows for {s.rows_expected})")
            continue
        reached = sum(1 for tag in s.tags if entries_by_tag.get(tag))
        if got > s.rows_expected:
            extra.append(f"{s.request_id} ({s.kind}: {got} rows for {s.rows_expected})")
        elif got < reached:
            unbilled_missing.append(
                f"{s.request_id} ({s.kind}: {reached} prompt(s) reached the upstream, {got} row(s))"
            )
        elif got == 0:
            hung_up_without_row += 1
    strays = sorted(rid for rid in rows_by_rid if rid not in known)
    hung = sum(s.hung_up for s in sent)
    books.lines.append(
        f"  hung up by the client: {hung} ({hung_up_without_row} left before any prompt reached the upstream and "
        "have no row, which is allowed)"
    )
    untagged = sum(1 for e in ledger if not e["tag"])
    if untagged:
        books.failures.append(f"{untagged} upstream calls carried no ledger tag (a prompt lost its marker)")
    for label, items in (
        (f"requests without their rows{_by_kind(missing)}", missing),
        (f"requests with more rows than expected{_by_kind(extra)}", extra),
        ("hung-up requests whose prompt reached the upstream (billed) but left no row", unbilled_missing),
        ("rows under request ids the soak never sent", strays),
    ):
        if items:
            books.failures.append(f"{label}: {len(items)} (e.g. {'; '.join(items[:EXAMPLES])})")
    books.figures["rows"] = {
        "sent": len(sent),
        "expected": expected,
        "recorded": sum(len(v) for v in rows_by_rid.values()),
        "missing": len(missing),
        "extra": len(extra),
        "hung_up_billed_unrecorded": len(unbilled_missing),
        "stray": len(strays),
    }


def _by_kind(problems: list[str]) -> str:
    """ " (job_item 3, batch 2)" from "<request id> (<kind>: ...)" lines."""
    kinds = Counter(line.split(" (", 1)[1].split(":", 1)[0] for line in problems if " (" in line)
    return " (" + ", ".join(f"{k} {n}" for k, n in kinds.most_common()) + ")" if kinds else ""


def _groups(sent: list[Sent]) -> dict[str, list[Sent]]:
    groups: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        groups[s.group_key].append(s)
    return groups


def _group_tags(members: list[Sent]) -> set[str]:
    return {tag for s in members for tag in s.tags}


def _check_attempts(books, sent, rows_by_rid, entries_by_tag) -> None:
    per_prompt = Counter()
    shared = {tag for s in sent if s.group for tag in s.tags}  # cached prompts: many requests, some upstream calls
    for tag in {tag for s in sent for tag in s.tags} - shared:
        per_prompt[len(entries_by_tag.get(tag, ()))] += 1
    total = sum(len(v) for tag, v in entries_by_tag.items() if tag)
    spread = ", ".join(f"{n} call(s): {count}" for n, count in sorted(per_prompt.items()))
    books.lines.append(f"upstream calls (attempts, from the fake upstream's log): {total}; per prompt: {spread}")
    if shared:
        calls = sum(len(entries_by_tag.get(tag, ())) for tag in shared)
        asks = sum(1 for s in sent if s.group)
        books.lines.append(f"  cached prompts: {len(shared)} prompts asked {asks} times, {calls} upstream calls")
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in sent:
        if s.tags and not s.group:
            by_kind[s.kind][0] += 1
            by_kind[s.kind][1] += sum(len(entries_by_tag.get(tag, ())) for tag in s.tags)
    books.lines.append(
        "  calls per request: "
        + ", ".join(f"{kind} {calls}/{n} = {calls / n:.2f}" for kind, (n, calls) in sorted(by_kind.items()) if n)
    )
    faults = Counter(e["fault"] or "none" for entries in entries_by_tag.values() for e in entries)
    models = Counter(e["model"] for entries in entries_by_tag.values() for e in entries)
    books.lines.append("  faults injected: " + ", ".join(f"{k} {n}" for k, n in sorted(faults.items())))
    if len(models) > 1:
        books.lines.append("  calls per upstream model: " + ", ".join(f"{m} {n}" for m, n in sorted(models.items())))
    books.figures["attempts"] = {"upstream_calls": total, "per_prompt": dict(per_prompt), "faults": dict(faults)}
    has_column = any("attempts" in row for rows in rows_by_rid.values() for row in rows)
    if not has_column:
        books.lines.append("  (usage rows have no attempts field: the counts above come from the upstream's log)")
        return
    wrong = []
    for key, members in _groups(sent).items():
        recorded = sum(row.get("attempts") or 0 for s in members for row in rows_by_rid.get(s.request_id, ()))
        called = sum(len(entries_by_tag.get(tag, ())) for tag in _group_tags(members))
        if recorded != called:
            wrong.append(f"{key} (rows say {recorded}, the upstream saw {called})")
    if wrong:
        books.failures.append(
            f"attempts recorded differ from the upstream's count: {len(wrong)} (e.g. {'; '.join(wrong[:EXAMPLES])})"
        )


def _check_cost(books, sent, rows_by_rid, entries_by_tag, prices) -> None:
    billed_total = recorded_total = Decimal(0)
    est_rows = 0
    est_recorded = est_billed = Decimal(0)
    compared = 0
    wrong, unpriced = [], 0
    for key, members in _groups(sent).items():
        rows = [row for s in members for row in rows_by_rid.get(s.request_id, ())]
        entries = [e for tag in _group_tags(members) for e in entries_by_tag.get(tag, ())]
        billed = Decimal(0)
        for entry in entries:
            cost = billed_cost(entry, prices)
            if cost is None and entry["usage"] is not None:
                unpriced += 1
            billed += cost or 0
        estimated = [row for row in rows if row["usage_estimated"]]
        if estimated:
            est_rows += len(estimated)
            est_recorded += sum((Decimal(row["cost_usd"] or 0) for row in estimated), Decimal(0))
            est_billed += billed
            continue
        recorded = sum((Decimal(row["cost_usd"] or 0) for row in rows), Decimal(0))
        compared += 1
        billed_total += billed
        recorded_total += recorded
        if abs(billed - recorded) > TOLERANCE:
            statuses = ",".join(sorted(Counter(row["status"] for row in rows).elements())) or "no row"
            faults = ",".join(e["fault"] or "ok" for e in entries) or "no upstream call"
            wrong.append(
                f"{key} [{members[0].kind}] billed {_money(billed)}, recorded {_money(recorded)} "
                f"(rows: {statuses}; upstream: {faults})"
            )
    books.lines.append(
        f"cost over rows with provider-reported usage ({compared} request groups): recorded {_money(recorded_total)}"
        f", upstream billed {_money(billed_total)}, difference {_money(recorded_total - billed_total)}"
    )
    books.lines.append(
        f"  estimated rows (cut streams, aborted calls), apart: {est_rows} rows, recorded {_money(est_recorded)}; "
        f"the upstream reported usage worth {_money(est_billed)} on those requests"
    )
    books.figures["cost"] = {
        "groups_compared": compared,
        "recorded_usd": str(recorded_total),
        "billed_usd": str(billed_total),
        "estimated_rows": est_rows,
        "estimated_recorded_usd": str(est_recorded),
        "estimated_billed_usd": str(est_billed),
        "groups_mismatched": len(wrong),
    }
    if wrong:
        books.failures.append(
            f"recorded cost differs from what the upstream billed in {len(wrong)} request group(s), by "
            f"{_money(recorded_total - billed_total)} in all (e.g. {'; '.join(wrong[:EXAMPLES])})"
        )
    if unpriced:
        books.failures.append(f"{unpriced} upstream responses for models without a price row (cannot be checked)")


def _check_answers(books, sent) -> None:
    statuses = Counter(s.status if s.status is not None else "none" for s in sent if s.kind != "job_item")
    books.lines.append("answers: " + ", ".join(f"{k} {n}" for k, n in sorted(statuses.items(), key=str)))
    unmapped = [
        f"{s.request_id} ({s.kind}: {s.status} {s.error_code or 'no code'})"
        for s in sent
        if s.status is not None and s.status >= 500 and not s.error_code.startswith("upstream_")
    ]
    internal = [
        f"{s.request_id} ({s.kind}: {code})" for s in sent for code in s.item_error_codes if code == "internal_error"
    ]
    unanswered = [
        f"{s.request_id} ({s.kind})" for s in sent if s.status is None and not s.hung_up and s.kind != "job_item"
    ]
    broken = [f"{s.request_id}" for s in sent if s.error_code == "broken_stream" and not s.hung_up]
    books.lines.append(
        f"5xx answers not a mapped upstream error: {len(unmapped)}; batch/job rows failed with internal_error: "
        f"{len(internal)}; requests left without an answer: {len(unanswered)}; streams the server broke off: "
        f"{len(broken)}"
    )
    books.figures["unmapped_5xx"] = len(unmapped)
    books.figures["internal_item_errors"] = len(internal)
    books.figures["unanswered"] = len(unanswered)
    for label, items in (
        ("5xx answers that were not a mapped upstream error", unmapped),
        ("batch/job rows that failed with internal_error", internal),
        ("requests that got no answer (connection closed by the server)", unanswered),
        ("streams the server broke off without an error event or [DONE]", broken),
    ):
        if items:
            books.failures.append(f"{label}: {len(items)} (e.g. {'; '.join(items[:EXAMPLES])})")


def rss_growth(samples: dict[int, tuple[int, int]], requests: int, workers: int) -> list[str]:
    """Per worker pid: (RSS after warm-up, RSS at the end) in bytes, and the requests between the two samples
    (all workers; each is taken to have served 1/workers of them) -> lines with the growth per 100k requests."""
    lines = []
    per_worker = requests / max(workers, 1)
    for pid, (warm, end) in sorted(samples.items()):
        growth = (end - warm) / warm if warm else 0.0
        per_100k = growth * 100_000 / per_worker if per_worker else 0.0
        lines.append(
            f"worker {pid}: RSS {warm / 2**20:.1f} MiB after warm-up, {end / 2**20:.1f} MiB at the end "
            f"({growth:+.1%} over ~{per_worker:.0f} requests; extrapolated {per_100k:+.1%} per 100k requests, "
            "goal at most +10%)"
        )
    return lines


def rss_trend(points: list[tuple[int, int]], workers: int) -> tuple[float, float] | None:
    """A worker's RSS sampled through the load, [(requests sent so far by all clients, RSS bytes)], -> (MiB and
    fraction of the first sample) per 100k requests of this worker, from a least-squares line: steadier than two
    points when the RSS moves in steps. None with fewer than 3 samples or no requests between them."""
    if len(points) < 3:
        return None
    xs = [x / max(workers, 1) for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread or not ys[0]:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread  # bytes per request
    return slope * 100_000 / 2**20, slope * 100_000 / ys[0]
