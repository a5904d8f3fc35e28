"""Daily usage rollups: added to by every batch of records the gateway writes, equal at all times to what
`manage.py rebuild_usage_rollups` computes from the raw rows and to the totals worked out by hand, exact under
concurrent writers, kept by `prune_usage`, and checked by `rebuild_usage_rollups --check`."""

import importlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, timedelta
from decimal import Decimal
from io import StringIO

import httpx
import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.utils import timezone
from freezegun import freeze_time

from accounts import services as account_services
from bench.fake_upstream import Usage as FakeUsage
from llm import rollups
from llm.models import UsageDaily, UsageLatencyDaily, UsageRecord
from llm.providers.base import Usage
from llm.rollups import LATENCY_BUCKETS_MS, percentile_from_buckets
from llm.services import UsageDraft, usage_record_create, usage_records_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

M = Decimal(1_000_000)
MINI = (1000 * Decimal("0.15") + 200 * Decimal("0.60")) / M  # gpt-4o-mini, 1000 in / 200 out
HAIKU = (1000 * Decimal("1.00") + 200 * Decimal("5.00")) / M  # claude-haiku-4-5


def daily_rows() -> dict:
    return {
        row[:6]: row[6:]
        for row in UsageDaily.objects.values_list(*rollups.DAILY_KEY, *rollups.DAILY_SUMS).order_by(*rollups.DAILY_KEY)
    }


def latency_rows() -> dict:
    return {row[:4]: row[4] for row in UsageLatencyDaily.objects.values_list(*rollups.LATENCY_KEY, "count")}


def run(command: str, *args) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def assert_rollups_equal_a_rebuild() -> tuple[dict, dict]:
    """The rollups the writes left equal a --check of the raw rows and what a rebuild writes."""
    written, written_latency = daily_rows(), latency_rows()
    code, out, err = run("rebuild_usage_rollups", "--check")
    assert (code, err) == (0, ""), out + err
    assert "0 difference(s)" in out
    code, out, _ = run("rebuild_usage_rollups")
    assert code == 0 and out.startswith("Rebuilt ")
    assert daily_rows() == written
    assert latency_rows() == written_latency
    return written, written_latency


def wait_for_records(count: int) -> None:
    deadline = time.monotonic() + 10
    while UsageRecord.objects.count() < count:
        assert time.monotonic() < deadline, f"{UsageRecord.objects.count()} of {count} records written"
        time.sleep(0.05)


def post(url: str, token: str, body: dict) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=15) as client:
        if not body.get("stream"):
            return client.post(url, json=body, headers=headers).status_code
        with client.stream("POST", url, json=body, headers=headers) as response:
            for _ in response.iter_lines():
                pass
            return response.status_code


