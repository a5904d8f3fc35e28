"""The usage change list's totals read the daily rollups for whole days (llm/usage_totals.py): what it shows is still
exactly the sum of the records listed, for time ranges that cut days in half, for a model some records only asked
for, for a deleted user's records, and with as many rows as the page needs, not one per record."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from freezegun import freeze_time

from llm.models import UsageDaily, UsageRecord
from llm.providers.base import Usage
from llm.services import UsageDraft, usage_record_create
from tests import test_llm_admin as base
from tests.test_llm_admin import USAGE_URL, add_record, expected_totals, shown_totals

admin_client = base.admin_client  # the fixtures, shared
records = base.records

pytestmark = pytest.mark.django_db


@pytest.fixture
def days(records):
    """Records on three consecutive days, two of them mid-day, and one that never reached a model."""
    alice = records["alice"]
    with freeze_time("2025-04-10 08:00:00", tick=True) as clock:
        add_record("d1-morning", user=alice, usage=Usage(10, 10), cost="0.01")
        clock.move_to("2025-04-10 20:00:00")
        add_record("d1-evening", user=alice, usage=Usage(20, 20), cost="0.02")
        clock.move_to("2025-04-11 12:00:00")
        add_record("d2-noon", user=alice, usage=Usage(30, 30), cost="0.03")
        clock.move_to("2025-04-12 06:00:00")
        add_record("d3-early", user=alice, usage=Usage(40, 40), cost="0.04")
        clock.move_to("2025-04-12 18:00:00")
        add_record("d3-late", user=alice, usage=Usage(50, 50), cost="0.05")
        clock.move_to("2025-04-11 13:00:00")
        # Stopped before routing: no upstream model; the rollups file it under the model asked for.
        usage_record_create(
            draft=UsageDraft(
                request_id="d2-limited", endpoint="chat", user_id=alice.pk, requested_model="gpt-4o-mini",
                status="rate_limited", http_status=429, error_code="rate_limited", cost_usd=None,
            )
        )  # fmt: skip
    return records


def totals_of(admin_client, query: str) -> dict:
    response = admin_client.get(f"{USAGE_URL}?{query}")
    assert response.status_code == 200
    return shown_totals(response.content.decode())


@pytest.mark.parametrize(
    ("query", "request_ids"),
    [
        # from the evening of day 1 to the early morning of day 3: partial days at both ends, a whole one between
        (
            "created_at__gte=2025-04-10T12:00:00%2B00:00&created_at__lt=2025-04-12T12:00:00%2B00:00",
            {"d1-evening", "d2-noon", "d2-limited", "d3-early"},
        ),
        ("created_at__gte=2025-04-11T00:00:00%2B00:00", {"d2-noon", "d2-limited", "d3-early", "d3-late"} | {"rest"}),
        ("created_at__lt=2025-04-11T12:30:00%2B00:00", {"d1-morning", "d1-evening", "d2-noon", "req-old"}),
        ("created_at__gte=2025-04-11T11:00:00%2B00:00&created_at__lt=2025-04-11T12:30:00%2B00:00", {"d2-noon"}),
        (
            "created_at__year=2025&created_at__month=4",
            {"d1-morning", "d1-evening", "d2-noon", "d2-limited", "d3-early", "d3-late"},
        ),  # fmt: skip
        (
            "upstream_model=gpt-4o-mini&created_at__year=2025&created_at__month=4",
            {"d1-morning", "d1-evening", "d2-noon", "d3-early", "d3-late"},
        ),  # fmt: skip
        ("status__exact=rate_limited", {"d2-limited"}),
        ("cached=no&created_at__year=2025&created_at__month=4&created_at__day=11", {"d2-noon", "d2-limited"}),
    ],
)
def test_totals_equal_the_listed_records(admin_client, days, query, request_ids):
    listed = UsageRecord.objects.all()
    if "rest" in request_ids:  # every record from day 2 on (the fixture's May records included)
        listed = listed.filter(created_at__gte="2025-04-11T00:00:00+00:00")
    else:
        listed = listed.filter(request_id__in=request_ids)
    assert totals_of(admin_client, query) == expected_totals(listed)


def test_whole_days_are_read_from_the_rollups(admin_client, days):
    assert UsageDaily.objects.exists()
    # Make the rollups of the whole day 11 April say something else: the totals show it, so that day was not summed
    # from the raw rows.
    UsageDaily.objects.filter(day="2025-04-11", status="ok").update(cost_usd=Decimal("7"))
    shown = totals_of(
        admin_client, "created_at__gte=2025-04-10T12:00:00%2B00:00&created_at__lt=2025-04-12T12:00:00%2B00:00"
    )
    assert shown["cost_usd"] == "7.06"  # 0.02 (evening of day 1) + 7 (day 2, from the rollups) + 0.04 (day 3)


def test_a_deleted_users_records_are_summed_from_the_raw_rows(admin_client, days):
    alice_id = days["alice"].pk
    days["alice"].delete()  # her records keep no user; the rollups keep her id
    assert totals_of(admin_client, f"user__id__exact={alice_id}")["requests"] == "0"


def test_totals_take_a_few_queries_however_many_days(admin_client, days):
    with CaptureQueriesContext(connection) as queries:
        totals_of(admin_client, "created_at__gte=2020-01-01T06:00:00%2B00:00")
    usage_queries = [q["sql"] for q in queries.captured_queries if "llm_usage" in q["sql"]]
    assert len(usage_queries) <= 8, usage_queries
