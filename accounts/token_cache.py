"""Per-process cache of token lookups.

Each worker trusts a looked-up token for at most `API_TOKEN_LOCAL_CACHE_SECONDS` (default 0.5 s) and then asks
the database again, so a revocation made by any process is seen by every process within that time, with no
cross-process invalidation to get wrong. At steady load this is one indexed query per token per interval per
worker. A revocation made in this process is forgotten at once.
"""

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from accounts.models import APIToken, UserPreferences
from common.aio import single_flight
from common.db_thread import run_in_db_thread

_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedToken:
    token: APIToken  # with .user and .user.preferences loaded (None attribute when no preferences row)
    preferences: UserPreferences | None


_entries: dict[str, tuple[float, CachedToken | None]] = {}
# token id -> monotonic time this process last stamped `last_used_at`
last_marked: dict[int, float] = {}
_lock = threading.Lock()


def _ttl() -> float:
    return float(getattr(settings, "API_TOKEN_LOCAL_CACHE_SECONDS", 0.5))


def _load(prefix: str) -> CachedToken | None:
    token = APIToken.objects.select_related("user", "user__preferences").filter(prefix=prefix).first()
    return _wrap(token)


async def _arefresh(prefix: str) -> CachedToken | None:
    # On the process's database thread: its connection is kept open, where a request thread opens one per request.
    value = await run_in_db_thread(_load, prefix)
    _store(prefix, value)
    return value


def _wrap(token: APIToken | None) -> CachedToken | None:
    if token is None:
        return None
    try:
        preferences = token.user.preferences
    except UserPreferences.DoesNotExist:
        preferences = None
    return CachedToken(token=token, preferences=preferences)


def _fresh(prefix: str) -> tuple[bool, CachedToken | None]:
    entry = _entries.get(prefix)
    if entry is not None and time.monotonic() - entry[0] < _ttl():
        return True, entry[1]
    return False, None


def _store(prefix: str, value: CachedToken | None) -> None:
    with _lock:
        if len(_entries) >= _MAX_ENTRIES:
            _entries.clear()
        _entries[prefix] = (time.monotonic(), value)


def get(prefix: str) -> CachedToken | None:
    hit, value = _fresh(prefix)
    if hit:
        return value
    value = _load(prefix)
    _store(prefix, value)
    return value


async def aget(prefix: str) -> CachedToken | None:
    """A stale or missing entry is read by one request at a time; the others arriving meanwhile share that read."""
    hit, value = _fresh(prefix)
    if hit:
        return value
    return await single_flight(("token", prefix), lambda: _arefresh(prefix))


def forget(prefix: str) -> None:
    with _lock:
        _entries.pop(prefix, None)


def forget_user(user_id: int) -> None:
    with _lock:
        for prefix in [p for p, (_, v) in _entries.items() if v is not None and v.token.user_id == user_id]:
            _entries.pop(prefix, None)


def clear() -> None:
    with _lock:
        _entries.clear()
        last_marked.clear()
