"""JSON request bodies: one reader for the async API views and for DRF, so that every API path answers a body that
is too large with 413 (naming the limit) and one nested too deeply with 400, never Django's HTML 400 or a 500."""

import json
from typing import Any

import orjson
from django.conf import settings
from rest_framework import parsers

from common.errors import InvalidRequest, RequestTooLarge


def request_too_large(setting: str, length: int | None = None) -> RequestTooLarge:
    limit = getattr(settings, setting)
    size = f"The body is {length} bytes; " if length else "The body is over the limit; "
    return RequestTooLarge(f"{size}the limit is {setting}={limit} bytes.", details={"limit": limit, "setting": setting})


def loads(raw: bytes | str) -> Any:
    """`json.loads` whose failures are 400s: not JSON, not UTF-8, or nested deeper than Python can parse."""
    try:
        return json.loads(raw or b"null")
    except RecursionError:
        raise InvalidRequest("The JSON body is nested too deeply.", code="too_deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}.", code="invalid_json") from None


def dumps(value: Any) -> bytes:
    """JSON bytes for the hot path: orjson, or the standard library for what orjson does not write (an integer
    beyond 64 bits, which JSON allows: a user's tool schema may hold one)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def read_limited(stream, *, length: int, setting: str) -> bytes:
    """Read at most the limit set by `setting` (plus one byte, to notice more): the declared length is the sender's
    word, and a chunked body declares none."""
    limit = getattr(settings, setting)
    if limit is None:
        return stream.read()
    if length > limit:
        raise request_too_large(setting, length)
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise request_too_large(setting)
    return raw


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser reads the raw stream, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE: this one keeps to it (or to
    `limit_setting`), and answers bodies too deep for `json` with 400 `too_deep`."""

    limit_setting = "DATA_UPLOAD_MAX_MEMORY_SIZE"

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        length = int((request.META.get("CONTENT_LENGTH") if request is not None else 0) or 0)
        return loads(read_limited(stream, length=length, setting=self.limit_setting))
