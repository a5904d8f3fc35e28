"""Admin for the gateway: usage records (filters, totals, CSV, read-only, no full count), prices, routes (the key
never shown), templates, spend counters."""

import csv
import io
import re
import warnings
from decimal import Decimal
from html import unescape

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.db import connection, connections
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver
from freezegun import freeze_time

from accounts import services as account_services
from common.formatting import usd
from llm import pricing, routing, templates_store
from llm.models import ModelPrice, ModelRoute, PromptTemplate, SpendCounter, UsageRecord
from llm.paginator import EstimatedCountPaginator
from llm.providers.base import Usage
from llm.services import UsageDraft, usage_record_create
from tests.factories import UserFactory
from tests.gateway_fixtures import route_form

pytestmark = pytest.mark.django_db

USAGE_URL = "/admin/llm/usagerecord/"


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(account_services.user_create(username="root", password="pw-for-tests-123", is_superuser=True))
    return client


def add_record(
    request_id,
    *,
    user,
    token=None,
    model="gpt-4o-mini",
    provider="openai",
    status="ok",
    usage=None,
    cost=None,
    saved="0",
    error_code="",
    error_message="",
):
    return usage_record_create(
        draft=UsageDraft(
            request_id=request_id,
            endpoint="chat",
            user_id=user.pk,
            token_id=token.pk if token else None,
            provider=provider,
            requested_model=model,
            upstream_model=model,
            status=status,
            http_status=200 if status in ("ok", "cached") else 502,
            usage=usage,
            cost_usd=Decimal(cost) if cost is not None else None,
            saved_usd=Decimal(saved),
            error_code=error_code,
            error_message=error_message,
        )
    )


@pytest.fixture
def records():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    alice_token, _ = account_services.api_token_create(user=alice, name="excel")
    bob_token, _ = account_services.api_token_create(user=bob, name="cli")
    with freeze_time("2025-05-15 12:00:00", tick=True) as clock:
        add_record("req-a1", user=alice, token=alice_token, usage=Usage(1000, 200, 400, 0, 10), cost="0.000123456789")
        add_record(
            "req-a2",
            user=alice,
            token=alice_token,
            model="claude-haiku-4-5",
            provider="anthropic",
            usage=Usage(3000, 500, 2000, 500, 0),
            cost="0.0105",
        )
        add_record(
            "req-a3",
            user=alice,
            token=alice_token,
            status="cached",
            usage=Usage(1000, 200, 400),
            cost="0",
            saved="0.0002",
        )
        add_record("req-b1", user=bob, token=bob_token, usage=Usage(10, 20), cost="0.0000135")
        add_record("req-b2", user=bob, token=bob_token, status="upstream_error", error_code="upstream_timeout")
        add_record("req-b3", user=bob, token=bob_token, model="llama3.1", provider="local", usage=Usage(70, 30))
        add_record('=HYPERLINK("http://evil")', user=bob, token=bob_token, usage=Usage(1, 1), cost="0.000001")
        clock.move_to("2020-06-15 12:00:00")  # an old record: outside this month's totals
        add_record("req-old", user=alice, token=alice_token, usage=Usage(5, 5), cost="1.5")
    return {"alice": alice, "bob": bob, "alice_token": alice_token, "bob_token": bob_token}


def shown_totals(html: str) -> dict[str, str]:
    """Each total as shown; amounts as their exact value (the cell's title) and their shown text."""
    cells = re.findall(r'<dd (?:title="([^"]*)" )?data-total="(\w+)">(.*?)</dd>', html, re.S)
    shown = {name: re.sub(r"<[^>]+>|⚠", "", value).strip() for _, name, value in cells}
    exact = {name: title for title, name, _ in cells if title}
    for name, value in exact.items():
        assert shown[name] == usd(Decimal(value)), (name, shown[name], value)
    return {**shown, **exact}


