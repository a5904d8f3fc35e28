"""How much of a conversation fits in the model's context window, and what is sent when it does not.

Counting: OpenAI models (the `openai` provider) are counted with their own tokenizer (tiktoken's `o200k_base` or
`cl100k_base`, whichever the model uses), from the encoding files shipped in the `bpe-openai` package, so nothing is
downloaded at run time. Every other model is estimated at one token per 4 characters, rounded up (the estimate
budgets and usage records use when an upstream reports none). Each message adds `MESSAGE_OVERHEAD` tokens for its
role and framing.

Policy: the system prompt and the new user message are always sent; then the history from the newest turn
backwards, as long as the total fits `context window - CONVERSATION_REPLY_TOKENS` (room kept for the answer, or the
request's `max_tokens`). Older messages are dropped; an assistant reply whose user message was dropped is dropped
with it. When the system prompt and the new message alone do not fit, the request is a 400
`context_length_exceeded`. A conversation created with `summarize_dropped` has the dropped messages summarised
instead, the summary sent as a system note after the system prompt (llm/conversation_summary.py).

Context window: `LLM_CONTEXT_WINDOWS` (model name prefix -> tokens, the longest prefix wins), else
`LLM_CONTEXT_WINDOW_DEFAULT`.
"""

import math
from functools import lru_cache

from django.conf import settings

from common.errors import InvalidRequest
from llm.providers import Message

MESSAGE_OVERHEAD = 4


@lru_cache(maxsize=8)
def _encoding(name: str):
    import bpe_openai

    return bpe_openai.get_encoding(name)


def _encoding_name(model: str) -> str:
    import bpe_openai

    try:
        return bpe_openai.encoding_name_for_model(model)
    except Exception:  # noqa: BLE001  (an unknown or newer model: the current encoding)
        return "o200k_base"


def count_tokens(text: str, *, provider: str, model: str) -> int:
    if not text:
        return 0
    if provider == "openai":
        return len(_encoding(_encoding_name(model)).encode(text, disallowed_special=()))
    return math.ceil(len(text) / 4)


def message_tokens(message: Message, *, provider: str, model: str) -> int:
    content = message.content if isinstance(message.content, str) else str(message.content)
    return count_tokens(content, provider=provider, model=model) + MESSAGE_OVERHEAD


def context_window(model: str) -> int:
    windows: dict[str, int] = settings.LLM_CONTEXT_WINDOWS
    matches = [prefix for prefix in windows if model.startswith(prefix)]
    return windows[max(matches, key=len)] if matches else settings.LLM_CONTEXT_WINDOW_DEFAULT


def trim_history(
    *, system: list[Message], history: list[Message], new: Message, provider: str, model: str, reply_tokens: int
) -> tuple[list[Message], int]:
    """The messages to send (system, the newest history that fits, the new message) and how many were dropped."""

    def size(message: Message) -> int:
        return message_tokens(message, provider=provider, model=model)

    available = context_window(model) - reply_tokens
    used = sum(size(m) for m in system) + size(new)
    if used > available:
        raise InvalidRequest(
            f"The message and the system prompt take {used} tokens; the model's context window leaves {available} "
            "for them.",
            code="context_length_exceeded",
            param="content",
            details={"tokens": used, "available": available},
        )
    kept: list[Message] = []
    for message in reversed(history):
        used += size(message)
        if used > available:
            break
        kept.append(message)
    kept.reverse()
    while kept and kept[0].role == "assistant":  # never start on an answer whose question was dropped
        kept.pop(0)
    return [*system, *kept, new], len(history) - len(kept)
