"""The default cache's backend, one per process, for the hot path.

Django keeps cache backends per async context (`caches` is an asgiref `Local`): under ASGI each request is a task
with a context of its own, and a call sent to a thread pool (`sync_to_async`) sees none of its caller's. So
`django.core.cache.cache` builds a new backend for every request, and again on every such hop: for Redis a new
client with a connection pool of its own, hence a new connection to Redis each time (measured: ~1 ms a `get` from a
fresh context against ~0.5 ms on a kept connection). The response cache and the rate limiter use this one instead.

Only backends that are safe to share between threads are shared: the local-memory one (its instances share their
store by LOCATION anyway, behind a lock) and Redis (redis-py's connection pool is thread-safe). Any other backend is
Django's per-context one, as before. A change of CACHES (tests' `override_settings`) makes Django build new settings,
and a new backend is built here too.
"""

import os
import threading

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches

_SHAREABLE = ("django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.redis.RedisCache")
_lock = threading.Lock()
_shared: tuple[object, int, BaseCache | None] | None = None  # (Django's CACHES settings, pid, backend or None)


def default_cache() -> BaseCache:
    """The `default` cache's backend: this process's one where it can be shared, Django's per-context one if not."""
    config = caches.settings
    shared = _shared
    if shared is None or shared[0] is not config or shared[1] != os.getpid():
        shared = _build(config)
    return shared[2] if shared[2] is not None else caches[DEFAULT_CACHE_ALIAS]


def _build(config) -> tuple[object, int, BaseCache | None]:
    global _shared
    with _lock:
        shared = _shared
        if shared is None or shared[0] is not config or shared[1] != os.getpid():
            backend = None
            if config[DEFAULT_CACHE_ALIAS]["BACKEND"] in _SHAREABLE:
                backend = caches.create_connection(DEFAULT_CACHE_ALIAS)
            shared = _shared = (config, os.getpid(), backend)
        return shared