def chat(model: str, content: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def test_mixed_traffic_through_the_gateway_leaves_exact_rollups(live_djllm, token, prices, fake_upstream):
    alice, alice_secret = token
    excel, excel_secret = account_services.api_token_create(user=alice.user, name="excel")
    bob = UserFactory(username="bob")
    bob_token, bob_secret = account_services.api_token_create(user=bob, name="bob's")
    fake_upstream.configure(usage=FakeUsage(1000, 200), chunks=3, chunk_delay_ms=5)
    url = f"{live_djllm.url}/v1/chat/completions"

    # 1. One cached answer: the same temperature-0 question twice from one token.
    assert post(url, alice_secret, chat("gpt-4o-mini", "cache me", temperature=0)) == 200
    assert post(url, alice_secret, chat("gpt-4o-mini", "cache me", temperature=0)) == 200
    # 2. Upstream errors (a 400 is not retried) and a request djllm refuses itself.
    fake_upstream.fail_next("400", times=2)
    assert post(url, bob_secret, chat("gpt-4o-mini", "fails")) == 400
    assert post(url, bob_secret, chat("gpt-4o-mini", "fails too")) == 400
    # 3. Many at once, so the recorder commits them in batches: plain and streamed, priced and not, two providers.
    calls = (
        [(alice_secret, chat("gpt-4o-mini", f"plain {n}")) for n in range(8)]
        + [(excel_secret, chat("gpt-4o-mini", f"stream {n}", stream=True)) for n in range(6)]
        + [(bob_secret, chat("claude-haiku-4-5", f"claude {n}")) for n in range(5)]
        + [(bob_secret, chat("claude-haiku-4-5", f"claude stream {n}", stream=True)) for n in range(3)]
        + [(excel_secret, chat("gpt-4.1-nano", f"unpriced {n}")) for n in range(4)]
    )
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda call: post(url, *call), calls))
    assert statuses == [200] * len(calls)
    wait_for_records(2 + 2 + len(calls))

    written, latency = assert_rollups_equal_a_rebuild()
    today = timezone.now().date()
    a, e, b = alice.pk, excel.pk, bob_token.pk
    ua, ub = alice.user_id, bob.pk
    assert {key: (sums[0], sums[1]) for key, sums in written.items()} == {  # requests, unpriced
        (today, ua, a, "openai", "gpt-4o-mini", "ok"): (9, 0),
        (today, ua, a, "openai", "gpt-4o-mini", "cached"): (1, 0),
        (today, ub, b, "openai", "gpt-4o-mini", "upstream_error"): (2, 0),
        (today, ua, e, "openai", "gpt-4o-mini", "ok"): (6, 0),
        (today, ub, b, "anthropic", "claude-haiku-4-5", "ok"): (8, 0),
        (today, ua, e, "openai", "gpt-4.1-nano", "ok"): (4, 4),
    }
    tokens = {key: sums[2:7] for key, sums in written.items() if key[5] == "ok"}
    assert tokens[today, ub, b, "anthropic", "claude-haiku-4-5", "ok"] == (8000, 1600, 0, 0, 0)
    assert tokens[today, ua, e, "openai", "gpt-4o-mini", "ok"] == (6000, 1200, 0, 0, 0)
    cost = {key: sums[7] for key, sums in written.items()}
    assert cost[today, ua, a, "openai", "gpt-4o-mini", "ok"] == 9 * MINI
    assert cost[today, ub, b, "anthropic", "claude-haiku-4-5", "ok"] == 8 * HAIKU
    assert cost[today, ua, a, "openai", "gpt-4o-mini", "cached"] == 0
    assert written[today, ua, a, "openai", "gpt-4o-mini", "cached"][8] == MINI  # saved_usd: what the hit saved
    assert sum(sums[9] for sums in written.values()) == sum(UsageRecord.objects.values_list("latency_ms", flat=True))

    # Latency: every "ok" request once per provider; time to first token for the streamed ones only.
    def total(provider, metric):
        return sum(n for (day, p, m, _), n in latency.items() if (day, p, m) == (today, provider, metric))

    assert (total("openai", "latency"), total("anthropic", "latency")) == (19, 8)
    assert (total("openai", "ttft"), total("anthropic", "ttft")) == (6, 3)
    ttfts = UsageRecord.objects.filter(stream=True, status="ok").values_list("time_to_first_token_ms", flat=True)
    assert len(ttfts) == 9 and None not in ttfts


def draft(n: int, *, user_id=None, token_id=None, **fields) -> UsageDraft:
    values = {
        "request_id": f"req-{n}",
        "endpoint": "chat",
        "user_id": user_id,
        "token_id": token_id,
        "provider": "openai",
        "requested_model": "gpt-4o-mini",
        "upstream_model": "gpt-4o-mini",
        "usage": Usage(input_tokens=10, output_tokens=3),
        "cost_usd": Decimal("0.000000123457"),
        "latency_ms": 100 + n,
        **fields,
    }
    return UsageDraft(**values)


def test_concurrent_writers_on_the_same_key_stay_exact(token):
    row, _ = token
    threads, per_thread, batch = 6, 10, 5
    start = threading.Barrier(threads)
    errors = []

    def writer(t: int) -> None:
        try:
            start.wait()
            for i in range(0, per_thread, batch):
                drafts = [draft(t * 1000 + i + j, user_id=row.user_id, token_id=row.pk) for j in range(batch)]
                usage_records_create(drafts=drafts)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    [(key, sums)] = daily_rows().items()
    n = threads * per_thread
    assert key == (timezone.now().date(), row.user_id, row.pk, "openai", "gpt-4o-mini", "ok")
    assert sums[:3] == (n, 0, 10 * n)
    assert sums[7] == Decimal("0.000000123457") * n  # summed exactly, not in floats
    assert sum(latency_rows().values()) == n
    assert_rollups_equal_a_rebuild()


