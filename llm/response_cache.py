"""The response cache: identical requests (routed model, messages, every parameter) answer from the Django cache
(Redis when configured), so recalculating a spreadsheet costs nothing.

On by default for `temperature: 0` or with `cache: true`; `cache: false` or `Cache-Control: no-cache` bypasses it.

The key holds the route's identity (provider, base URL, and a fingerprint of the key it uses), so two routes to the
same model never share answers, and, with `RESPONSE_CACHE_SCOPE=user` (the default), the caller's user: a user
cannot learn from `cached: true` and $0 whether someone else sent the same prompt. `global` shares answers between
users (more hits, at that price in privacy).

The cache is an optimisation, never a dependency: when its backend fails (Redis down), a lookup is a miss and a
store is skipped, logged at most once a minute per process.
"""

import hashlib
import json
import logging
import time
from dataclasses import asdict
from typing import Any

import orjson
from django.conf import settings

from common.aio import run_blocking
from common.shared_cache import default_cache
from llm.providers.base import ChatRequest, Completion, Usage

logger = logging.getLogger(__name__)

SCOPES = ("user", "global")
_WARN_EVERY_SECONDS = 60.0
_last_warning = 0.0


def wanted(*, cache_flag: bool | None, temperature: float | None, no_cache_header: bool) -> bool:
    if no_cache_header or cache_flag is False or not settings.RESPONSE_CACHE_ENABLED:
        return False
    return bool(cache_flag) or temperature == 0


def key_for(*, provider: str, base_url: str | None, api_key: str, user_id: int | None, request: ChatRequest) -> str:
    """The key for `request` sent over one route, in the configured scope. The route's key enters only as a
    fingerprint; the whole payload is hashed, so nothing of the prompt or the key is readable from the cache.

    orjson writes the request's dataclasses as they are (no `asdict` copy of every message) with every dict's keys
    sorted, so the same parameters in another order give the same key."""
    payload = {
        "provider": provider,
        "base_url": base_url or "",
        "key": hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else "",
        "user": user_id if settings.RESPONSE_CACHE_SCOPE == "user" else None,
        "request": request,
    }
    try:
        encoded = orjson.dumps(payload, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # what orjson does not write (an integer beyond 64 bits in a schema, say)
        encoded = json.dumps({**payload, "request": asdict(request)}, sort_keys=True, default=str).encode()
    return f"llm:resp:{hashlib.sha256(encoded).hexdigest()}"


def _encode(completion: Completion) -> dict[str, Any]:
    return {
        "text": completion.text,
        "model": completion.model,
        "finish_reason": completion.finish_reason,
        "response_id": completion.response_id,
        "tool_calls": completion.tool_calls,
        "refusal": completion.refusal,
        "usage": asdict(completion.usage) if completion.usage else None,
        "events": completion.events,
    }


def _decode(data: dict[str, Any]) -> Completion:
    return Completion(
        text=data["text"],
        model=data["model"],
        finish_reason=data["finish_reason"],
        response_id=data["response_id"],
        tool_calls=data.get("tool_calls"),
        refusal=data.get("refusal"),
        usage=Usage(**data["usage"]) if data.get("usage") else None,
        events=data.get("events"),
    )


def _local() -> bool:
    return settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")


def _backend_failed(action: str) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY_SECONDS:
        _last_warning = now
        logger.warning("Response cache unavailable (%s failed); answering without it", action, exc_info=True)


async def get(key: str) -> Completion | None:
    try:
        cache = default_cache()
        data = cache.get(key) if _local() else await run_blocking(cache.get, key)
    except Exception:  # the cache backend is down: a miss, not an error
        _backend_failed("get")
        return None
    return _decode(data) if data else None


async def put(key: str, completion: Completion) -> None:
    data = _encode(completion)
    try:
        cache = default_cache()
        if _local():
            cache.set(key, data, settings.RESPONSE_CACHE_TTL)
        else:
            await run_blocking(cache.set, key, data, settings.RESPONSE_CACHE_TTL)
    except Exception:  # the answer was already served; not caching it loses nothing but a later hit
        _backend_failed("set")
