"""The spend dashboard: `/admin/dashboard/` for staff and the user's own on `/account/`, its figures read from the
daily rollups checked against the usage records the gateway wrote, and its links into the usage records list."""

import html
import re
from datetime import UTC, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services as account_services
from bench.fake_upstream import Usage as FakeUsage
from common.formatting import usd
from llm.models import SpendCounter, UsageRecord
from llm.rollups import LATENCY_BUCKETS_MS
from tests.dashboard_data import HOSTILE_MODEL, chat, send_usage

pytestmark = pytest.mark.django_db
URL = "/admin/dashboard/"
ERRORS = ("upstream_error", "client_error", "cancelled", "budget_exceeded", "rate_limited")


@pytest.fixture
def data(gateway_settings, prices):
    return send_usage(gateway_settings)


@pytest.fixture
def staff(db):
    account_services.user_create(username="root", password="root-pw-for-tests-1", is_superuser=True)
    client = Client()
    client.login(username="root", password="root-pw-for-tests-1")
    return client


def figure(page: str, name: str) -> str:
    """The text of a total (`data-figure=name`), links and markup removed."""
    match = re.search(rf'data-figure="{name}"[^>]*>(.*?)</dd>', page, re.S)
    assert match, name
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def figure_link(page: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}"[^>]*>.*?<a href="([^"]+)"', page, re.S)
    assert match, name
    return html.unescape(match.group(1))


def section(page: str, section_id: str) -> str:
    start = page.index(f'id="{section_id}"')
    return page[start : page.index("</section>", start)]


def records_total(client, link: str, name: str = "requests") -> str:
    """Follows a dashboard link into the usage records list; its totals block sums the records it lists."""
    response = client.get(link)
    assert response.status_code == 200, link
    page = response.content.decode()
    assert "?e=1" not in response.get("Location", "") and "errornote" not in page, link
    match = re.search(rf'data-total="{name}"[^>]*>(.*?)</dd>', page, re.S)
    return re.sub(r"<[^>]+>", "", match.group(1)).replace("⚠", "").strip()


def records_link_for(**params) -> str:
    """The usage records list's address for the default range (the last 30 UTC days) and `params`."""
    today = timezone.now().astimezone(UTC).date()
    query = {
        "created_at__gte": f"{today - timedelta(days=29)}T00:00:00Z",
        "created_at__lt": f"{today + timedelta(days=1)}T00:00:00Z",
        **params,
    }
    return "/admin/llm/usagerecord/?" + urlencode(query)


def money_sum(records) -> Decimal:
    return records.aggregate(total=Sum("cost_usd"))["total"] or Decimal("0")


def test_staff_sees_totals_that_match_the_records_and_links_that_open_them(staff, data):
    records = UsageRecord.objects.all()
    assert records.count() == 7
    page = staff.get(URL).content.decode()

    assert figure(page, "requests") == "7"
    assert figure(page, "cost") == usd(money_sum(records))
    assert figure(page, "errors").split()[0] == str(records.filter(status__in=ERRORS).count()) == "1"
    assert figure(page, "cache_hits").split()[0] == "1"
    saved = records.get(status="cached").saved_usd
    assert saved > 0 and figure(page, "saved") == usd(saved)
    assert figure(page, "unpriced").strip("⚠ ") == str(records.filter(priced=False).count())

    # Each total's link opens the usage records list filtered the same way: the list's own totals agree.
    today = timezone.now().astimezone(UTC).date()
    requests_link = figure_link(page, "requests")
    query = parse_qs(urlsplit(requests_link).query)
    assert urlsplit(requests_link).path == "/admin/llm/usagerecord/"
    assert query["created_at__gte"] == [f"{today - timedelta(days=29)}T00:00:00Z"]
    assert query["created_at__lt"] == [f"{today + timedelta(days=1)}T00:00:00Z"]
    assert records_total(staff, requests_link) == "7"
    assert records_total(staff, figure_link(page, "errors")) == "1"
    assert records_total(staff, figure_link(page, "cache_hits"), "cached") == "1"
    assert records_total(staff, figure_link(page, "unpriced")) == figure(page, "unpriced").strip("⚠ ")


def test_top_users_tokens_models_and_latency(staff, data):
    page = staff.get(URL).content.decode()
    alice_cost = money_sum(UsageRecord.objects.filter(user=data.alice))
    users = section(page, "top-users")
    assert users.index("alice") < users.index("bob")  # by cost
    assert usd(alice_cost) in users
    link = html.unescape(re.search(r'>alice</a></td><td><a href="([^"]+)"', users).group(1))
    assert parse_qs(urlsplit(link).query)["user__id__exact"] == [str(data.alice.pk)]
    assert records_total(staff, link) == "5"

    tokens = section(page, "top-tokens")
    assert f"djl_{data.excel.prefix} (excel)" in tokens and f"djl_{data.bobs.prefix} (bob-cli)" in tokens
    link = html.unescape(
        re.search(rf'djl_{data.laptop.prefix} \(laptop\)</a></td><td>alice</td><td><a href="([^"]+)"', tokens)[1]
    )
    assert parse_qs(urlsplit(link).query)["token__id__exact"] == [str(data.laptop.pk)]
    assert records_total(staff, link) == "2"

    models = section(page, "top-models")
    gpt4o = money_sum(UsageRecord.objects.filter(upstream_model="gpt-4o"))
    assert models.index("gpt-4o<") < models.index("claude-haiku-4-5")  # the costliest first
    assert usd(gpt4o) in models
    link = html.unescape(re.search(r'claude-haiku-4-5</a></td><td>anthropic</td><td><a href="([^"]+)"', models)[1])
    assert parse_qs(urlsplit(link).query)["upstream_model"] == ["claude-haiku-4-5"]
    assert records_total(staff, link) == "1"

    latency = section(page, "latency")
    # One Anthropic answer: p50 and p95 are both the upper bound of the bucket its latency fell in.
    latency_ms = UsageRecord.objects.get(provider="anthropic").latency_ms
    bound = next(bound for bound in LATENCY_BUCKETS_MS if latency_ms <= bound)
    assert f'<td>anthropic</td><td><a href="{html.escape(records_link_for(provider="anthropic"))}' in latency
    row = re.search(r"<td>anthropic</td>.*?</tr>", latency, re.S)[0]
    assert f"<td>≤ {bound:,} ms / ≤ {bound:,} ms</td>" in re.sub(r"</?span[^>]*>", "", row)
    assert "exact to the bucket" in latency and "all users" in latency


def test_names_in_the_tables_narrow_the_dashboard(staff, data):
    since = str(timezone.now().astimezone(UTC).date() - timedelta(days=3))
    page = staff.get(URL, {"date_from": since, "split": "model"}).content.decode()
    narrow = html.unescape(re.search(r'<a class="dash-filter" href="([^"]+)"[^>]*>alice</a>', page)[1])
    assert parse_qs(urlsplit(narrow).query) == {"date_from": [since], "split": ["model"], "user": ["alice"]}
    page = staff.get(URL + narrow).content.decode()
    assert figure(page, "requests") == "5" and f'value="{since}"' in page
    narrow = html.unescape(re.search(r'<a class="dash-filter" href="([^"]+)"[^>]*>gpt-4o-mini</a>', page)[1])
    assert figure(staff.get(URL + narrow).content.decode(), "requests") == "3"  # alice's, that model
    narrow = html.unescape(re.search(rf'<a class="dash-filter" href="([^"]+)"[^>]*>djl_{data.laptop.prefix} ', page)[1])
    assert parse_qs(urlsplit(narrow).query)["token"] == [f"djl_{data.laptop.prefix}"]
    assert figure(staff.get(URL + narrow).content.decode(), "requests") == "2"


def test_budgets_show_spend_and_reservations_against_the_budget(staff, data):
    page = staff.get(URL).content.decode()
    budgets = section(page, "budgets")
    month = timezone.now().astimezone(UTC).date().replace(day=1)
    laptop = SpendCounter.objects.get(scope="token", key=data.laptop.pk, month=month)
    row = re.search(rf'<tr data-scope="token"><td>token: djl_{data.laptop.prefix} \(laptop\).*?</tr>', budgets, re.S)[0]
    assert "$1.00" in row and usd(laptop.spent_usd) in row and "%" in row
    alice = re.search(r'<tr data-scope="user"><td>user: alice.*?</tr>', budgets, re.S)[0]
    spent = SpendCounter.objects.get(scope="user", key=data.alice.pk, month=month).spent_usd
    assert spent > 0 and "$5.00" in alice and usd(spent) in alice

    SpendCounter.objects.filter(scope="token", key=data.laptop.pk, month=month).update(reserved_usd=Decimal("0.5"))
    row = re.search(
        rf"djl_{data.laptop.prefix} \(laptop\).*?</tr>", section(staff.get(URL).content.decode(), "budgets"), re.S
    )[0]
    assert "$0.50" in row  # reserved by a request in flight
    assert f"{int((laptop.spent_usd + Decimal('0.5')) * 100)}%" in row


def test_filters_narrow_every_figure_and_every_link(staff, data):
    page = staff.get(URL, {"user": "alice", "model": "gpt-4o-mini"}).content.decode()
    records = UsageRecord.objects.filter(user=data.alice, upstream_model="gpt-4o-mini")
    assert figure(page, "requests") == str(records.count()) == "3"
    assert figure(page, "cost") == usd(money_sum(records))
    link = figure_link(page, "requests")
    query = parse_qs(urlsplit(link).query)
    assert query["user__id__exact"] == [str(data.alice.pk)] and query["upstream_model"] == ["gpt-4o-mini"]
    assert records_total(staff, link) == "3"
    latency = section(page, "latency")
    assert "Counted from the usage records matching the filter" in latency
    answered = records.filter(status="ok").count()
    assert answered == 1 and re.search(rf"<td>openai</td><td><a [^>]+>{answered}</a></td>", latency)

    page = staff.get(URL, {"token": f"djl_{data.bobs.prefix}"}).content.decode()
    assert figure(page, "requests") == "2"
    assert parse_qs(urlsplit(figure_link(page, "requests")).query)["token__id__exact"] == [str(data.bobs.pk)]
    assert "alice" not in section(page, "top-users")

    # A range before any request: nothing, and the range is what the form shows.
    today = timezone.now().astimezone(UTC).date()
    page = staff.get(URL, {"date_from": "2020-01-01", "date_to": "2020-01-31"}).content.decode()
    assert figure(page, "requests") == "0" and figure(page, "cost") == "$0"
    assert 'value="2020-01-01"' in page and str(today) not in section(page, "top-models")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"date_from": "2026-02-30"}, "From: enter a date as YYYY-MM-DD"),
        ({"date_to": "yesterday"}, "To: enter a date as YYYY-MM-DD"),
        ({"date_from": "2026-05-02", "date_to": "2026-05-01"}, "is after the end date"),
        ({"date_from": "2000-01-01", "date_to": "2026-01-01"}, "At most 400 days at once"),
        ({"user": "nobody"}, "User: No user &#x27;nobody&#x27;."),
        ({"token": "djl_nope"}, "Token: No token &#x27;djl_nope&#x27;."),
        ({"split": "<svg>"}, "Cost by: Select a valid choice."),
        ({"model": "x" * 500}, "Model: Ensure this value has at most 100 characters"),
    ],
)
def test_bad_filters_get_a_clear_message_not_an_error(staff, query, message):
    response = staff.get(URL, query)
    assert response.status_code == 400
    page = response.content.decode()
    assert message in section(page.replace("</ul>", "</section>", 1), "dashboard-errors")
    assert 'id="dashboard-filters"' in page and 'class="chart' not in page and "data-figure" not in page


