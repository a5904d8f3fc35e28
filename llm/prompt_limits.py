"""`MAX_PROMPT_LENGTH`: how much of a request counts as the prompt, and the check every LLM entry point makes."""

import json
from typing import Any

from django.conf import settings

from common.errors import InvalidRequest


def prompt_chars(value: Any) -> int:
    """How much of a request the limit counts: text as its characters; anything else the upstream is sent (tools,
    tool calls, images and other non-text parts, schemas) as the characters of its JSON."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(
            len(part["text"])
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            else prompt_chars(part)
            for part in value
        )
    return len(json.dumps(value, ensure_ascii=False, default=str))


def check_prompt_length(total_chars: int) -> None:
    limit = settings.MAX_PROMPT_LENGTH
    if total_chars > limit:
        raise InvalidRequest(
            f"The prompt is {total_chars} characters; the limit is MAX_PROMPT_LENGTH={limit}.",
            code="prompt_too_long",
            details={"max_prompt_length": limit, "length": total_chars},
            param="messages",
        )
