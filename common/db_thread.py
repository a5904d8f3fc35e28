"""One long-lived thread per process for the hot path's database work (usage records, budget reads).

Under ASGI, Django runs each request's sync ORM calls in a thread of that request's own, and with the default
CONN_MAX_AGE=0 it opens and closes a database connection per request: measured here at ~3.5 ms per usage record
on SQLite (the connection's PRAGMAs), against ~0.7 ms on a kept connection. This thread keeps its connection
open across requests (Django's request signals never touch it) and reconnects once if the database dropped it.

`DB_THREAD_ENABLED=False` runs the same work through `sync_to_async` instead, in the caller's request thread — the
test suite does that by default, because its per-test transaction lives on the test thread's connection.
"""

import asyncio
import functools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connections

from common.db_connections import close_dropped_connections

_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_lock = threading.Lock()


def _get_executor() -> ThreadPoolExecutor:
    global _executor, _executor_pid
    if _executor is None or _executor_pid != os.getpid():  # a forked worker gets its own thread
        with _lock:
            if _executor is None or _executor_pid != os.getpid():
                _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="djllm-db")
                _executor_pid = os.getpid()
    return _executor


def with_reconnect(fn, *args, **kwargs):
    """Call `fn` on this thread's kept connection; if the database dropped it, reconnect once and call again."""
    # A connection the server already hung up on is dropped first (no query: common/db_connections.py), so `fn`
    # does not start on it at all.
    close_dropped_connections()
    kept = any(conn.connection is not None for conn in connections.all(initialized_only=True))
    try:
        return fn(*args, **kwargs)
    except (OperationalError, InterfaceError):
        # A kept connection can go stale (server restart, idle timeout). Drop it and try once more; a real
        # failure raises again. A connection that `fn` had to open failed just now: the database is unreachable,
        # and trying again at once would only double the wait (DATABASE_CONNECT_TIMEOUT) of every queued call.
        if not kept or any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
            raise
        for conn in connections.all(initialized_only=True):
            conn.close()
        return fn(*args, **kwargs)
    except DatabaseError:
        close_old_connections()
        raise


async def run_in_db_thread(fn, *args, **kwargs):
    if not settings.DB_THREAD_ENABLED:
        return await sync_to_async(fn)(*args, **kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_get_executor(), functools.partial(with_reconnect, fn, *args, **kwargs))


def submit_to_db_thread(fn, *args, **kwargs) -> Future:
    """Queue `fn` on the thread without waiting for it (DB_THREAD_ENABLED must be on). It runs as it is: `fn`
    wraps its own queries in `with_reconnect` where a retry is safe."""
    return _get_executor().submit(fn, *args, **kwargs)


def close_db_thread_connections() -> None:
    """Close the kept connection(s) of this thread (tests call this before the test database is dropped)."""
    if _executor is not None and _executor_pid == os.getpid():
        _executor.submit(connections.close_all).result(timeout=30)
