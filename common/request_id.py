"""The current request id, readable anywhere (logging, services) without passing it around."""

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id(incoming: str | None) -> str:
    """Keep a client's well-formed `X-Request-ID`; otherwise make one."""
    if incoming and _VALID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def current_request_id() -> str:
    return request_id_var.get()
