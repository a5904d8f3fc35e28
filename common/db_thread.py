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
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own busy wait alone there
    fcntl = None

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connections

from common.db_connections import close_dropped_connections

logger = logging.getLogger(__name__)

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


_turn_fd: int | None = None
_turn_pid: int | None = None


def _sqlite_turn_fd() -> int | None:
    """This process's handle on the SQLite file's writer lock file (`<database>-writer.lock`, beside SQLite's own
    `-wal` and `-shm`); None when the database is not a SQLite file or the file cannot be opened."""
    global _turn_fd, _turn_pid
    if _turn_pid == os.getpid():
        return _turn_fd
    fd = None
    conn = connections["default"]
    name = str(conn.settings_dict.get("NAME") or "")
    if fcntl is not None and conn.vendor == "sqlite" and name and not conn.is_in_memory_db():
        try:
            fd = os.open(f"{name}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            logger.warning("SQLite writer lock file not usable (%s): writers wait in SQLite's busy handler", error)
    _turn_fd, _turn_pid = fd, os.getpid()
    return fd


@contextmanager
def sqlite_write_turn():
    """On a SQLite file: wait for this machine's other processes' hot-path writes to end, in the kernel, before
    writing. SQLite's own wait for its write lock (busy_timeout) sleeps 1, 2, 5, ... up to 100 ms between tries, so
    a process that keeps writing (another worker's busy recorder) can keep a waiting one out for hundreds of ms; a
    `flock` waiter is woken as soon as the lock is let go. Other databases: nothing to do.

    It orders processes, not the threads of one process: they share one open file description, which `flock`
    treats as one holder. In a server only the process's database thread writes through it."""
    fd = _sqlite_turn_fd()
    if fd is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def in_sqlite_write_turn(fn):
    """`fn`, run in the SQLite file's write turn (`sqlite_write_turn`): for the hot path's writes."""

    @functools.wraps(fn)
    def in_turn(*args, **kwargs):
        with sqlite_write_turn():
            return fn(*args, **kwargs)

    return in_turn


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