def test_only_staff_open_the_admin_dashboard_and_the_admin_links_to_it(staff, db):
    account_services.user_create(username="carol", password="carol-pw-for-tests-1")
    client = Client()
    assert client.get(URL).status_code == 302
    client.login(username="carol", password="carol-pw-for-tests-1")
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    index = staff.get("/admin/").content.decode()
    assert 'href="/admin/dashboard/"' in section(index.replace("</table>", "</section>", 1), "dashboard-link")
    assert 'id="dashboard-nav-link"' in staff.get("/admin/llm/usagerecord/").content.decode()


def test_hostile_model_names_are_escaped_in_charts_legend_and_tables(staff, data):
    response = staff.get(URL, {"split": "model"})
    page = response.content.decode()
    assert "<script>alert(1)" not in page
    escaped = html.escape(HOSTILE_MODEL)
    chart = page[page.index('id="chart-cost"') : page.index("</figure>", page.index('id="chart-cost"'))]
    assert f"· {escaped}: $" in chart  # the tooltip of its bar
    assert f"{escaped}</li>" in chart  # the legend
    assert escaped in section(page, "top-models")


def test_account_page_shows_the_users_own_figures_only(data):
    client = Client()
    client.login(username="alice", password="alice-pw-for-tests-1")
    page = client.get("/account/").content.decode()
    dashboard = page[page.index('id="dashboard"') :]
    alice = UsageRecord.objects.filter(user=data.alice)
    assert figure(dashboard, "requests") == str(alice.count()) == "5"
    assert figure(dashboard, "cost") == usd(money_sum(alice))
    assert "gpt-3.5-turbo" not in dashboard and "bob" not in dashboard and "alert(1)" not in dashboard
    assert "/admin/" not in dashboard  # no links a user cannot open
    assert 'id="top-users"' not in dashboard
    budgets = section(dashboard, "budgets")
    assert f"djl_{data.laptop.prefix} (laptop)" in budgets and "$1.00" in budgets

    page = client.get("/account/", {"token": f"djl_{data.laptop.prefix}"}).content.decode()
    assert figure(page[page.index('id="dashboard"') :], "requests") == "2"
    # Another user's token is not there to filter by: a message, no figures.
    page = client.get("/account/", {"token": f"djl_{data.bobs.prefix}"}).content.decode()
    assert f"No token &#x27;djl_{data.bobs.prefix}&#x27; among yours." in page
    assert 'data-figure="requests"' not in page
    # The user filter is not offered; a `user` parameter changes nothing.
    page = client.get("/account/", {"user": "bob"}).content.decode()
    assert figure(page[page.index('id="dashboard"') :], "requests") == "5"


