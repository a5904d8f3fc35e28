"""The one `Idempotency-Key` guard, from sync code (`with`, the jobs API) and async code (`async with`, the batch):
the first answer is stored and replayed, the same key with another body is a 409, and a request that fails before
its answer is stored gives the key back, so a retry runs it again."""

import asyncio

import pytest

from common.errors import Conflict, InvalidRequest
from jobs.idempotency import IdempotencyGuard, idempotency_guard
from jobs.models import IdempotencyKey

pytestmark = pytest.mark.django_db(transaction=True)  # the async guard works on a thread of its own


def guard_for(token, body, key="retry-1") -> IdempotencyGuard:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return idempotency_guard(token_id=token.pk, headers=headers, method="POST", path="/api/v1/batch", body=body)


def test_sync_guard_stores_replays_and_refuses_another_body(token):
    with guard_for(token[0], {"items": ["a"]}) as first:
        assert first.replay is None
        first.store(status_code=202, body={"id": 7})
    row = IdempotencyKey.objects.get(token=token[0], key="retry-1")
    assert (row.status_code, row.response) == (202, {"id": 7})

    with guard_for(token[0], {"items": ["a"]}) as retry:
        assert (retry.replay.status_code, retry.replay.body) == (202, {"id": 7})
    assert IdempotencyKey.objects.filter(token=token[0]).count() == 1  # the replay left the answer in place

    with pytest.raises(Conflict) as reused:
        with guard_for(token[0], {"items": ["b"]}):
            pass
    assert reused.value.code == "idempotency_key_reused" and reused.value.status == 409


def test_sync_guard_gives_the_key_back_when_the_request_fails(token):
    with pytest.raises(RuntimeError):
        with guard_for(token[0], {"items": ["a"]}):
            assert IdempotencyKey.objects.filter(key="retry-1", status_code=None).exists()  # held meanwhile
            with pytest.raises(Conflict) as in_use:
                with guard_for(token[0], {"items": ["a"]}):
                    pass
            assert in_use.value.code == "idempotency_key_in_use" and in_use.value.headers == {"Retry-After": "1"}
            raise RuntimeError("the upstream call crashed")
    assert not IdempotencyKey.objects.exists()
    with guard_for(token[0], {"items": ["a"]}) as retry:
        assert retry.replay is None  # runs again


def test_without_a_key_the_guard_does_nothing(token):
    with guard_for(token[0], {"items": ["a"]}, key=None) as guard:
        assert guard.replay is None
        guard.store(status_code=200, body={"ok": True})
    assert not IdempotencyKey.objects.exists()
    with pytest.raises(InvalidRequest) as bad:
        guard_for(token[0], {}, key="has spaces")
    assert bad.value.code == "invalid_idempotency_key"


async def test_async_guard_stores_replays_and_releases(token):
    async with guard_for(token[0], {"items": ["a"]}) as first:
        assert first.replay is None
        await first.astore(status_code=200, body={"batch_id": "b1"})
    async with guard_for(token[0], {"items": ["a"]}) as retry:
        assert (retry.replay.status_code, retry.replay.body) == (200, {"batch_id": "b1"})

    with pytest.raises(Conflict):
        async with guard_for(token[0], {"items": ["b"]}):
            pass

    with pytest.raises(RuntimeError):
        async with guard_for(token[0], {"items": ["c"]}, key="retry-2"):
            raise RuntimeError("failed as a whole")
    assert not await IdempotencyKey.objects.filter(key="retry-2").aexists()


async def test_async_guard_releases_when_the_client_hangs_up(token):
    """Cancelled mid-request (the client went away): the key is still given back, so the retry runs."""
    held = asyncio.Event()

    async def request():
        async with guard_for(token[0], {"items": ["a"]}, key="hang-up"):
            held.set()
            await asyncio.sleep(60)

    task = asyncio.ensure_future(request())
    await held.wait()
    assert await IdempotencyKey.objects.filter(key="hang-up").aexists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # the release finishes as a task of its own, shielded from the cancellation
        if not await IdempotencyKey.objects.filter(key="hang-up").aexists():
            break
        await asyncio.sleep(0.02)
    assert not await IdempotencyKey.objects.filter(key="hang-up").aexists()
