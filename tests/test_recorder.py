"""The usage recorder's group commit: records written together by the process's DB thread, all or none per
batch, with a failing record written apart so the rest of its batch still lands."""

import asyncio
import threading
from decimal import Decimal

import pytest

from common.db_thread import submit_to_db_thread
from llm.models import SpendCounter, UsageRecord
from llm.providers.base import Usage
from llm.recorder import write_usage_record
from llm.services import UsageDraft
from tests.live import close_server_thread_connections

pytestmark = pytest.mark.django_db(transaction=True)


def _draft(token, n: int, cost: str = "0.000123", **overrides) -> UsageDraft:
    fields = {
        "request_id": f"req-{n}",
        "endpoint": "chat",
        "user_id": token.user_id,
        "token_id": token.pk,
        "provider": "openai",
        "requested_model": "gpt-4o-mini",
        "upstream_model": "gpt-4o-mini",
        "usage": Usage(input_tokens=10 + n, output_tokens=5),
        "cost_usd": Decimal(cost),
        **overrides,
    }
    return UsageDraft(**fields)


@pytest.fixture
def db_thread(settings):
    settings.DB_THREAD_ENABLED = True  # as in production
    yield
    close_server_thread_connections()


async def test_concurrent_records_are_all_written_and_totals_are_exact(token, db_thread):
    row, _ = token
    await asyncio.gather(*(write_usage_record(_draft(row, n)) for n in range(120)))

    assert await UsageRecord.objects.acount() == 120
    assert {r async for r in UsageRecord.objects.values_list("request_id", flat=True)} == {
        f"req-{n}" for n in range(120)
    }
    stored = await UsageRecord.objects.aget(request_id="req-7")
    assert (stored.input_tokens, stored.output_tokens, stored.cost_usd) == (17, 5, Decimal("0.000123"))
    for scope, key in (("token", row.pk), ("user", row.user_id)):
        counter = await SpendCounter.objects.aget(scope=scope, key=key)
        assert counter.spent_usd == Decimal("0.000123") * 120  # 0.014760: summed in Decimal, not floats


async def test_a_record_the_database_refuses_does_not_take_its_batch_down(token, db_thread, monkeypatch):
    from llm import recorder

    row, _ = token
    batches: list[list[str]] = []
    original = recorder.usage_records_create

    def noted(*, drafts):
        batches.append([d.request_id for d in drafts])
        return original(drafts=drafts)

    monkeypatch.setattr(recorder, "usage_records_create", noted)
    drafts = [_draft(row, n) for n in range(30)]
    drafts[11] = _draft(row, 11, token_id=row.pk + 10_000)  # no such token: the foreign key fails at commit
    # Keep the DB thread busy until all 30 are queued, so they form one batch whatever the machine's timing.
    release = threading.Event()
    submit_to_db_thread(release.wait, 10)
    writes = asyncio.gather(*(write_usage_record(d) for d in drafts), return_exceptions=True)
    await asyncio.sleep(0.01)
    release.set()
    results = await writes

    failures = [n for n, result in enumerate(results) if isinstance(result, Exception)]
    assert failures == [11]
    # It was refused inside the one batch of all 30, which was then written again record by record.
    assert batches[0] == [f"req-{n}" for n in range(30)]
    assert batches[1:] == [[f"req-{n}"] for n in range(30)]
    assert await UsageRecord.objects.acount() == 29
    assert not await UsageRecord.objects.filter(request_id="req-11").aexists()
    counter = await SpendCounter.objects.aget(scope="token", key=row.pk)
    assert counter.spent_usd == Decimal("0.000123") * 29


async def test_a_cancelled_request_still_gets_its_record(token, db_thread):
    row, _ = token
    waiting = asyncio.ensure_future(write_usage_record(_draft(row, 1)))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(write_usage_record(_draft(row, 2)), return_exceptions=True)
    for _ in range(100):  # the cancelled one was queued first, so it is written no later than the second
        if await UsageRecord.objects.acount() == 2:
            break
        await asyncio.sleep(0.05)
    assert {r async for r in UsageRecord.objects.values_list("request_id", flat=True)} == {"req-1", "req-2"}


async def test_records_are_written_after_the_database_dropped_the_kept_connection(token, db_thread):
    """A PostgreSQL restart or idle timeout kills the DB thread's kept connection: the next batch reconnects."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    from common.db_thread import run_in_db_thread

    if connection.vendor != "postgresql":
        pytest.skip("a SQLite file has no server to drop the connection (runs in the PostgreSQL pass of CI)")
    row, _ = token
    await write_usage_record(_draft(row, 1))

    def backend_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    def terminate(pid: int) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            return cursor.fetchone()[0]

    kept = await run_in_db_thread(backend_pid)
    assert await sync_to_async(terminate)(kept) is True
    await asyncio.gather(*(write_usage_record(_draft(row, n)) for n in range(2, 6)))

    assert {r async for r in UsageRecord.objects.values_list("request_id", flat=True)} == {
        f"req-{n}" for n in range(1, 6)
    }
    assert await run_in_db_thread(backend_pid) != kept  # a new connection


async def test_flush_returns_once_every_queued_record_is_written(token, db_thread):
    """Shutdown (common/shutdown.py) flushes the queue: records whose requests are gone are written before exit."""
    from llm.recorder import flush_usage_records

    row, _ = token
    release = threading.Event()
    submit_to_db_thread(release.wait, 10)  # the DB thread is busy: the records wait in the queue
    writes = [asyncio.ensure_future(write_usage_record(_draft(row, n))) for n in range(25)]
    await asyncio.sleep(0)
    for write in writes:
        write.cancel()  # their requests are gone; nobody awaits them
    flushing = asyncio.ensure_future(flush_usage_records())
    await asyncio.sleep(0.05)
    assert not flushing.done()  # still queued behind the busy thread
    release.set()
    await asyncio.wait_for(flushing, timeout=30)
    assert await UsageRecord.objects.acount() == 25


async def test_on_a_sqlite_file_a_batch_waits_for_another_process_writing(token, db_thread):
    """`make serve`'s workers take turns at the SQLite file's writer lock file, so a worker waits in the kernel for
    the other's write to end (and is woken when it does) rather than in SQLite's sleeping busy handler."""
    import fcntl
    import os

    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the writer lock file is SQLite's: PostgreSQL takes concurrent writers itself")
    row, _ = token
    # As another worker process would: its own open file description of the same lock file, locked.
    other = os.open(f"{connection.settings_dict['NAME']}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        writing = asyncio.ensure_future(write_usage_record(_draft(row, 1)))
        await asyncio.sleep(0.5)
        assert not writing.done()
        assert await UsageRecord.objects.acount() == 0
        fcntl.flock(other, fcntl.LOCK_UN)
        await asyncio.wait_for(writing, timeout=30)
    finally:
        os.close(other)
    assert [r async for r in UsageRecord.objects.values_list("request_id", flat=True)] == ["req-1"]


def test_a_record_insert_updates_no_index_that_another_already_covers():
    """Every index on the usage table is one more B-tree each record's INSERT updates. The user's and the token's
    own single-column indexes are gone (migration 0021): the composite indexes that lead with them serve every
    lookup by either, and stay."""
    from django.db import connection

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, UsageRecord._meta.db_table)
    indexed = [info["columns"] for info in constraints.values() if info["index"] and not info["primary_key"]]
    assert ["user_id"] not in indexed and ["token_id"] not in indexed, indexed
    leading = {columns[0] for columns in indexed}
    assert {"user_id", "token_id", "created_at", "request_id"} <= leading, indexed
