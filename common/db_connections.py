"""Database connections that heal by themselves, on every thread that keeps one.

Django closes a broken or obsolete connection when a request starts and ends (`close_old_connections`, on the
request's own thread). Some threads never see those signals, yet keep a connection for the life of the process:

- asgiref's shared thread for sync calls, where the lean API stack (common/asgi.py) runs its sync work (the
  token's last-used stamp, the health and readiness views, DRF views on the fast paths);
- the hot path's database thread (common/db_thread.py, which reconnects once by itself).

After a PostgreSQL restart such a connection is dead, and without help it stays dead until the worker restarts.
Here, before each call on the shared thread (and when each request starts, for WSGI's persistent connections),
a connection is dropped if it is known to be unusable — an error occurred on it — or if the server has hung up on
it: an idle PostgreSQL connection whose socket is readable has been sent the server's goodbye (a restart, or
`pg_terminate_backend`). That check is a zero-timeout `poll()` of the socket, not a query: no round trip.
The next query then opens a new connection, so the first request after the database is back succeeds.

While the database is unreachable, `OperationalError`/`InterfaceError` become 503 `database_unavailable` with
`Retry-After` (common/exceptions.py, common/middleware.py).
"""

import logging
import select
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

# What Django raises when the database cannot be reached or the connection broke.
DB_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def _server_hung_up(conn) -> bool:
    """True when an idle PostgreSQL connection has data waiting: the server closed it (or is about to)."""
    if conn.vendor != "postgresql":
        return False
    raw = conn.connection
    try:
        if getattr(raw, "closed", False) or getattr(raw, "broken", False):
            return True
        # poll(), not select(): a busy worker has more than select()'s 1024 file descriptors.
        poller = select.poll()
        poller.register(raw.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except Exception:  # a socket that cannot even be asked is gone
        return True


def close_dropped_connections(*, force: bool = False) -> int:
    """Close this thread's connections that are known broken, or that the server hung up on (`force`: every
    connection not inside a transaction). Returns how many were closed. Never touches a connection inside an
    atomic block: its transaction is the caller's to finish."""
    closed = 0
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:
            continue
        if force or conn.errors_occurred or _server_hung_up(conn):
            try:
                conn.close()
            except DatabaseError:
                conn.connection = None
            closed += 1
    if closed:
        logger.info("Closed %d dropped database connection(s); the next query reconnects.", closed)
    return closed


def close_dropped_on_request_started(**kwargs) -> None:
    close_dropped_connections()


class _HealingExecutor(ThreadPoolExecutor):
    """asgiref's single shared thread for sync calls, dropping dead connections before each call."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(_heal_then_call, fn, *args, **kwargs)


def _heal_then_call(fn, *args, **kwargs):
    close_dropped_connections()
    return fn(*args, **kwargs)


def install() -> None:
    """Called once from CommonConfig.ready()."""
    from asgiref.sync import SyncToAsync
    from django.core.signals import request_started

    if not isinstance(SyncToAsync.single_thread_executor, _HealingExecutor):
        SyncToAsync.single_thread_executor = _HealingExecutor(max_workers=1, thread_name_prefix="djllm-sync")
    request_started.connect(close_dropped_on_request_started, dispatch_uid="djllm.close_dropped_connections")
