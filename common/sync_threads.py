"""Slow sync work (Google's client) off the threads that other requests wait for.

Under ASGI, the lean API stack (common/asgi.py) runs every thread-sensitive `sync_to_async` call of the process on
asgiref's one shared thread: a Google call there (30 s timeout, sleeping retries) would hold up the health check,
the readiness probe and every other request's sync work behind it. Inside `own_sync_thread()`, those calls run on a
thread of the block's own instead (asgiref's `ThreadSensitiveContext`, as Django gives each request of its own
ASGI handler), and the database connections opened there are closed when the block ends, since no request signal
will close them. Where a request already has a thread of its own (WSGI, Django's ASGI handler, the test client)
that thread is used, as before.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import DatabaseError, connections


def _initialized_aliases() -> set[str]:
    return {conn.alias for conn in connections.all(initialized_only=True) if conn.connection is not None}


def _close_opened_since(before: set[str]) -> None:
    for conn in connections.all(initialized_only=True):
        if conn.alias not in before and conn.connection is not None and not conn.in_atomic_block:
            try:
                conn.close()
            except DatabaseError:
                conn.connection = None


@asynccontextmanager
async def own_sync_thread() -> AsyncIterator[None]:
    async with ThreadSensitiveContext():
        before = await sync_to_async(_initialized_aliases)()
        try:
            yield
        finally:
            await sync_to_async(_close_opened_since)(before)