def expected_totals(queryset) -> dict[str, str]:
    """Sums computed here, row by row in Python, from what the database holds."""
    rows = list(queryset)
    plain = lambda d: format(d.normalize(), "f")  # noqa: E731
    return {
        "requests": str(len(rows)),
        "cost_usd": plain(sum((r.cost_usd or Decimal(0) for r in rows), Decimal(0))),
        "saved_usd": plain(sum((r.saved_usd for r in rows), Decimal(0))),
        "input_tokens": str(sum(r.input_tokens for r in rows)),
        "output_tokens": str(sum(r.output_tokens for r in rows)),
        "cached_input_tokens": str(sum(r.cached_input_tokens for r in rows)),
        "cache_write_tokens": str(sum(r.cache_write_tokens for r in rows)),
        "reasoning_tokens": str(sum(r.reasoning_tokens for r in rows)),
        "cached": str(sum(r.status == "cached" for r in rows)),
        "errors": str(sum(r.status not in ("ok", "cached") for r in rows)),
        "unpriced": str(sum(r.cost_usd is None and (r.input_tokens + r.output_tokens) > 0 for r in rows)),
        "unpriced_requests": str(sum(not r.priced for r in rows)),
    }


def listed_request_ids(html: str) -> set[str]:
    cells = re.findall(r'<span data-request-id="([^"]*)"', html)
    return {unescape(cell) for cell in cells}


def test_unfiltered_changelist_totals_cover_this_month(admin_client, records):
    get_resolver().url_patterns  # import the URLconf (pydantic models among it) before the clock is frozen
    with freeze_time("2025-05-20 12:00:00"):
        response = admin_client.get(USAGE_URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Totals for this month (since 01 May 2025, UTC)" in html
    this_month = UsageRecord.objects.exclude(request_id="req-old")
    assert shown_totals(html) == expected_totals(this_month)
    assert shown_totals(html)["cost_usd"] == "0.010637956789"  # 0.000123456789 + 0.0105 + 0.0000135 + 0.000001
    assert '<dd title="0.010637956789" data-total="cost_usd">$0.0106</dd>' in html
    assert "req-old" in listed_request_ids(html)  # the list itself shows every record


@pytest.mark.parametrize(
    ("query", "rows"),
    [
        ("status__exact=ok", lambda r: UsageRecord.objects.filter(status="ok")),
        ("provider=anthropic", lambda r: UsageRecord.objects.filter(provider="anthropic")),
        ("upstream_model=gpt-4o-mini", lambda r: UsageRecord.objects.filter(upstream_model="gpt-4o-mini")),
        ("user__id__exact={alice}", lambda r: UsageRecord.objects.filter(user=r["alice"])),
        ("token__id__exact={bob_token}", lambda r: UsageRecord.objects.filter(token=r["bob_token"])),
        ("cached=yes", lambda r: UsageRecord.objects.filter(status="cached")),
        ("cached=no&provider=openai", lambda r: UsageRecord.objects.filter(provider="openai").exclude(status="cached")),
        ("price_missing=yes", lambda r: UsageRecord.objects.filter(request_id="req-b3")),
        ("created_at__year=2020", lambda r: UsageRecord.objects.filter(request_id="req-old")),
        (
            "created_at__year=2020&created_at__month=6&created_at__day=15",
            lambda r: UsageRecord.objects.filter(request_id="req-old"),
        ),
        ("q=req-a2", lambda r: UsageRecord.objects.filter(request_id="req-a2")),
    ],
)
def test_filtered_changelist_lists_and_totals_the_filtered_set(admin_client, records, query, rows):
    ids = {"alice": records["alice"].pk, "bob_token": records["bob_token"].pk}
    response = admin_client.get(f"{USAGE_URL}?{query.format(**ids)}")
    assert response.status_code == 200
    assert "?e=1" not in response.get("Location", "")
    html = response.content.decode()
    expected = rows(records)
    assert "Totals for the records shown by these filters" in html
    assert shown_totals(html) == expected_totals(expected)
    assert listed_request_ids(html) == set(expected.values_list("request_id", flat=True))


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0.000974100000", "$0.000974"),
        ("0.0105", "$0.0105"),
        ("0.0000135", "$0.0000135"),
        ("0.000123456789", "$0.000123"),
        ("1.5", "$1.50"),
        ("0.5", "$0.50"),
        ("0.9999", "$1.00"),
        ("1234.567", "$1,234.57"),
        ("0", "$0"),
        (None, "—"),
    ],
)
def test_usd_shows_amounts_with_sensible_precision(amount, shown):
    assert usd(None if amount is None else Decimal(amount)) == shown