def test_bucket_bounds_are_the_same_in_python_and_in_sql():
    values = [0, 25, 26, 50, 51, 120000, 120001, 10**6]
    usage_records_create(
        drafts=[draft(n, latency_ms=v, stream=True, time_to_first_token_ms=v) for n, v in enumerate(values)]
        + [draft(100, stream=True, time_to_first_token_ms=None), draft(101, status="cached", latency_ms=7)]
    )
    day = timezone.now().date()
    expected = {0: 2, 1: 2, 2: 1, 18: 1, 19: 2}
    assert {b: n for (_, _, m, b), n in latency_rows().items() if m == "latency"} == {**expected, 3: 1}  # 101 ms
    assert {b: n for (_, _, m, b), n in latency_rows().items() if m == "ttft"} == expected
    assert {(d, p) for d, p, _, _ in latency_rows()} == {(day, "openai")}
    assert_rollups_equal_a_rebuild()


def test_percentile_from_buckets_is_exact_to_the_bucket():
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    counts[0], counts[3], counts[19] = 50, 45, 5  # 50 at <= 25 ms, 45 at 101..200 ms, 5 above 120 s
    assert percentile_from_buckets(counts, 0.5) == 25
    assert percentile_from_buckets(counts, 0.51) == 200
    assert percentile_from_buckets(counts, 95) == 200
    assert percentile_from_buckets(counts, 0.96) == float("inf")
    assert percentile_from_buckets({3: 2, 0: 2}, 0.75) == 200  # a {bucket: count} mapping, in any order
    assert percentile_from_buckets([], 0.5) is None
    with pytest.raises(ValueError):
        percentile_from_buckets(counts, -1)


def test_prune_keeps_the_rollups_and_a_plain_rebuild_keeps_the_pruned_days(user):
    for days_ago in (500, 450, 401, 10, 0):
        with freeze_time(timezone.now() - timedelta(days=days_ago, hours=1)):
            usage_record_create(draft=draft(days_ago, user_id=user.pk))
            usage_record_create(draft=draft(days_ago + 1000, user_id=user.pk, status="cached", cost_usd=None))
    before, latency_before = daily_rows(), latency_rows()
    assert len({key[0] for key in before}) == 5

    assert run("prune_usage", "--older-than", "400d")[1].startswith("Deleted 6 usage record(s)")
    assert UsageRecord.objects.count() == 4
    assert (daily_rows(), latency_rows()) == (before, latency_before)  # the pruned days' rollups are unchanged
    code, out, _ = run("rebuild_usage_rollups")
    oldest = (timezone.now() - timedelta(days=10, hours=1)).date()
    assert code == 0 and out.startswith(f"Rebuilt {oldest} to the latest day (UTC) from 4 usage record(s)")
    assert (daily_rows(), latency_rows()) == (before, latency_before)
    assert run("rebuild_usage_rollups", "--check")[0] == 0

    # Only an explicit range reaches the pruned days: their rollups then go, as there is nothing to rebuild from.
    first = min(key[0] for key in before)
    code, out, _ = run("rebuild_usage_rollups", "--since", str(first), "--until", str(first + timedelta(days=60)))
    assert code == 0 and "from 0 usage record(s): replaced 4 daily row(s) with 0" in out
    assert {key[0] for key in daily_rows()} == {key[0] for key in before} - {first, first + timedelta(days=50)}


