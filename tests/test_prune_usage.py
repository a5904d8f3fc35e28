"""`manage.py prune_usage --older-than 400d`: deletes only older usage records, in batches, keeps the monthly spend
totals, says how many it deleted, deletes nothing on --dry-run, and leaves one audit event per real run."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common.models import AuditEvent
from llm.models import SpendCounter, UsageRecord

pytestmark = pytest.mark.django_db


def _record(days_ago: float, user) -> UsageRecord:
    return UsageRecord.objects.create(
        created_at=timezone.now() - timedelta(days=days_ago),
        request_id=f"req-{days_ago}",
        user=user,
        endpoint="chat",
        provider="openai",
        status="success",
        http_status=200,
        cost_usd=Decimal("0.01"),
    )


@pytest.fixture
def records(user):
    old = [_record(days, user) for days in (401, 450, 800, 1200, 402)]
    recent = [_record(days, user) for days in (0, 10, 399)]
    return old, recent


def _run(*args) -> str:
    out = StringIO()
    call_command("prune_usage", *args, stdout=out)
    return out.getvalue()


def test_deletes_only_older_records_in_batches(records, user):
    old, recent = records
    counter = SpendCounter.objects.create(
        scope="user", key=user.pk, month=timezone.now().date().replace(day=1), spent_usd=Decimal("0.05")
    )
    with CaptureQueriesContext(connection) as queries:
        output = _run("--older-than", "400d", "--batch-size", "2")
    assert "Deleted 5 usage record(s) created before" in output
    assert sorted(UsageRecord.objects.values_list("pk", flat=True)) == sorted(r.pk for r in recent)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE") and "usage" in q["sql"]]
    assert len(deletes) == 3  # 2 + 2 + 1
    counter.refresh_from_db()
    assert counter.spent_usd == Decimal("0.05")
    [event] = AuditEvent.objects.filter(action="usage.pruned")
    assert (event.via, event.actor_id, event.actor_description, event.ip) == ("command", None, "command", None)
    assert event.details["deleted"] == 5 and event.details["older_than_days"] == 400
    assert _run("--older-than", "400d").startswith("Deleted 0 usage record(s)")


def test_dry_run_deletes_nothing(records):
    output = _run("--older-than", "400d", "--dry-run")
    assert output.startswith("Dry run: 5 usage record(s) created before")
    assert UsageRecord.objects.count() == 8
    assert not AuditEvent.objects.filter(action="usage.pruned").exists()


@pytest.mark.parametrize("value", ["400", "0d", "1y", "-3d", "abc"])
def test_refuses_an_age_that_is_not_days(records, value):
    with pytest.raises(CommandError, match="older-than"):
        _run("--older-than", value)
    assert UsageRecord.objects.count() == 8
