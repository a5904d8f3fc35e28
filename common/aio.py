"""Small asyncio helpers for the hot path."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

_background: set[asyncio.Task] = set()


async def run_blocking(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Run a short blocking call (cache, Redis) in the default thread pool, off the event loop, without
    queueing behind Django's single thread for sync ORM work."""
    return await sync_to_async(fn, thread_sensitive=False)(*args, **kwargs)


async def shielded(awaitable: Awaitable) -> Any:
    """Finish `awaitable` even if the caller is cancelled (a client that hangs up mid-stream): the work goes on as
    its own task, kept referenced until done."""
    task = asyncio.ensure_future(awaitable)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return await asyncio.shield(task)