@pytest.mark.parametrize(
    ("price", "shown"), [("2.500000", "$2.50"), ("1.125000", "$1.125"), ("0.075000", "$0.075"), ("15", "$15.00")]
)
def test_usd_keeps_every_digit_of_a_price(price, shown):
    assert usd(Decimal(price), exact=True) == shown


def test_price_list_shows_dollars_per_million_tokens(admin_client):
    ModelPrice.objects.create(provider="openai", model="gpt-x", input_per_mtok="0.075", output_per_mtok="1.125")
    html = admin_client.get("/admin/llm/modelprice/").content.decode()
    assert "$0.075" in html and "$1.125" in html and "0.075000" not in html


def test_list_shows_money_rounded_and_the_record_page_the_exact_value(admin_client, records):
    html = admin_client.get(USAGE_URL).content.decode()
    assert "$0.000123" in html and "0.000123456789" not in html
    assert re.search(r"2025-05-15</span> <span class=\"nowrap\">\d\d:\d\d:\d\d<", html)  # to the second
    record = UsageRecord.objects.get(request_id="req-a1")
    page = admin_client.get(f"{USAGE_URL}{record.pk}/change/").content.decode()
    assert "$0.000123" in page and "0.000123456789" in page


def test_an_error_record_shows_what_its_code_means(admin_client, records):
    html = admin_client.get(f"{USAGE_URL}?status__exact=upstream_error").content.decode()
    assert "upstream_timeout" in html and 'title="The provider did not answer in time' in html
    record = UsageRecord.objects.get(request_id="req-b2")
    page = admin_client.get(f"{USAGE_URL}{record.pk}/change/").content.decode()
    assert "upstream_timeout: The provider did not answer in time, or stopped answering mid-response." in page


def test_an_error_record_shows_the_message_the_client_was_told(admin_client, records):
    message = "The provider refused the request: model 'gpt-9' does not exist."
    add_record(
        "req-msg",
        user=records["alice"],
        status="upstream_error",
        error_code="upstream_bad_request",
        error_message=message,
    )
    record = UsageRecord.objects.get(request_id="req-msg")
    page = admin_client.get(f"{USAGE_URL}{record.pk}/change/").content.decode()
    assert "upstream_bad_request: The provider refused the request: model &#x27;gpt-9&#x27; does not exist." in page
    html = admin_client.get(f"{USAGE_URL}?status__exact=upstream_error").content.decode()
    assert 'title="The provider refused the request: model &#x27;gpt-9&#x27; does not exist."' in html


def test_price_missing_is_flagged_in_the_list(admin_client, records):
    html = admin_client.get(f"{USAGE_URL}?provider=local").content.decode()
    assert "price missing" in html and 'title="No ModelPrice for local/llama3.1"' in html
    html = admin_client.get(f"{USAGE_URL}?status__exact=upstream_error").content.decode()
    assert "price missing" not in html  # no tokens, nothing to price


def test_search_is_an_exact_request_id_match(admin_client, records):
    html = admin_client.get(f"{USAGE_URL}?q=req-a").content.decode()
    assert listed_request_ids(html) == set()


def test_model_filter_offers_recent_models(admin_client, records):
    html = admin_client.get(USAGE_URL).content.decode()
    for model in ("gpt-4o-mini", "claude-haiku-4-5", "llama3.1"):
        assert f"?upstream_model={model}" in html


def test_date_drill_down(admin_client, records):
    html = admin_client.get(USAGE_URL).content.decode()
    assert "?created_at__year=2020" in html
    html = admin_client.get(f"{USAGE_URL}?created_at__year=2020").content.decode()
    assert "created_at__month=6" in html and "June 2020" in html
    html = admin_client.get(f"{USAGE_URL}?created_at__year=2020&created_at__month=6").content.decode()
    assert "created_at__day=15" in html


