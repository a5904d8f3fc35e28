"""Prompt templates for the webhook's `type` x `source`, read from the PromptTemplate table (per-process copy,
refreshed every few seconds)."""

import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from llm.models import PromptTemplate

_CACHE_SECONDS = 5.0
_table: dict[tuple[str, str], tuple[str, str]] = {}
_loaded_at = -1e9


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    user: str


def _load() -> dict[tuple[str, str], tuple[str, str]]:
    return {(t.type, t.source): (t.system, t.user_template) for t in PromptTemplate.objects.all()}


async def arender(*, type: str, source: str, prompt: str, language: str, system_override: str | None) -> RenderedPrompt:
    global _table, _loaded_at
    if time.monotonic() - _loaded_at > _CACHE_SECONDS:
        _table = await sync_to_async(_load)()
        _loaded_at = time.monotonic()
    system, user_template = _table.get((type, source)) or _table.get((type, "")) or ("", "{prompt}")
    language_text = language or "the same language as the input"
    system = system_override if system_override is not None else system.replace("{language}", language_text)
    return RenderedPrompt(system=system, user=user_template.replace("{prompt}", prompt))


def templates_changed() -> None:
    global _loaded_at
    _loaded_at = -1e9
