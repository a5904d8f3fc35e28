"""The one validation-error formatter: pydantic errors (the fast path's bodies), DRF serializer errors and Django's
`ValidationError` (a model's `full_clean` in a service) all become the same 400 `invalid_request`.

`details` maps each field path (`messages.0.role`, `attendees.1`) to its messages; the message names the first
one ("Invalid `temperature`: Input should be less than or equal to 2"), and `param` is that path (OpenAI's
`error.param`). An error that belongs to no field is listed under `non_field_errors`, and its message is the
error's own text.
"""

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from pydantic import ValidationError as PydanticValidationError

from common.errors import InvalidRequest

NON_FIELD = "non_field_errors"
# pydantic prefixes the text of a ValueError raised in a validator; the field path already says where it was.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")

Details = dict[str, list[str]]


def invalid_request(details: Details) -> InvalidRequest:
    """The 400 for `details` (field path -> messages, in the order the fields were checked)."""
    first = next(iter(details), None)
    if first is None:
        return InvalidRequest("The request is invalid.")
    message = details[first][0]
    if first == NON_FIELD:
        return InvalidRequest(message, details=details)
    return InvalidRequest(f"Invalid `{first}`: {message}", details=details, param=first)


def field_path(loc: Iterable[Any], *, brackets: bool = False) -> str:
    """`("messages", 0, "role")` -> `messages.0.role` (or `messages[0].role` with `brackets`)."""
    path = ""
    for part in loc:
        if brackets and isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or NON_FIELD


def pydantic_details(exc: PydanticValidationError, *, brackets: bool = False) -> Details:
    details: Details = {}
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        message = error["msg"]
        for prefix in _PYDANTIC_PREFIXES:
            if message.startswith(prefix):
                message = message[len(prefix) :]
        details.setdefault(field_path(error["loc"], brackets=brackets), []).append(message)
    return details


def drf_details(detail: Any) -> Details:
    """DRF's nested `ValidationError.detail` (dicts for serializers and list items, lists of messages) flattened to
    one level of field paths."""
    details: Details = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list | tuple):
            if all(not isinstance(item, dict | list | tuple) for item in value):
                details.setdefault(path or NON_FIELD, []).extend(str(item) for item in value)
            else:  # one entry per list item ({} for an item without errors)
                for index, inner in enumerate(value):
                    walk(inner, f"{path}.{index}" if path else str(index))
        else:
            details.setdefault(path or NON_FIELD, []).append(str(value))

    walk(detail, "")
    return details


def django_details(exc: DjangoValidationError) -> Details:
    if not hasattr(exc, "error_dict"):
        return {NON_FIELD: list(exc.messages)}
    return {(NON_FIELD if name == NON_FIELD_ERRORS else name): messages for name, messages in exc.message_dict.items()}


def from_pydantic(exc: PydanticValidationError) -> InvalidRequest:
    return invalid_request(pydantic_details(exc))


def from_drf(detail: Any) -> InvalidRequest:
    return invalid_request(drf_details(detail))


def from_django(exc: DjangoValidationError) -> InvalidRequest:
    return invalid_request(django_details(exc))
