"""Per-process copies of the admin-edited tables: one read when stale, however many requests are waiting, and an
admin change made during a read is never hidden by that read."""

import asyncio
from decimal import Decimal

import pytest

from common.process_copy import ProcessCopy
from llm import pricing
from llm.models import ModelPrice


async def test_requests_arriving_while_the_copy_is_stale_share_one_read():
    reads: list[int] = []

    def load():
        reads.append(1)
        return {"rows": len(reads)}

    copy = ProcessCopy(load, seconds=60, empty={})
    assert await asyncio.gather(*(copy.aget() for _ in range(100))) == [{"rows": 1}] * 100
    assert await copy.aget() == {"rows": 1} and len(reads) == 1  # fresh: no read at all
    copy.changed()
    assert await asyncio.gather(*(copy.aget() for _ in range(10))) == [{"rows": 2}] * 10
    assert len(reads) == 2


async def test_a_change_during_a_read_makes_the_next_request_read_again():
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    versions = iter(["old", "new"])

    def load():
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
        return next(versions)

    copy = ProcessCopy(load, seconds=60, empty="")
    reading = asyncio.ensure_future(copy.aget())
    await started.wait()
    copy.changed()  # an admin saved while the old rows were being read
    release.set()
    assert await reading == "old"
    assert await copy.aget() == "new"


@pytest.mark.django_db(transaction=True)
async def test_prices_are_read_once_by_concurrent_requests(monkeypatch):
    reads: list[int] = []
    original = pricing._prices._load

    def counted():
        reads.append(1)
        return original()

    monkeypatch.setattr(pricing._prices, "_load", counted)
    await ModelPrice.objects.acreate(
        provider="openai",
        model="gpt-test-copy",
        input_per_mtok=Decimal("0.42"),
        output_per_mtok=Decimal("1.10"),
        effective_from="2025-01-01",
    )
    pricing.prices_changed()
    results = await asyncio.gather(*(pricing.aprice_for("openai", "gpt-test-copy") for _ in range(50)))
    pricing.prices_changed()
    assert len(reads) == 1
    assert {(r.input, r.output) for r in results} == {(Decimal("0.42"), Decimal("1.10"))}
