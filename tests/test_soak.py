"""The soak's own machinery: the fake upstream's ledger and fault mix, and the books (bench/reconcile.py), each with
hand-made mismatches that must fail."""

from decimal import Decimal

import httpx
import pytest

from bench.fake_upstream import FakeUpstream
from bench.reconcile import Price, Sent, billed_cost, price_rows, reconcile, rss_growth, rss_trend

PRICES = {("openai", "gpt-4o-mini"): Price(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"), Decimal("0.15"))}
USAGE = {"input_tokens": 100, "output_tokens": 20, "cached_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0}
COST = Decimal("0.000027")  # 100 * 0.15 / 1M + 20 * 0.60 / 1M


def entry(tag, *, usage=USAGE, fault=None, status=200):
    return {
        "n": 0,
        "tag": tag,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "stream": False,
        "fault": fault,
        "status": status,
        "completed": usage is not None,
        "disconnected": False,
        "usage": usage,
    }


def row(rid, *, cost=COST, status="ok", estimated=False, **extra):
    return {"request_id": rid, "status": status, "cost_usd": cost, "usage_estimated": estimated, **extra}


def test_matching_books_pass_and_report_every_section():
    sent = [
        Sent("r1", "plain", ("r1",), status=200),
        Sent("r2", "batch", ("r2.0", "r2.1"), rows_expected=2, status=200),
        Sent("r3", "cached", ("c0",), group="c0", status=200),
        Sent("r4", "cached", ("c0",), group="c0", status=200),
        Sent("r5", "plain", ("r5",), status=502, error_code="upstream_server_error"),
    ]
    rows = [
        row("r1"),
        row("r2"),
        row("r2"),
        row("r3"),
        row("r4", cost=Decimal(0), status="cached"),
        row("r5", cost=None, status="upstream_error"),
    ]
    ledger = [
        entry("r1", usage=None, fault="429", status=429),  # a retry: counted as an attempt, billed nothing
        entry("r1"),
        entry("r2.0"),
        entry("r2.1"),
        entry("c0"),
        *(entry("r5", usage=None, fault="500", status=500) for _ in range(3)),
    ]
    books = reconcile(sent, rows, ledger, PRICES)
    assert books.ok, books.text()
    text = books.text()
    assert "rows expected: 6 (batch items and job rows one each), rows recorded: 6" in text
    assert "upstream calls (attempts, from the fake upstream's log): 8" in text
    assert "1 call(s): 2, 2 call(s): 1, 3 call(s): 1" in text
    assert "calls per request: batch 2/1 = 2.00, plain 5/2 = 2.50" in text
    assert books.figures["cost"]["billed_usd"] == books.figures["cost"]["recorded_usd"] == str(COST * 4)
    assert "No mismatch." in text


def test_a_missing_row_fails():
    books = reconcile([Sent("r1", "plain", ("r1",), status=200)], [], [entry("r1")], PRICES)
    assert not books.ok
    assert any("requests without their rows (plain 1): 1" in f and "r1 (plain: 0 of 1)" in f for f in books.failures)
    assert any("billed $0.000027000, recorded $0.000000000" in f for f in books.failures)


def test_a_batch_item_with_two_rows_fails():
    sent = [Sent("b1", "batch", ("b1.0", "b1.1"), rows_expected=2, status=200)]
    rows = [row("b1"), row("b1", cost=None, status="upstream_error"), row("b1")]
    books = reconcile(sent, rows, [entry("b1.0"), entry("b1.1")], PRICES)
    assert any("more rows than expected (batch 1): 1" in f and "3 rows for 2" in f for f in books.failures)


def test_recorded_cost_that_differs_from_the_bill_fails():
    sent = [Sent("r1", "plain", ("r1",), status=200)]
    books = reconcile(sent, [row("r1", cost=COST - Decimal("0.000001"))], [entry("r1")], PRICES)
    assert len(books.failures) == 1
    assert "recorded cost differs from what the upstream billed in 1 request group(s)" in books.failures[0]
    # A bill the upstream never reported (an attempt cut off) must not appear on a row as real usage either.
    books = reconcile(sent, [row("r1")], [entry("r1", usage=None, fault="reset", status=None)], PRICES)
    assert not books.ok


def test_estimated_rows_are_summed_apart_not_compared():
    sent = [Sent("s1", "stream", ("s1",), status=200)]
    rows = [row("s1", cost=Decimal("0.00001"), estimated=True, status="upstream_error")]
    books = reconcile(sent, rows, [entry("s1", usage=None, fault="stream_cut")], PRICES)
    assert books.ok, books.text()
    assert books.figures["cost"]["estimated_rows"] == 1
    assert books.figures["cost"]["estimated_recorded_usd"] == "0.00001"
    assert books.figures["cost"]["groups_compared"] == 0


def test_hung_up_requests_need_a_row_once_the_upstream_saw_them():
    sent = [Sent("h1", "hangup_plain", ("h1",), hung_up=True), Sent("h2", "hangup_plain", ("h2",), hung_up=True)]
    # h1 never reached the upstream: no row is allowed. h2 did: the upstream billed it.
    books = reconcile(sent, [], [entry("h2")], PRICES)
    assert any("reached the upstream (billed) but left no row: 1" in f and "h2" in f for f in books.failures)
    books = reconcile(sent, [row("h2", status="cancelled")], [entry("h2")], PRICES)
    assert books.ok, books.text()


def test_unmapped_5xx_no_answer_internal_item_errors_and_stray_rows_fail():
    sent = [
        Sent("a", "plain", ("a",), status=500, error_code="internal_error"),
        Sent("b", "plain", ("b",), status=503, error_code="database_unavailable"),
        Sent("c", "plain", ("c",), status=504, error_code="upstream_timeout"),
        Sent("d", "plain", ("d",), status=None),
        Sent("e", "batch", ("e.0",), status=200, item_error_codes=("internal_error",)),
        Sent("f", "stream", ("f",), status=200, error_code="broken_stream"),
    ]
    rows = [row(rid, cost=None, status="upstream_error") for rid in "abcdef"] + [row("zz", cost=None)]
    books = reconcile(sent, rows, [], PRICES)
    failures = "\n".join(books.failures)
    assert "5xx answers that were not a mapped upstream error: 2" in failures
    assert "no answer (connection closed by the server): 1" in failures
    assert "failed with internal_error: 1" in failures
    assert "streams the server broke off without an error event or [DONE]: 1" in failures
    assert "rows under request ids the soak never sent: 1 (e.g. zz)" in failures
    assert books.figures["unmapped_5xx"] == 2


def test_attempts_column_is_checked_against_the_upstream_log_when_rows_have_it():
    sent = [Sent("r1", "plain", ("r1",), status=200)]
    ledger = [entry("r1", usage=None, fault="500", status=500), entry("r1")]
    assert reconcile(sent, [row("r1", attempts=2)], ledger, PRICES).ok
    books = reconcile(sent, [row("r1", attempts=1)], ledger, PRICES)
    assert any("rows say 1, the upstream saw 2" in f for f in books.failures)


def test_billed_cost_reads_each_providers_own_usage_fields():
    usage = {"input_tokens": 100, "output_tokens": 10, "cached_tokens": 40, "cache_write_tokens": 5}
    openai = entry("x", usage=usage)
    # OpenAI's input count includes its 40 cached tokens (and knows no cache writes).
    assert billed_cost(openai, PRICES) == (60 * Decimal("0.15") + 40 * Decimal("0.075") + 10 * Decimal("0.6")) / 10**6
    prices = {("anthropic", "claude-haiku-4-5"): Price(Decimal(1), Decimal(5), Decimal("0.1"), Decimal("1.25"))}
    claude = {**openai, "provider": "anthropic", "model": "claude-haiku-4-5-20251001"}  # a dated snapshot
    assert billed_cost(claude, prices) == (100 * 1 + 40 * Decimal("0.1") + 5 * Decimal("1.25") + 10 * 5) / Decimal(
        10**6
    )
    assert billed_cost({**openai, "model": "unpriced-model"}, PRICES) is None


def test_price_rows_take_the_newest_row_and_default_the_cache_prices():
    rows = [
        {"provider": "openai", "model": "m", "input_per_mtok": "1", "output_per_mtok": "2", "effective_from": 1},
        {
            "provider": "openai",
            "model": "m",
            "input_per_mtok": "3",
            "output_per_mtok": "4",
            "cached_input_per_mtok": None,
            "cache_write_per_mtok": None,
            "effective_from": 2,
        },
    ]
    assert price_rows(rows)[("openai", "m")] == Price(Decimal(3), Decimal(4), Decimal(3), Decimal(3))


def test_rss_growth_is_extrapolated_per_100k_requests():
    [line] = rss_growth({7: (100 * 2**20, 101 * 2**20)}, requests=20_000, workers=2)
    assert "100.0 MiB after warm-up, 101.0 MiB at the end (+1.0% over ~10000 requests" in line
    assert "extrapolated +10.0% per 100k requests" in line


# ------------------------------------------------------------------------------------------ the fake's ledger


@pytest.fixture(scope="module")
def ledger_fake():
    fake = FakeUpstream(record_limit=0, ledger=True, usage={"input_tokens": 10, "output_tokens": 3})
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(ledger_fake):
    ledger_fake.reset()
    yield ledger_fake
    ledger_fake.reset()


def _body(tag, **extra):
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi [ledger:{tag}]"}], **extra}


def test_ledger_bills_a_delivered_answer_and_not_a_cut_one(fake):
    with httpx.Client(base_url=fake.openai_base_url, timeout=5) as client:
        assert client.post("/chat/completions", json=_body("t1")).status_code == 200
        stream = _body("t2", stream=True, stream_options={"include_usage": True})
        assert b"[DONE]" in client.post("/chat/completions", json=stream).content
        fake.fail_next("stream_cut")
        with pytest.raises(httpx.HTTPError):
            client.post("/chat/completions", json=_body("t3", stream=True)).read()
        fake.fail_next("500")
        assert client.post("/chat/completions", json=_body("t4")).status_code == 500
    fake.wait_until(lambda: len(fake.ledger) == 4 and not fake.stats["in_flight"])
    by_tag = {e["tag"]: e for e in fake.ledger_json()}
    billed = {
        "input_tokens": 10,
        "output_tokens": 3,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }
    assert by_tag["t1"]["usage"] == billed and by_tag["t1"]["completed"]
    assert by_tag["t2"]["usage"] == billed and by_tag["t2"]["stream"]
    assert (by_tag["t3"]["fault"], by_tag["t3"]["usage"], by_tag["t3"]["completed"]) == ("stream_cut", None, False)
    assert (by_tag["t4"]["status"], by_tag["t4"]["usage"]) == (500, None)
    assert fake.requests == []  # record_limit=0: the ledger alone, no bodies kept


def test_ledger_bills_nothing_when_the_client_left_before_the_answer(fake):
    fake.configure(latency_ms=2000)
    with httpx.Client(base_url=fake.openai_base_url, timeout=0.2) as client:
        with pytest.raises(httpx.TimeoutException):
            client.post("/chat/completions", json=_body("gone"))
    fake.wait_until(lambda: fake.ledger and fake.ledger[0].disconnected)
    [only] = fake.ledger_json()
    assert (only["tag"], only["usage"], only["completed"], only["disconnected"]) == ("gone", None, False, True)


def test_fault_mix_draws_random_faults_and_rejects_unknown_kinds(fake):
    fake.configure(fault_mix={"503": 1.0})
    with httpx.Client(base_url=fake.openai_base_url, timeout=5) as client:
        assert [client.post("/chat/completions", json=_body(f"m{i}")).status_code for i in range(3)] == [503] * 3
        fake.configure(fault_mix={"503": 0.5, "429": 0.5}, fault_seed=7)
        first = [client.post("/chat/completions", json=_body("s")).status_code for _ in range(20)]
        fake.configure(fault_seed=7)
        again = [client.post("/chat/completions", json=_body("s")).status_code for _ in range(20)]
        assert first == again and {429, 503} == set(first)
        fake.configure(fault_mix={})
        assert client.post("/chat/completions", json=_body("ok")).status_code == 200
    with pytest.raises(ValueError, match="unknown fault 'meltdown'"):
        fake.configure(fault_mix={"meltdown": 0.1})
    with pytest.raises(ValueError, match="more than 1"):
        fake.configure(fault_mix={"500": 0.7, "429": 0.7})


def test_stream_stall_holds_a_stream_after_its_first_delta(fake):
    fake.configure(fault_mix={"stream_stall": 1.0}, fault_hold_s=5, chunks=4)
    with httpx.Client(base_url=fake.openai_base_url, timeout=httpx.Timeout(5, read=0.5)) as client:
        with client.stream("POST", "/chat/completions", json=_body("st", stream=True)) as response:
            got = b""
            with pytest.raises(httpx.ReadTimeout):
                for part in response.iter_bytes():
                    got += part
    assert got.count(b'"content":') == 2  # the role preamble and one delta, then silence
    fake.wait_until(lambda: fake.ledger and fake.ledger[0].disconnected)
    assert fake.ledger_json()[0]["usage"] is None


def test_budget_counters_must_match_the_rows_and_hold_no_reservation_at_the_end():
    sent = [Sent("r1", "plain", ("r1",), status=200), Sent("r2", "plain", ("r2",), status=200)]
    rows = [row("r1", token_id=1, user_id=9), row("r2", token_id=1, user_id=9)]
    ledger = [entry("r1"), entry("r2")]
    good = [
        {"scope": "token", "key": 1, "spent_usd": COST * 2, "reserved_usd": Decimal(0)},
        {"scope": "user", "key": 9, "spent_usd": COST * 2, "reserved_usd": Decimal(0)},
    ]
    books = reconcile(sent, rows, ledger, PRICES, good)
    assert books.ok, books.text()
    assert "budget counter token 1: spent $0.000054000 (its rows: $0.000054000), reserved $0.000000000" in books.text()
    leaked = [{**good[0], "reserved_usd": Decimal("0.0001")}, {**good[1], "spent_usd": COST}]
    [failure] = reconcile(sent, rows, ledger, PRICES, leaked).failures
    assert "token 1 keeps $0.000100000 reserved with no call in flight" in failure
    assert "user 9 spent $0.000027000, its rows cost $0.000054000" in failure


def test_rss_trend_fits_a_line_through_the_samples():
    mib = 2**20
    # Per worker (2 workers): 0, 10k, 20k, 30k requests; RSS climbs in steps, about 1 MiB per 10k.
    points = [(0, 100 * mib), (20_000, 101 * mib), (40_000, 103 * mib), (60_000, 103 * mib)]
    per_100k_mib, per_100k_fraction = rss_trend(points, workers=2)
    assert round(per_100k_mib, 3) == 11.0  # slope 1.1 MiB per 10k per worker
    assert round(per_100k_fraction, 3) == 0.11
    assert rss_trend(points[:2], workers=2) is None
    assert rss_trend([(5, 100 * mib)] * 3, workers=2) is None
