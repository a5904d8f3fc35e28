"""`/api/v1/usage/records`: the caller's usage records, through DRF's test client and over real HTTP (httpx):
scope, isolation between users, cursor pages, every filter, the CSV download, and bad filter values."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts import services as account_services
from llm.models import UsageRecord, UsageStatus
from tests.api_clients import with_query
from tests.factories import UserFactory

URL = "/api/v1/usage/records"


def record(user, token=None, *, at="2025-03-10T12:00:00Z", **fields) -> UsageRecord:
    values = {
        "request_id": f"req-{UsageRecord.objects.count() + 1}",
        "endpoint": "chat",
        "provider": "openai",
        "requested_model": "gpt-4o-mini",
        "upstream_model": "gpt-4o-mini",
        "status": UsageStatus.OK,
        "http_status": 200,
        "input_tokens": 10,
        "output_tokens": 2,
        "cost_usd": Decimal("0.000021"),
        **fields,
    }
    return UsageRecord.objects.create(
        user=user, token=token, created_at=datetime.fromisoformat(at.replace("Z", "+00:00")), **values
    )


@pytest.fixture
def alice(user, token):
    """Alice (the caller, timezone UTC) with two tokens, and Bob with his own token and records."""
    user.preferences.timezone = "UTC"
    user.preferences.save()
    excel, _ = account_services.api_token_create(user=user, name="excel", scopes=["llm"])
    bob = UserFactory(username="bob")
    bob_token, bob_plaintext = account_services.api_token_create(user=bob, name="bob", scopes=["llm"])
    return {
        "plaintext": token[1],
        "token": token[0],
        "excel": excel,
        "bob": bob,
        "bob_token": bob_token,
        "bob_plaintext": bob_plaintext,
        "bob_record": record(bob, bob_token, request_id="bob-secret-request"),
    }


def ids(answer) -> list[int]:
    assert answer.status == 200, answer.text
    return [row["id"] for row in answer.body["results"]]


def assert_invalid(answer, field: str) -> None:
    assert answer.status == 400, answer.text
    error = answer.body["error"]
    assert error["code"] == "invalid_request" and error["message"] and error["request_id"]
    assert field in error["details"], error


def test_a_record_as_the_user_sees_it(call, alice, user):
    mine = record(
        user,
        alice["token"],
        request_id="req-mine",
        cached_input_tokens=4,
        reasoning_tokens=1,
        latency_ms=120,
        time_to_first_token_ms=40,
        attempts=2,
        batch_id="b1",
        priced=True,
        usage_estimated=True,
    )
    answer = call("GET", URL, alice["plaintext"])
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    body = answer.body
    assert [row["request_id"] for row in body["results"]] == ["req-mine"]  # Bob's record is not among them
    row = body["results"][0]
    assert row["id"] == mine.pk and row["token"] == f"djl_{alice['token'].prefix}"
    assert (row["endpoint"], row["provider"], row["model"], row["status"]) == ("chat", "openai", "gpt-4o-mini", "ok")
    assert (row["input_tokens"], row["output_tokens"], row["cached_input_tokens"], row["reasoning_tokens"]) == (
        10,
        2,
        4,
        1,
    )
    assert row["cost_usd"] == "0.000021" and row["priced"] is True and row["usage_estimated"] is True
    assert (row["latency_ms"], row["time_to_first_token_ms"], row["attempts"], row["batch_id"]) == (120, 40, 2, "b1")
    assert (
        row["cached"] is False
        and (row["error_code"], row["error_message"]) == ("", "")
        and row["created_at"].startswith("2025-03-10T12:00:00")
    )
    assert "digest" not in answer.text and alice["plaintext"] not in answer.text
    assert body["next"] is None

    detail = call("GET", f"{URL}/{mine.pk}", alice["plaintext"])
    assert detail.status == 200 and detail.body == row


def test_another_users_record_is_not_found_and_never_listed(call, alice):
    bob_id = alice["bob_record"].pk
    answer = call("GET", f"{URL}/{bob_id}", alice["plaintext"])
    assert answer.status == 404 and answer.body["error"]["code"] == "not_found"
    assert "bob-secret-request" not in answer.text
    assert ids(call("GET", URL, alice["plaintext"])) == []
    # Bob's token, named by id or prefix, selects nothing of Alice's and shows nothing of Bob's.
    for value in (str(alice["bob_token"].pk), alice["bob_token"].prefix, f"djl_{alice['bob_token'].prefix}"):
        assert ids(call("GET", with_query(URL, {"token": value}), alice["plaintext"])) == []
    csv_answer = call("GET", with_query(URL, {"format": "csv"}), alice["plaintext"])
    assert csv_answer.status == 200 and "bob-secret-request" not in csv_answer.text
    # Bob sees his own.
    assert ids(call("GET", URL, alice["bob_plaintext"])) == [bob_id]


def test_the_llm_scope_is_needed(call, alice, user):
    _, calendar_only = account_services.api_token_create(user=user, name="cal", scopes=["calendar"])
    record(user, alice["token"])
    for path in (URL, f"{URL}/1", f"{URL}?format=csv"):
        answer = call("GET", path, calendar_only)
        assert answer.status == 403, (path, answer.text)
        assert answer.body["error"]["code"] == "insufficient_scope"
    assert call("GET", URL, "djl_nope_nope").status == 401


def test_cursor_pages_newest_first_by_id_without_duplicates(call, alice, user):
    # Created out of time order: pages follow the id, newest (highest) first.
    made = [record(user, alice["token"], at=f"2025-03-{10 - i % 3:02d}T12:00:00Z").pk for i in range(7)]
    seen: list[int] = []
    answer = call("GET", with_query(URL, {"limit": 3}), alice["plaintext"])
    pages = 0
    while True:
        page = ids(answer)
        assert len(page) <= 3
        seen += page
        pages += 1
        if answer.body["next"] is None:
            break
        answer = call("GET", answer.body["next"], alice["plaintext"])
    assert pages == 3 and seen == sorted(made, reverse=True) and len(set(seen)) == 7


def test_every_filter(call, alice, user):
    t, excel = alice["token"], alice["excel"]
    a = record(user, t, at="2025-03-01T00:30:00Z")
    b = record(user, t, at="2025-03-02T10:00:00Z", requested_model="fast", upstream_model="claude-3-5-haiku")
    c = record(user, excel, at="2025-03-03T23:59:00Z", provider="anthropic", upstream_model="claude-3-5-haiku")
    d = record(user, excel, at="2025-03-04T08:00:00Z", status=UsageStatus.CACHED, endpoint="webhook")
    e = record(user, t, at="2025-03-05T08:00:00Z", status=UsageStatus.UPSTREAM_ERROR, batch_id="job_1", http_status=502)

    def only(**params) -> list[int]:
        return ids(call("GET", with_query(URL, params), alice["plaintext"]))

    assert only() == [e.pk, d.pk, c.pk, b.pk, a.pk]
    assert only(**{"from": "2025-03-02"}) == [e.pk, d.pk, c.pk, b.pk]
    assert only(to="2025-03-03") == [c.pk, b.pk, a.pk]  # a date `to` takes in its whole day
    assert only(**{"from": "2025-03-02T10:00:00Z", "to": "2025-03-04T07:59:59Z"}) == [c.pk, b.pk]
    assert only(**{"from": "2025-03-02T11:00:00+01:00"}) == [e.pk, d.pk, c.pk, b.pk]  # 10:00 UTC, included
    assert only(**{"from": "2025-03-05", "to": "2025-03-01"}) == []
    assert only(model="claude-3-5-haiku") == [c.pk, b.pk]
    assert only(model="fast") == [b.pk]  # the model asked for counts too
    assert only(provider="anthropic") == [c.pk]
    assert only(status="cached") == [d.pk]
    assert only(status="upstream_error") == [e.pk]
    assert only(token=str(excel.pk)) == [d.pk, c.pk]
    assert only(token=excel.prefix) == [d.pk, c.pk]
    assert only(token=f"djl_{t.prefix}") == [e.pk, b.pk, a.pk]
    assert only(endpoint="webhook") == [d.pk]
    assert only(batch_id="job_1") == [e.pk]
    assert only(cached="true") == [d.pk]
    assert only(cached="false") == [e.pk, c.pk, b.pk, a.pk]
    assert only(provider="openai", cached="false", to="2025-03-02") == [b.pk, a.pk]


def test_dates_are_days_in_the_callers_timezone(call, alice, user):
    user.preferences.timezone = "Asia/Tokyo"  # UTC+9
    user.preferences.save()
    late = record(user, alice["token"], at="2025-03-01T20:00:00Z")  # 2 March in Tokyo
    early = record(user, alice["token"], at="2025-03-01T10:00:00Z")  # 1 March in Tokyo
    assert ids(call("GET", with_query(URL, {"from": "2025-03-02"}), alice["plaintext"])) == [late.pk]
    assert ids(call("GET", with_query(URL, {"to": "2025-03-01"}), alice["plaintext"])) == [early.pk]
    # A date-time without an offset is in the caller's timezone too: 2025-03-01T19:00 Tokyo is 10:00 UTC.
    assert ids(call("GET", with_query(URL, {"to": "2025-03-01T19:00:00"}), alice["plaintext"])) == [early.pk]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from", "yesterday"),
        ("from", "2025-02-30"),
        ("to", "2025-03-01T25:00:00"),
        ("to", "9999-12-31"),
        ("from", "0001-01-01"),
        ("status", "fine"),
        ("cached", "maybe"),
        ("model", "m" * 101),
        ("token", "t" * 41),
        ("batch_id", "b" * 65),
        ("limit", "0"),
        ("limit", "501"),
        ("limit", "null"),
    ],
)
def test_bad_filter_values_are_400s_in_the_error_shape(call, alice, field, value):
    assert_invalid(call("GET", with_query(URL, {field: value}), alice["plaintext"]), field)
    if field == "limit":
        return  # a page size; the CSV is the whole set
    # A CSV download asked with a bad filter gets the same JSON error, not a CSV file.
    answer = call("GET", with_query(URL, {field: value, "format": "csv"}), alice["plaintext"])
    assert_invalid(answer, field)
    assert answer.headers["content-type"] == "application/json"


def test_other_bad_input(call, alice):
    assert call("GET", with_query(URL, {"cursor": "garbage"}), alice["plaintext"]).status == 404
    for path in (f"{URL}/99999999999999999999999", f"{URL}/abc"):
        answer = call("GET", path, alice["plaintext"])
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found"
    assert call("GET", with_query(URL, {"format": "xml"}), alice["plaintext"]).status == 404
    assert call("POST", URL, alice["plaintext"], {}).status == 405


def test_csv_is_every_filtered_record_formula_safe(call, alice, user, settings):
    # More records than a page holds (50): the download is the whole filtered set, not a page of it.
    UsageRecord.objects.bulk_create(
        UsageRecord(
            user=user,
            token=alice["token"],
            request_id=f"bulk-{i}",
            endpoint="chat",
            provider="openai",
            upstream_model="gpt-4o-mini",
            status=UsageStatus.OK,
            http_status=200,
            cost_usd=Decimal("0.000021"),
            created_at=datetime(2025, 3, 10, 12, tzinfo=UTC),
        )
        for i in range(61)
    )
    evil = record(user, alice["token"], request_id="=cmd()", upstream_model="@SUM(A1)", requested_model="+1")
    record(user, alice["token"], provider="anthropic")  # filtered out below

    answer = call("GET", with_query(URL, {"format": "csv", "provider": "openai"}), alice["plaintext"])
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith('attachment; filename="djllm-usage-records-')
    assert answer.text.startswith("\ufeff")  # Excel reads it as UTF-8
    table = list(csv.DictReader(io.StringIO(answer.text.removeprefix("\ufeff"))))
    assert list(table[0]) == list(call("GET", URL, alice["plaintext"]).body["results"][0])  # the JSON's fields
    assert len(table) == 62 and len({row["id"] for row in table}) == 62
    assert [int(row["id"]) for row in table] == sorted((int(row["id"]) for row in table), reverse=True)
    first = table[0]
    assert int(first["id"]) == evil.pk
    assert (first["request_id"], first["model"], first["requested_model"]) == ("'=cmd()", "'@SUM(A1)", "'+1")
    assert first["token"] == f"djl_{alice['token'].prefix}" and first["cost_usd"] == "0.000021"
    assert first["cached"] == "false" and first["time_to_first_token_ms"] == ""
    # Filters apply to the download as to the pages.
    cached_only = call("GET", with_query(URL, {"format": "csv", "status": "cached"}), alice["plaintext"])
    assert cached_only.text.removeprefix("\ufeff").count("\n") == 1  # the header alone
    # `Accept: text/csv` is not needed: `?format=csv` picks the file; no format is JSON.
    assert call("GET", with_query(URL, {"limit": 5}), alice["plaintext"]).headers["content-type"] == "application/json"