def test_check_reports_a_tampered_or_missing_row_and_a_rebuild_repairs_it(user):
    usage_records_create(drafts=[draft(n, user_id=user.pk, status=s) for n, s in enumerate(["ok", "ok", "cached"])])
    day = timezone.now().date()
    UsageDaily.objects.filter(status="ok").update(requests=5)
    UsageLatencyDaily.objects.all().delete()

    code, out, err = run("rebuild_usage_rollups", "--check")
    assert code == 1
    assert f"daily day={day} user_key={user.pk} token_key=0 provider=openai model=gpt-4o-mini status=ok: " in out
    assert "requests 5 != 2 (rollup != raw)" in out
    for bucket in (2, 3):  # 100 and 101 ms
        assert f"latency day={day} provider=openai metric=latency bucket={bucket}: missing" in out
    assert "; 3 difference(s)." in err
    assert UsageDaily.objects.get(status="ok").requests == 5  # --check wrote nothing

    code, out, _ = run("rebuild_usage_rollups", "--since", str(day))
    assert code == 0 and f"Rebuilt {day} to the latest day (UTC) from 3 usage record(s)" in out
    assert UsageDaily.objects.get(status="ok").requests == 2
    assert run("rebuild_usage_rollups", "--check")[0] == 0


def test_a_row_with_no_raw_records_after_the_oldest_day_is_removed(user):
    usage_record_create(draft=draft(1, user_id=user.pk))
    tomorrow = timezone.now().date() + timedelta(days=1)
    UsageDaily.objects.create(day=tomorrow, provider="openai", model="ghost", status="ok", requests=3)
    code, out, _ = run("rebuild_usage_rollups", "--check")
    assert code == 1 and "model=ghost status=ok: no raw records, rollup has {'requests': 3," in out
    run("rebuild_usage_rollups")
    assert not UsageDaily.objects.filter(model="ghost").exists()


def test_rebuild_arguments(db):
    assert run("rebuild_usage_rollups") == (0, "No usage records: nothing to rebuild.\n", "")
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        run("rebuild_usage_rollups", "--since", "yesterday")
    with pytest.raises(CommandError, match="before --since"):
        run("rebuild_usage_rollups", "--since", "2026-02-02", "--until", "2026-02-01")


def test_the_data_migration_fills_the_rollups_of_existing_records(user):
    usage_records_create(drafts=[draft(n, user_id=user.pk, upstream_model="") for n in range(3)])
    written, latency = daily_rows(), latency_rows()
    assert [key[4] for key in written] == ["gpt-4o-mini"]  # the requested model when no upstream answered
    UsageDaily.objects.all().delete()
    UsageLatencyDaily.objects.all().delete()
    migration = importlib.import_module("llm.migrations.0017_usage_daily_cost_counts")

    class SchemaEditor:
        connection = connection

    migration.fill(django_apps, SchemaEditor())
    assert (daily_rows(), latency_rows()) == (written, latency)


def test_a_past_day_is_rebuilt_alongside_today(user):
    with freeze_time("2026-01-05 23:59:59"):
        usage_record_create(draft=draft(1, user_id=user.pk))
    usage_record_create(draft=draft(2, user_id=user.pk))
    written, latency = assert_rollups_equal_a_rebuild()
    assert {key[0] for key in written} == {date(2026, 1, 5), timezone.now().date()}


