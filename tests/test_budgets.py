"""Prices and budgets that hold: unpriced models, the UNPRICED_* fallback price, reservations taken before the
upstream call and settled with the usage record, and what the admin shows. Two server processes racing one budget
are in test_budget_processes.py."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.checks import run_checks
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from bench.fake_upstream import Usage as FakeUsage
from llm.limits import month_start
from llm.models import SpendCounter, UsageRecord
from llm.pricing import (
    MESSAGE_OVERHEAD_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    Price,
    input_token_bound,
    max_cost_of,
)
from llm.providers import ChatRequest, Message
from llm.services import Reservation, UsageDraft, spend_reserve, usage_record_create

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
WEBHOOK = "/api/v1/webhook"
BATCH = "/api/v1/batch"
UNPRICED = "openai/my-finetune"


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def chat(client, model="gpt-4o-mini", content="Hello there", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return client.post(CHAT, body, content_type="application/json")


def set_token_budget(token, amount: str | None) -> None:
    row = token[0]
    row.monthly_budget_usd = Decimal(amount) if amount is not None else None
    row.save()
    from accounts import token_cache

    token_cache.clear()


def counter(scope: str, key: int) -> SpendCounter:
    return SpendCounter.objects.get(scope=scope, key=key, month=month_start(timezone.now().date()))


def only_record() -> UsageRecord:
    records = list(UsageRecord.objects.all())
    assert len(records) == 1, records
    return records[0]


# --- The bound on a request's cost ---------------------------------------------------------------


def test_input_bound_counts_utf8_bytes_of_every_part_tool_and_message():
    text = "Grüße, 世界! 👋"  # 20 UTF-8 bytes in 12 characters
    image = {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}}
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    request = ChatRequest(
        model="m",
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content=[{"type": "text", "text": text}, image]),
        ],
        tools=[tool],
    )
    import json

    def size(value) -> int:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())

    expected = (
        REQUEST_OVERHEAD_TOKENS
        + size([tool])
        + 2 * MESSAGE_OVERHEAD_TOKENS
        + len(b"Be brief.")
        + size([{"type": "text", "text": text}, image])
    )
    assert input_token_bound(request) == expected
    assert size([{"type": "text", "text": text}]) >= len(text.encode())  # a part counts at least its text's bytes


def test_max_cost_prices_input_at_the_higher_rate_and_output_at_max_tokens_or_the_model_limit(settings):
    price = Price(
        input=Decimal("3"), output=Decimal("15"), cached_input=Decimal("0.3"), cache_write=Decimal("3.75"),
        max_output_tokens=1000,
    )  # fmt: skip
    request = ChatRequest(model="m", messages=[Message(role="user", content="x" * 60)])
    bound = REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS + 60
    # No max_tokens: the price row's limit on OpenAI-compatible routes ...
    assert max_cost_of(request, price, "openai") == (bound * Decimal("3.75") + 1000 * Decimal("15")) / 1_000_000
    # ... and what the gateway sends Anthropic.
    settings.ANTHROPIC_DEFAULT_MAX_TOKENS = 200
    assert max_cost_of(request, price, "anthropic") == (bound * Decimal("3.75") + 200 * Decimal("15")) / 1_000_000
    limited = ChatRequest(model="m", messages=request.messages, max_tokens=7)
    assert max_cost_of(limited, price, "openai") == (bound * Decimal("3.75") + 7 * Decimal("15")) / 1_000_000


# --- Models without a price ----------------------------------------------------------------------


def test_unpriced_model_under_a_token_budget_is_refused_before_the_upstream_call(client, fake_upstream, token):
    set_token_budget(token, "5.00")
    response = chat(client, model=UNPRICED)
    assert response.status_code == 400
    error = response.json()["error"]  # OpenAI's shape on /v1
    assert error["code"] == "model_not_priced" and error["type"] == "invalid_request_error"
    assert "openai/my-finetune has no price" in error["message"]
    assert "/admin/llm/modelprice/add/" in error["message"] and "UNPRICED_INPUT_PER_MTOK" in error["message"]
    assert fake_upstream.requests == []
    record = only_record()
    assert (record.status, record.http_status, record.error_code) == ("client_error", 400, "model_not_priced")
    assert record.priced is False and record.upstream_model == "my-finetune"
    assert not SpendCounter.objects.exists()  # nothing reserved


def test_unpriced_model_under_a_user_budget_is_refused_in_the_api_error_shape(client, fake_upstream, user):
    user.preferences.monthly_budget_usd = Decimal("5.00")
    user.preferences.save()
    account_services.user_preferences_update(user=user)
    response = client.post(
        WEBHOOK, {"prompt": "hi", "type": "summary", "model": UNPRICED}, content_type="application/json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == "model_not_priced"
    assert error["details"] == {"provider": "openai", "model": "my-finetune", "admin_url": "/admin/llm/modelprice/add/"}
    assert "your account" in error["message"]
    assert fake_upstream.requests == []
    assert only_record().error_code == "model_not_priced"


def test_unpriced_fallback_route_under_a_budget_is_refused_naming_it(client, fake_upstream, token):
    from llm.models import ModelRoute

    backup = ModelRoute.objects.create(alias="backup", provider="openai", upstream_model="my-finetune")
    ModelRoute.objects.create(alias="main", provider="openai", upstream_model="gpt-4o-mini", fallback=backup)
    from llm import routing

    routing.routes_changed()
    set_token_budget(token, "5.00")
    response = chat(client, model="main", max_tokens=10)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "openai/my-finetune (the fallback of openai/gpt-4o-mini) has no price" in message
    assert fake_upstream.requests == []


def test_unpriced_model_without_a_budget_runs_and_is_counted_not_mistaken_for_free(client, fake_upstream, token):
    fake_upstream.configure(usage=FakeUsage(input_tokens=100, output_tokens=20))
    response = chat(client, model=UNPRICED)
    assert response.status_code == 200, response.content
    record = only_record()
    assert record.status == "ok" and record.priced is False and record.cost_usd is None
    assert (record.input_tokens, record.output_tokens) == (100, 20)
    assert not SpendCounter.objects.filter(reserved_usd__gt=0).exists()
    chat(client, model="gpt-4o-mini")  # a priced one next to it
    usage = Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}").get("/api/v1/usage?group_by=model").json()
    assert usage["totals"]["unpriced_requests"] == 1 and usage["totals"]["requests"] == 2
    per_model = {group["key"]: group for group in usage["groups"]}
    assert per_model["my-finetune"]["unpriced_requests"] == 1 and per_model["my-finetune"]["cost_usd"] == "0"
    assert per_model["gpt-4o-mini"]["unpriced_requests"] == 0


def test_fallback_price_charges_unpriced_models_and_lets_budgets_apply(client, fake_upstream, token, settings):
    settings.UNPRICED_INPUT_PER_MTOK = "10.00"
    settings.UNPRICED_OUTPUT_PER_MTOK = "30.00"
    set_token_budget(token, "1.00")
    fake_upstream.configure(usage=FakeUsage(input_tokens=1000, output_tokens=100))
    response = chat(client, model=UNPRICED, max_tokens=100)
    assert response.status_code == 200, response.content
    assert len(fake_upstream.requests) == 1
    record = only_record()
    # 1000 x 10 + 100 x 30 per million, and still flagged: the model has no price of its own.
    assert record.cost_usd == Decimal("0.013") and record.priced is False
    row = counter("token", token[0].pk)
    assert row.spent_usd == Decimal("0.013") and row.reserved_usd == 0
    assert counter("user", token[0].user_id).spent_usd == Decimal("0.013")


def test_fallback_price_setting_needs_both_halves(settings):
    settings.UNPRICED_INPUT_PER_MTOK = "1.5"
    settings.UNPRICED_OUTPUT_PER_MTOK = ""
    assert "llm.E002" in {message.id for message in run_checks()}
    settings.UNPRICED_OUTPUT_PER_MTOK = "cheap"
    assert "llm.E001" in {message.id for message in run_checks()}
    settings.UNPRICED_OUTPUT_PER_MTOK = "2"
    assert not {message.id for message in run_checks()} & {"llm.E001", "llm.E002"}


# --- Reservations --------------------------------------------------------------------------------


def test_a_request_whose_maximum_cost_does_not_fit_is_refused_before_the_upstream_call(client, fake_upstream, token):
    set_token_budget(token, "0.10")
    # No max_tokens: gpt-4o may write its full 16,384-token limit at $10 per million, $0.16 > $0.10.
    response = chat(client, model="gpt-4o")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded" and error["type"] == "insufficient_quota"
    assert "may cost up to $0.16" in error["message"] and "max_tokens" in error["message"]
    assert fake_upstream.requests == []
    assert only_record().status == "budget_exceeded"
    assert not SpendCounter.objects.filter(reserved_usd__gt=0).exists()
    # With max_tokens the bound is small, and it runs.
    assert chat(client, model="gpt-4o", max_tokens=100).status_code == 200
    assert len(fake_upstream.requests) == 1


def test_reservation_is_settled_to_the_real_cost_on_success(client, fake_upstream, token, user):
    set_token_budget(token, "1.00")
    user.preferences.monthly_budget_usd = Decimal("2.00")
    user.preferences.save()
    account_services.user_preferences_update(user=user)
    fake_upstream.configure(usage=FakeUsage(input_tokens=1000, output_tokens=200))
    assert chat(client, max_tokens=500).status_code == 200
    cost = Decimal("0.00027")  # 1000 x 0.15 + 200 x 0.60 per million
    assert only_record().cost_usd == cost
    for scope, key in (("token", token[0].pk), ("user", user.pk)):
        row = counter(scope, key)
        assert (row.spent_usd, row.reserved_usd) == (cost, 0)


def test_reservation_is_released_on_an_upstream_error(client, fake_upstream, token):
    set_token_budget(token, "1.00")
    fake_upstream.fail_next("500", times=3)
    response = chat(client, max_tokens=500)
    assert response.status_code == 502
    assert only_record().status == "upstream_error"
    row = counter("token", token[0].pk)
    assert (row.spent_usd, row.reserved_usd) == (0, 0)


def test_reservation_is_released_on_a_cache_hit(client, fake_upstream, token):
    set_token_budget(token, "1.00")
    fake_upstream.configure(usage=FakeUsage(input_tokens=1000, output_tokens=200))
    assert chat(client, temperature=0, max_tokens=500).status_code == 200
    hit = chat(client, temperature=0, max_tokens=500)
    assert hit.status_code == 200 and hit["X-Djllm-Cached"] == "true"
    assert len(fake_upstream.requests) == 1
    row = counter("token", token[0].pk)
    assert (row.spent_usd, row.reserved_usd) == (Decimal("0.00027"), 0)


def test_a_rate_limited_request_reserves_nothing(client, fake_upstream, token):
    set_token_budget(token, "1.00")
    row = token[0]
    row.rate_limit = "1/h"
    row.save()
    from accounts import token_cache

    token_cache.clear()
    assert chat(client, max_tokens=10).status_code == 200
    before = counter("token", token[0].pk)
    assert chat(client, max_tokens=10).status_code == 429
    after = counter("token", token[0].pk)
    assert (after.spent_usd, after.reserved_usd) == (before.spent_usd, 0)


def test_reservations_fit_only_while_spent_plus_reserved_stays_within_the_budget(user, token):
    month = date(2025, 3, 1)
    budgets = [("token", token[0].pk, Decimal("1.00"), "this token"), ("user", user.pk, Decimal("0.50"), "you")]
    first = spend_reserve(month=month, amount=Decimal("0.30"), budgets=budgets)
    assert first == Reservation(month=month, amount=Decimal("0.30"), scopes=(("token", token[0].pk), ("user", user.pk)))
    with pytest.raises(Exception) as refused:  # the user's 0.50 has 0.20 left
        spend_reserve(month=month, amount=Decimal("0.30"), budgets=budgets)
    assert refused.value.code == "budget_exceeded"
    assert refused.value.details["scope"] == "user" and refused.value.details["left_usd"] == "0.2"
    # All or nothing: the token's counter did not keep the refused reservation.
    rows = {row.scope: row.reserved_usd for row in SpendCounter.objects.filter(month=month)}
    assert rows == {"token": Decimal("0.30"), "user": Decimal("0.30")}
    spend_reserve(month=month, amount=Decimal("0.20"), budgets=budgets)  # exactly what is left fits
    assert SpendCounter.objects.get(scope="user", month=month).reserved_usd == Decimal("0.50")


def test_a_reservation_is_released_from_the_month_it_was_taken_in(user, token):
    last_month = date(2000, 1, 1)
    budgets = [("token", token[0].pk, Decimal("1.00"), "this token")]
    reservation = spend_reserve(month=last_month, amount=Decimal("0.40"), budgets=budgets)
    draft = UsageDraft(
        request_id="r1", endpoint="chat", user_id=user.pk, token_id=token[0].pk, cost_usd=Decimal("0.10"),
        reservation=reservation,
    )  # fmt: skip
    usage_record_create(draft=draft)
    old = SpendCounter.objects.get(scope="token", key=token[0].pk, month=last_month)
    assert (old.spent_usd, old.reserved_usd) == (0, 0)
    assert counter("token", token[0].pk).spent_usd == Decimal("0.10")


# --- Batches and jobs ----------------------------------------------------------------------------


def test_batch_items_reserve_one_by_one_and_the_surplus_is_refused(client, fake_upstream, token, settings):
    from llm import pricing

    settings.BATCH_RATE_LIMIT_MAX_WAIT = 0.05
    prompts = [f"row {i}" for i in range(10)]  # the same length: one bound for every item
    body = {"type": "summary", "model": "gpt-4o", "parameters": {"max_tokens": 2000}}
    # A probe without a budget shows what the upstream is sent for one item, to compute its bound.
    assert (
        client.post(BATCH, {**body, "items": [{"prompt": "row X"}]}, content_type="application/json").status_code == 200
    )
    sent = fake_upstream.last_request.body
    item = ChatRequest(
        model="gpt-4o", messages=[Message(role=m["role"], content=m["content"]) for m in sent["messages"]],
        max_tokens=2000,
    )  # fmt: skip
    bound = pricing.input_token_bound(item)
    most = max_cost_of(item, pricing.price_for("openai", "gpt-4o"), "openai")  # about $0.02
    # Each item costs exactly its reservation, so exactly 3 fit, however the items interleave.
    fake_upstream.reset()
    fake_upstream.configure(usage=FakeUsage(input_tokens=bound, output_tokens=2000), latency_ms=100)
    UsageRecord.objects.all().delete()
    SpendCounter.objects.all().delete()
    budget = (3 * most).quantize(Decimal("0.01"), rounding="ROUND_UP")  # budgets are in cents
    assert 3 * most <= budget < 4 * most
    set_token_budget(token, str(budget))
    response = client.post(
        BATCH,
        {**body, "items": [{"id": i, "prompt": p} for i, p in enumerate(prompts)]},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    ok = [r for r in results if r["status"] == "ok"]
    refused = [r for r in results if r["status"] == "error"]
    assert len(ok) == 3 and len(refused) == 7
    assert {r["error"]["code"] for r in refused} == {"budget_exceeded"}
    assert len(fake_upstream.requests) == 3
    row = counter("token", token[0].pk)
    assert row.spent_usd == 3 * most and row.spent_usd <= budget and row.reserved_usd == 0
    assert UsageRecord.objects.filter(status="budget_exceeded").count() == 7
    assert UsageRecord.objects.filter(status="ok").count() == 3


# --- Admin ---------------------------------------------------------------------------------------


def test_admin_shows_budget_spent_reserved_and_left_for_tokens_and_users(admin_client, token, user):
    set_token_budget(token, "1.00")
    user.preferences.monthly_budget_usd = Decimal("5.00")
    user.preferences.save()
    month = month_start(timezone.now().date())
    SpendCounter.objects.create(
        scope="token", key=token[0].pk, month=month, spent_usd=Decimal("0.25"), reserved_usd=Decimal("0.10")
    )
    SpendCounter.objects.create(scope="user", key=user.pk, month=month, spent_usd=Decimal("0.25"))
    other = account_services.user_create(username="nobudget")
    SpendCounter.objects.create(scope="user", key=other.pk, month=month, spent_usd=Decimal("0.5"))
    html = admin_client.get("/admin/llm/spendcounter/").content.decode()
    import re

    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        cells = dict(re.findall(r'<t[hd] class="field-(\w+)"[^>]*>(?:<a [^>]*>)?(.*?)(?:</a>)?</t[hd]>', row, re.S))
        if "owner" in cells:
            rows[cells["owner"]] = cells
    token_row = rows[token[0].display_prefix]
    assert (token_row["budget"], token_row["spent"], token_row["reserved"], token_row["left"]) == (
        "$1.00", "$0.25", "$0.10", "$0.65",
    )  # fmt: skip
    user_row = rows[user.username]
    assert (user_row["budget"], user_row["spent"], user_row["reserved"], user_row["left"]) == (
        "$5.00",
        "$0.25",
        "$0",
        "$4.75",
    )
    assert (rows["nobudget"]["budget"], rows["nobudget"]["left"]) == ("no budget", "—")
    assert "Budgets and spend" in html


def test_admin_lists_budgets_with_no_request_yet_this_month(admin_client, token, make_token):
    set_token_budget(token, "1.00")
    idle_user = account_services.user_create(username="idle")
    idle_user.preferences.monthly_budget_usd = Decimal("3.00")
    idle_user.preferences.save()
    idle_token, _ = make_token(user=idle_user, name="idle")
    idle_token.monthly_budget_usd = Decimal("2.50")
    idle_token.save()
    # The first token has spent this month: it is in the rows, not in the list of unused budgets.
    SpendCounter.objects.create(
        scope="token", key=token[0].pk, month=month_start(timezone.now().date()), spent_usd=Decimal("0.4")
    )
    html = admin_client.get("/admin/llm/spendcounter/").content.decode()
    unused = html.split('id="unused-budgets"')[1].split("</table>")[0]
    import re

    listed = [
        dict(re.findall(r'<td class="field-(\w+)">(.*?)</td>', row))
        for row in re.findall(r"<tr>(<td.*?)</tr>", unused, re.S)
    ]
    assert {(r["scope"], r["owner"], r["budget"], r["spent"], r["reserved"], r["left"]) for r in listed} == {
        ("token", idle_token.display_prefix, "$2.50", "$0", "$0", "$2.50"),
        ("user", "idle", "$3.00", "$0", "$0", "$3.00"),
    }


def test_a_caller_cancelled_while_reserving_leaves_nothing_reserved(token, gateway_settings, prices, monkeypatch):
    import asyncio
    import threading

    from asgiref.sync import async_to_sync, sync_to_async

    from accounts.token_cache import CachedToken
    from common.aio import background_tasks
    from llm import budgets
    from llm.pricing import price_for
    from llm.routing import aresolve

    set_token_budget(token, "1.00")
    started, proceed = threading.Event(), threading.Event()
    real = budgets.spend_reserve

    def slow_reserve(**kwargs):
        started.set()
        proceed.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(budgets, "spend_reserve", slow_reserve)
    request = ChatRequest(model="gpt-4o-mini", messages=[Message(role="user", content="hi")], max_tokens=10)
    price = price_for("openai", "gpt-4o-mini")

    async def main():
        route = await aresolve("gpt-4o-mini")
        reserving = asyncio.ensure_future(
            budgets.budget_reserve(
                CachedToken(token=token[0], preferences=None),
                month=month_start(timezone.now().date()),
                route=route,
                request=request,
                price=price,
            )
        )
        await asyncio.to_thread(started.wait, 10)
        reserving.cancel()  # the client hangs up while the database reserves
        proceed.set()
        with pytest.raises(asyncio.CancelledError):
            await reserving
        # The reservation is taken all the same, and then given back on its own: nothing stays reserved.
        reserved = sync_to_async(lambda: list(SpendCounter.objects.values_list("reserved_usd", flat=True)))
        for _ in range(500):
            if await reserved() == [0]:
                break
            await asyncio.sleep(0.01)
        await asyncio.gather(*background_tasks())

    async_to_sync(main)()
    row = counter("token", token[0].pk)
    assert (row.spent_usd, row.reserved_usd) == (0, 0)


def test_an_unexpected_failure_after_the_reservation_is_recorded_and_releases_it(
    client, fake_upstream, token, monkeypatch
):
    """A bug in reading an answer (here: the provider code raising something no handler expects) still leaves the
    request's one record, estimated since the call was sent, and gives the reservation back."""
    from llm.providers import openai_provider

    async def broken(self, request):
        raise RuntimeError("a bug while reading the answer")

    set_token_budget(token, "1.00")
    monkeypatch.setattr(openai_provider.OpenAIProvider, "complete", broken)
    response = chat(client, max_tokens=500)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"  # OpenAI's shape, no traceback
    record = only_record()
    assert (record.status, record.http_status, record.error_code) == ("upstream_error", 500, "internal_error")
    assert record.usage_estimated and record.input_tokens > 0 and record.attempts == 1
    row = counter("token", token[0].pk)
    assert (row.reserved_usd, row.spent_usd) == (0, record.cost_usd)


def test_an_answer_whose_message_is_not_an_object_is_a_mapped_upstream_error(client, fake_upstream, token):
    fake_upstream.configure(reply="ok")
    from bench import fake_upstream as fake_module

    original = fake_module._dumps

    def message_as_text(obj):
        if isinstance(obj, dict) and obj.get("object") == "chat.completion":
            obj = {**obj, "choices": [{**obj["choices"][0], "message": "just text"}]}
        return original(obj)

    fake_module._dumps = message_as_text
    try:
        response = chat(client)
    finally:
        fake_module._dumps = original
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_bad_response"
    assert only_record().error_code == "upstream_bad_response"
