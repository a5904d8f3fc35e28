"""The `Idempotency-Key` header, read the same way by every endpoint that takes one (the batch, jobs, calendar
events, process-text): absent or empty is no key; otherwise 1 to 255 printable ASCII characters without spaces,
or a 400 `invalid_idempotency_key` naming the header. What a key then guards is each endpoint's own business
(stored answers in `jobs.idempotency`, deterministic Google event ids in the calendar)."""

import re

from common.errors import InvalidRequest

HEADER = "Idempotency-Key"
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
_RULE = "must be 1 to 255 printable ASCII characters without spaces."


def idempotency_key_from_headers(headers) -> str | None:
    key = (headers.get(HEADER) or "").strip()
    if not key:
        return None
    if not _VALID.match(key):
        raise InvalidRequest(
            f"Invalid `{HEADER}`: {_RULE}", code="invalid_idempotency_key", details={HEADER: [_RULE]}, param=HEADER
        )
    return key
