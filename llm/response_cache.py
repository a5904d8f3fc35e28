"""The response cache: identical requests (routed model, messages, every parameter) answer from the Django cache
(Redis when configured), so recalculating a spreadsheet costs nothing.

On by default for `temperature: 0` or with `cache: true`; `cache: false` or `Cache-Control: no-cache` bypasses it.
"""

import hashlib
import json
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.core.cache import cache

from common.aio import run_blocking
from llm.providers.base import ChatRequest, Completion, Usage


def wanted(*, cache_flag: bool | None, temperature: float | None, no_cache_header: bool) -> bool:
    if no_cache_header or cache_flag is False or not settings.RESPONSE_CACHE_ENABLED:
        return False
    return bool(cache_flag) or temperature == 0


def key_for(provider: str, request: ChatRequest) -> str:
    payload = {"provider": provider, **asdict(request)}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"llm:resp:{digest}"


def _encode(completion: Completion) -> dict[str, Any]:
    return {
        "text": completion.text,
        "model": completion.model,
        "finish_reason": completion.finish_reason,
        "response_id": completion.response_id,
        "tool_calls": completion.tool_calls,
        "usage": asdict(completion.usage) if completion.usage else None,
    }


def _decode(data: dict[str, Any]) -> Completion:
    return Completion(
        text=data["text"],
        model=data["model"],
        finish_reason=data["finish_reason"],
        response_id=data["response_id"],
        tool_calls=data.get("tool_calls"),
        usage=Usage(**data["usage"]) if data.get("usage") else None,
    )


def _local() -> bool:
    return settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")


async def get(key: str) -> Completion | None:
    data = cache.get(key) if _local() else await run_blocking(cache.get, key)
    return _decode(data) if data else None


async def put(key: str, completion: Completion) -> None:
    data = _encode(completion)
    if _local():
        cache.set(key, data, settings.RESPONSE_CACHE_TTL)
    else:
        await run_blocking(cache.set, key, data, settings.RESPONSE_CACHE_TTL)
