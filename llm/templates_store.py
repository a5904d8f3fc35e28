"""Prompt templates for the webhook's `type` x `source`, read from the PromptTemplate table (per-process copy,
refreshed every few seconds)."""

from dataclasses import dataclass

from common.process_copy import ProcessCopy
from llm.models import PromptTemplate

_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    user: str


def _load() -> dict[tuple[str, str], tuple[str, str]]:
    return {(t.type, t.source): (t.system, t.user_template) for t in PromptTemplate.objects.all()}


_table = ProcessCopy(_load, seconds=_CACHE_SECONDS, empty={})


async def arender(*, type: str, source: str, prompt: str, language: str, system_override: str | None) -> RenderedPrompt:
    table = await _table.aget()
    system, user_template = table.get((type, source)) or table.get((type, "")) or ("", "{prompt}")
    language_text = language or "the same language as the input"
    system = system_override if system_override is not None else system.replace("{language}", language_text)
    return RenderedPrompt(system=system, user=user_template.replace("{prompt}", prompt))


def templates_changed() -> None:
    _table.changed()
