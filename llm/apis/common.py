"""What the async LLM views share. The request helpers live outside the HTTP layer (other apps use them too); only
the SSE framing is the views' own."""

from accounts.authentication import aauthenticate_with_scope as authenticate
from common.formatting import money
from common.request_input import check_method, no_cache_requested, parse_json, validate
from llm.prompt_limits import check_prompt_length, prompt_chars

__all__ = [
    "authenticate",
    "check_method",
    "check_prompt_length",
    "money",
    "no_cache_requested",
    "parse_json",
    "prompt_chars",
    "sse",
    "validate",
]


def sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()