def test_the_unfiltered_dashboard_reads_the_rollups_not_the_usage_records(staff, data):
    with CaptureQueriesContext(connection) as queries:
        assert staff.get(URL, {"split": "model"}).status_code == 200
    tables = " ".join(query["sql"] for query in queries.captured_queries)
    assert "llm_usagedaily" in tables and "llm_usagelatencydaily" in tables
    assert "llm_usagerecord" not in tables
    # Two GROUP BYs over the rollup rows of the range, whatever the number of users, tokens and models.
    assert sum(sql["sql"].count('FROM "llm_usagedaily"') for sql in queries.captured_queries) == 2


def test_cost_by_model_keeps_the_eight_costliest_and_sums_the_rest_as_other(staff, gateway_settings, prices, data):
    _, key = account_services.api_token_create(user=data.bob, name="many")
    for index in range(6):  # 6 more models (with those of `data`, 11 in all)
        gateway_settings.configure(usage=FakeUsage(input_tokens=10, output_tokens=10))
        assert chat(key, f"gpt-extra-{index}", "hi").status_code == 200
    page = staff.get(URL, {"split": "model"}).content.decode()
    chart = page[page.index('id="chart-cost"') : page.index("</figure>", page.index('id="chart-cost"'))]
    legend = re.findall(r"</span>([^<]*)</li>", chart)
    assert len(legend) == 9 and legend[-1] == "other"
    assert legend[:3] == ["gpt-4o", "claude-haiku-4-5", "gpt-4o-mini"]  # the costliest first