def test_the_usage_summary_from_the_rollups_equals_the_one_from_the_raw_records(user, make_token):
    """`/api/v1/usage` reads the rollups for UTC days: the same groups, figures and order as the raw records give,
    deleted tokens, requests without a cost (unpriced models), errors and ties included."""
    from llm.selectors import _raw_groups, usage_rollup_groups

    main, _ = make_token(user=user, name="main")
    twin, _ = make_token(user=user, name="twin")  # the same figures as `main`: the order falls to the id
    extra, _ = make_token(user=user, name="extra")
    gone, _ = make_token(user=user, name="gone")
    other = UserFactory(username="carol")
    n = iter(range(10_000))

    def add(day, token, **fields):
        with freeze_time(f"2026-03-{day:02d} 12:00:00"):
            usage_record_create(draft=draft(next(n), user_id=user.pk, token_id=token.pk if token else None, **fields))

    for token in (main, twin):
        add(1, token, cost_usd=Decimal("0.5"))
        add(2, token, upstream_model="", requested_model="nope", status="client_error", cost_usd=Decimal("0"))
    add(2, gone, provider="anthropic", upstream_model="claude-haiku-4-5", cost_usd=Decimal("0.25"))
    add(4, None, provider="anthropic", upstream_model="claude-haiku-4-5", cost_usd=Decimal("0.25"))
    add(3, extra, upstream_model="mystery", cost_usd=None, priced=False)  # no price: no cost, tokens used
    add(3, extra, upstream_model="mystery", cost_usd=None, priced=False, usage=Usage())  # no price, no tokens
    add(3, extra, upstream_model="free", cost_usd=Decimal("0"), status="cached", saved_usd=Decimal("0.5"))
    add(4, extra, upstream_model="fallback", cost_usd=Decimal("0.01"), priced=False)  # UNPRICED_* price
    add(4, extra, status="upstream_error", cost_usd=None, usage=Usage())
    with freeze_time("2026-03-02 12:00:00"):
        usage_record_create(draft=draft(next(n), user_id=other.pk, cost_usd=Decimal("7")))  # never counted
    gone.delete()  # its records' token becomes NULL, and its rollup rows' token_key 0

    for since, until in ((1, 31), (2, 3), (3, 3), (4, 4), (5, 9)):
        for group_by in ("day", "model", "token"):
            span = {"date_from": date(2026, 3, since), "date_to": date(2026, 3, until), "group_by": group_by}
            assert usage_rollup_groups(user=user, **span) == _raw_groups(user, tz=UTC, **span), (span, group_by)

    groups = usage_rollup_groups(user=user, date_from=date(2026, 3, 1), date_to=date(2026, 3, 31), group_by="token")
    figures = {
        g.token_name: (g.requests, g.cost_usd, g.errors, g.cached, g.unpriced, g.unpriced_requests) for g in groups
    }
    assert figures == {
        "main": (2, Decimal("0.5"), 1, 0, 0, 0),
        "twin": (2, Decimal("0.5"), 1, 0, 0, 0),
        None: (2, Decimal("0.5"), 0, 0, 0, 0),  # no token and the deleted one, together
        "extra": (5, Decimal("0.01"), 1, 1, 1, 3),
    }
    nulls_last = connection.features.nulls_order_largest  # as the database orders a NULL token id
    names = ["main", "twin", None] if nulls_last else [None, "main", "twin"]
    assert [g.token_name for g in groups] == [*names, "extra"]
    models = usage_rollup_groups(user=user, date_from=date(2026, 3, 3), date_to=date(2026, 3, 3), group_by="model")
    assert [(g.key, g.cost_usd) for g in models] == [("free", 0), ("mystery", 0)]  # a NULL cost sum goes last


def test_deleting_a_token_or_a_user_moves_their_rollups_to_no_token_or_user(user, make_token):
    bob = UserFactory(username="bob")
    kept, _ = make_token(user=user, name="kept")
    first, _ = make_token(user=bob, name="first")
    second, _ = make_token(user=bob, name="second")
    usage_records_create(
        drafts=[
            draft(1, user_id=bob.pk, token_id=first.pk, cost_usd=Decimal("0.1")),
            draft(2, user_id=bob.pk, token_id=second.pk, cost_usd=Decimal("0.2")),
            draft(3, user_id=bob.pk, cost_usd=Decimal("0.4")),  # no token: (bob, 0) exists already
            draft(4, user_id=None, cost_usd=Decimal("0.8")),  # neither: (0, 0) exists already
            draft(5, user_id=user.pk, token_id=kept.pk, cost_usd=Decimal("1.6")),
        ]
    )
    day = timezone.now().date()

    def costs():
        return {(u, t): sums[7] for (_, u, t, *_), sums in daily_rows().items()}

    first.delete()
    assert costs() == {
        (bob.pk, 0): Decimal("0.5"),
        (bob.pk, second.pk): Decimal("0.2"),
        (0, 0): Decimal("0.8"),
        (user.pk, kept.pk): Decimal("1.6"),
    }
    assert_rollups_equal_a_rebuild()
    bob.delete()  # and, with him, his second token
    assert costs() == {(0, 0): Decimal("1.5"), (user.pk, kept.pk): Decimal("1.6")}
    assert daily_rows()[day, 0, 0, "openai", "gpt-4o-mini", "ok"][0] == 4  # requests, summed into one row
    assert_rollups_equal_a_rebuild()