def test_records_are_read_only(admin_client, records):
    record = UsageRecord.objects.get(request_id="req-a1")
    change_url = f"{USAGE_URL}{record.pk}/change/"
    html = admin_client.get(change_url).content.decode()
    assert "req-a1" in html and 'name="_save"' not in html
    assert admin_client.post(change_url, {"request_id": "edited"}).status_code == 403
    assert admin_client.get(f"{USAGE_URL}add/").status_code == 403
    assert admin_client.post(f"{USAGE_URL}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert UsageRecord.objects.get(pk=record.pk).request_id == "req-a1"
    assert "delete_selected" not in admin_client.get(USAGE_URL).content.decode()


def read_csv(content: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


def test_csv_export_of_the_filtered_set(admin_client, records):
    response = admin_client.post(
        f"{USAGE_URL}?user__id__exact={records['alice'].pk}",
        {"action": "export_csv", "select_across": "1", "index": "0", "_selected_action": ["0"]},
    )
    assert response.status_code == 200
    assert response.streaming and not response.is_async
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="djllm-usage-')
    content = b"".join(response.streaming_content)
    assert content.startswith("\ufeff".encode())  # Excel opens UTF-8
    rows = read_csv(content)
    assert [row["request_id"] for row in rows] == ["req-a3", "req-a2", "req-a1", "req-old"]  # newest first
    by_id = {row["request_id"]: row for row in rows}
    a1 = UsageRecord.objects.get(request_id="req-a1")
    assert by_id["req-a1"]["user"] == "alice" and by_id["req-a1"]["token"] == records["alice_token"].prefix
    assert by_id["req-a1"]["created_at"] == a1.created_at.isoformat()
    assert by_id["req-a1"]["cost_usd"] == "0.000123456789" and by_id["req-a1"]["input_tokens"] == "1000"
    assert by_id["req-a2"]["cache_write_tokens"] == "500" and by_id["req-a2"]["provider"] == "anthropic"
    assert by_id["req-a3"]["status"] == "cached" and by_id["req-a3"]["saved_usd"] == "0.0002"


def test_csv_export_of_selected_rows_pages_through_keysets(admin_client, records, monkeypatch):
    from llm import admin as llm_admin

    monkeypatch.setattr(llm_admin, "_CSV_CHUNK", 2)  # several pages even for a few rows
    selected = UsageRecord.objects.filter(user=records["bob"])
    response = admin_client.post(
        USAGE_URL, {"action": "export_csv", "index": "0", "_selected_action": [r.pk for r in selected]}
    )
    rows = read_csv(b"".join(response.streaming_content))
    assert sorted(row["id"] for row in rows) == sorted(str(r.pk) for r in selected)
    assert len(rows) == 4
    # A cell a spreadsheet would run as a formula is defused; a missing cost is an empty cell.
    assert {row["request_id"] for row in rows} >= {'\'=HYPERLINK("http://evil")', "req-b3"}
    assert next(row for row in rows if row["request_id"] == "req-b3")["cost_usd"] == ""


@pytest.mark.django_db(transaction=True)
async def test_csv_export_streams_asynchronously_under_asgi(records):
    from asgiref.sync import sync_to_async

    superuser = await sync_to_async(account_services.user_create)(
        username="root", password="pw-for-tests-123", is_superuser=True
    )
    client = AsyncClient()
    await client.aforce_login(superuser)
    with warnings.catch_warnings():
        # Django warns when it has to read a sync iterator whole before sending it under ASGI.
        warnings.filterwarnings("error", message="StreamingHttpResponse must consume synchronous iterators")
        response = await client.post(
            USAGE_URL, {"action": "export_csv", "select_across": "1", "index": "0", "_selected_action": ["0"]}
        )
        assert response.status_code == 200 and response.is_async
        content = b"".join([chunk async for chunk in response.streaming_content])
    rows = read_csv(content)
    try:
        assert len(rows) == await UsageRecord.objects.acount() == 8
    finally:
        # The test client keeps request_finished from closing connections: close the worker thread's ourselves.
        await sync_to_async(connections.close_all)()


# --- no full count ------------------------------------------------------------------------------


def usage_queries(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "llm_usagerecord" in q["sql"]]


@pytest.fixture
def small_exact_limit(monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 5)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_class estimates exist on PostgreSQL only")
def test_unfiltered_changelist_never_counts_the_table_on_postgresql(admin_client, records, small_exact_limit):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE llm_usagerecord")  # what autovacuum does on a real table
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(USAGE_URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "about 8 usage records" in html
    assert any("pg_class" in q["sql"] for q in captured.captured_queries)
    for sql in usage_queries(captured):
        assert not ("COUNT(" in sql.upper() and "WHERE" not in sql.upper()), sql


def test_filtered_count_is_capped(admin_client, records, small_exact_limit):
    with CaptureQueriesContext(connection) as captured:
        html = admin_client.get(f"{USAGE_URL}?status__exact=ok").content.decode()
    assert UsageRecord.objects.filter(status="ok").count() == 6
    assert "more than 5 usage records" in html
    counts = [sql for sql in usage_queries(captured) if "COUNT(*)" in sql.upper()]
    assert counts and all("LIMIT 6" in sql.upper() for sql in counts), counts
    assert "more than 5" in admin_client.get(f"{USAGE_URL}?status__exact=ok&p=1").content.decode()


def test_small_sets_are_counted_exactly(admin_client, records):
    html = admin_client.get(f"{USAGE_URL}?provider=anthropic").content.decode()
    assert "1 usage record" in html


# --- ModelRoute: the key is never shown ---------------------------------------------------------

SECRET = "sk-route-secret-0123456789abcdef"


def test_route_key_is_write_only(admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/llm/modelroute/add/", route_form(api_key=SECRET))
    assert response.status_code == 302, response.content.decode()[:2000]
    route = ModelRoute.objects.get(alias="fast")
    assert route.api_key == SECRET
    with connection.cursor() as cursor:  # encrypted at rest
        cursor.execute("SELECT api_key FROM llm_modelroute WHERE id = %s", [route.pk])
        assert SECRET not in cursor.fetchone()[0]

    listing = admin_client.get("/admin/llm/modelroute/").content.decode()
    assert SECRET not in listing and ">set<" in listing
    change_url = f"/admin/llm/modelroute/{route.pk}/change/"
    page = admin_client.get(change_url).content.decode()
    assert SECRET not in page
    assert re.search(r'<input type="password" name="api_key"[^>]*>', page)
    assert 'value="sk-' not in page

    # Saving with the key left blank keeps it; the history says nothing about it.
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(change_url, route_form(upstream_model="gpt-4.1-mini"))
    route.refresh_from_db()
    assert (route.upstream_model, route.api_key) == ("gpt-4.1-mini", SECRET)
    history = admin_client.get(f"{change_url}../history/").content.decode()
    assert SECRET not in history

    # A new key replaces it; "remove" clears it.
    admin_client.post(change_url, route_form(api_key="sk-new-key-000"))
    route.refresh_from_db()
    assert route.api_key == "sk-new-key-000"
    admin_client.post(change_url, route_form(clear_api_key="on"))
    route.refresh_from_db()
    assert route.api_key == ""
    assert ">not set<" in admin_client.get("/admin/llm/modelroute/").content.decode()


def test_route_key_hidden_from_view_only_staff(records):
    route = ModelRoute.objects.create(alias="fast", provider="openai", upstream_model="gpt-4o-mini", api_key=SECRET)
    viewer = account_services.user_create(username="viewer", password="pw-for-tests-123")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_modelroute"))
    client = Client()
    client.force_login(viewer)
    page = client.get(f"/admin/llm/modelroute/{route.pk}/change/").content.decode()
    assert page.count("fast") >= 1 and SECRET not in page and "set" in page


def test_route_save_refreshes_this_process(admin_client, django_capture_on_commit_callbacks):
    aroutes = async_to_sync(routing.aroutes)
    routing.routes_changed()
    assert "fast" not in aroutes()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/llm/modelroute/add/", route_form(api_key=SECRET))
    assert aroutes()["fast"].upstream_model == "gpt-4o-mini"


def test_route_responses_api_flag_is_for_openai_compatible_servers(admin_client):
    """On for a local route (its server's /v1/responses is used), accepted and without effect on an OpenAI route (which
    always uses it), refused with the reason on an Anthropic route."""
    refused = admin_client.post(
        "/admin/llm/modelroute/add/",
        route_form(alias="claude", provider="anthropic", upstream_model="claude-haiku-4-5", responses_api="on"),
    )
    assert refused.status_code == 200 and not ModelRoute.objects.filter(alias="claude").exists()
    page = unescape(refused.content.decode())
    assert "The Anthropic provider has no Responses API" in page
    assert "Only an OpenAI-compatible (local) server can have one." in page

    for alias, provider in (("vllm", "local"), ("gpt", "openai")):
        saved = admin_client.post(
            "/admin/llm/modelroute/add/", route_form(alias=alias, provider=provider, responses_api="on")
        )
        assert saved.status_code == 302, saved.content.decode()[:2000]
        assert ModelRoute.objects.get(alias=alias).responses_api is True
    change = admin_client.get(f"/admin/llm/modelroute/{ModelRoute.objects.get(alias='vllm').pk}/change/")
    assert re.search(r'<input type="checkbox" name="responses_api"[^>]*checked', change.content.decode())
    assert "has a /v1/responses endpoint" in unescape(change.content.decode())  # its help text
    listing = admin_client.get("/admin/llm/modelroute/?responses_api__exact=1").content.decode()
    assert "Responses API" in listing and "vllm" in listing


# --- prices, templates, spend ---------------------------------------------------------------------


def test_price_save_and_delete_refresh_this_process(admin_client, django_capture_on_commit_callbacks):
    aprice_for = async_to_sync(pricing.aprice_for)
    ModelPrice.objects.filter(provider="openai", model="gpt-test").delete()
    pricing.prices_changed()
    assert aprice_for("openai", "gpt-test-2025") is None
    form = {
        "provider": "openai",
        "model": "gpt-test",
        "input_per_mtok": "1.5",
        "output_per_mtok": "6",
        "cached_input_per_mtok": "0.15",
        "cache_write_per_mtok": "",
        "max_output_tokens": "32000",
        "effective_from": "2025-01-01",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/llm/modelprice/add/", form)
    assert response.status_code == 302
    assert aprice_for("openai", "gpt-test-2025").input == Decimal("1.5")  # at once, not in 10 seconds
    assert aprice_for("openai", "gpt-test-2025").max_output_tokens == 32000
    price = ModelPrice.objects.get(model="gpt-test")
    listing = admin_client.get("/admin/llm/modelprice/?q=gpt-test").content.decode()
    assert "gpt-test" in listing
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"/admin/llm/modelprice/{price.pk}/delete/", {"post": "yes"})
    assert aprice_for("openai", "gpt-test-2025") is None


def test_template_save_refreshes_this_process(admin_client, django_capture_on_commit_callbacks):
    arender = async_to_sync(templates_store.arender)
    template = PromptTemplate.objects.update_or_create(
        type="summary", source="chat", defaults={"system": "Old, in $language."}
    )[0]
    templates_store.templates_changed()
    assert arender(type="summary", source="chat", prompt="x", language="German", system_override=None).system == (
        "Old, in German."
    )
    listing = admin_client.get("/admin/llm/prompttemplate/?type=summary").content.decode()
    assert "Old, in $language." in listing
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/llm/prompttemplate/{template.pk}/change/",
            {
                "name": "summary/chat",
                "type": "summary",
                "source": "chat",
                "system": "New, in $language.",
                "user_template": "$prompt",
                "parameters": "{}",
            },
        )
    assert response.status_code == 302
    assert arender(type="summary", source="chat", prompt="x", language="German", system_override=None).system == (
        "New, in German."
    )


def test_spend_counters_are_read_only(admin_client, records):
    assert SpendCounter.objects.filter(scope="token", key=records["alice_token"].pk).exists()
    html = admin_client.get("/admin/llm/spendcounter/").content.decode()
    assert records["alice_token"].display_prefix in html and "alice" in html
    counter = SpendCounter.objects.first()
    assert admin_client.get("/admin/llm/spendcounter/add/").status_code == 403
    assert admin_client.post(f"/admin/llm/spendcounter/{counter.pk}/change/", {"spent_usd": "0"}).status_code == 403