def test_a_model_no_upstream_answered_links_to_the_records_that_asked_for_it(staff, data):
    _, key = account_services.api_token_create(user=data.bob, name="typo")
    assert chat(key, "mystery-model", "hi").status_code == 400
    record = UsageRecord.objects.get(requested_model="mystery-model")
    assert (record.status, record.provider, record.upstream_model) == ("client_error", "", "")

    models = section(staff.get(URL).content.decode(), "top-models")
    link = html.unescape(re.search(r'mystery-model</a></td><td>—</td><td><a href="([^"]+)"', models)[1])
    query = parse_qs(urlsplit(link).query, keep_blank_values=True)
    assert query["requested_model"] == ["mystery-model"] and query["upstream_model__exact"] == [""]
    assert records_total(staff, link) == "1"


def test_filtered_latency_reads_at_most_the_latest_records_and_says_so(staff, data, monkeypatch):
    monkeypatch.setattr("llm.dashboard.LATENCY_SAMPLE", 2)
    latency = section(staff.get(URL, {"user": "alice"}).content.decode(), "latency")
    answered = [int(n) for n in re.findall(r"<td><a [^>]+>(\d+)</a></td>", latency)]
    assert sum(answered) == 2 and UsageRecord.objects.filter(user=data.alice, status="ok").count() == 3
    assert "Counted from the latest 2 answered requests matching the filter (there are more)." in latency


@pytest.mark.django_db(transaction=True)
def test_streamed_requests_give_time_to_first_token_percentiles(staff, gateway_settings, prices, settings):
    from tests.live import close_server_thread_connections

    settings.DB_THREAD_ENABLED = True
    user = account_services.user_create(username="streamer")
    _, key = account_services.api_token_create(user=user, name="sse")
    try:
        response = chat(key, "gpt-4o-mini", "stream it", stream=True)
        assert response.status_code == 200
        b"".join(response.streaming_content)
    finally:
        close_server_thread_connections()
    record = UsageRecord.objects.get(stream=True)
    assert record.status == "ok" and record.time_to_first_token_ms is not None
    bound = next(bound for bound in LATENCY_BUCKETS_MS if record.time_to_first_token_ms <= bound)
    for query in ({}, {"user": "streamer"}):  # the rollup, and the records of one user
        row = re.search(r"<td>openai</td>.*?</tr>", section(staff.get(URL, query).content.decode(), "latency"), re.S)
        cells = re.findall(r"<td>(.*?)</td>", re.sub(r"</?(span|a)[^>]*>", "", row[0]))
        assert cells[3] == "1" and cells[4] == f"≤ {bound:,} ms / ≤ {bound:,} ms", (query, cells)
