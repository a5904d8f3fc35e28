"""The webhook's request model and how it becomes a gateway call; shared by the webhook view, the batch API and
jobs. Apps whose webhook `type` is not a prompt template register a handler here."""

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.errors import InvalidRequest
from common.openapi import UsageOut
from common.validation import invalid_request
from llm import pipeline
from llm.prompt_limits import check_prompt_length
from llm.providers import ChatRequest, Message, Usage
from llm.providers.registry import provider_literal
from llm.template_text import PARAMETERS
from llm.templates_store import aget_template, arender, render_template

TYPES = ("summary", "keywords", "sentiment", "entities", "translation", "custom", "calendar_event")
SOURCES = ("excel", "email", "meeting", "chat", "document", "other")


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str | None = Field(
        default=None, min_length=1, description="The text to work on (`$prompt`). Required unless `template` is set."
    )
    type: Literal[TYPES] = Field(default="custom", description="What to do with the text.")  # type: ignore[valid-type]
    template: str | int | None = Field(
        default=None,
        description="A prompt template of yours or a shared one (GET /api/v1/templates), by name or id; it replaces "
        "`type`'s built-in template, and its default model and parameters apply unless this request sets them. A "
        "built-in type's name (`summary`, ...) means that `type`.",
    )
    variables: dict[str, str] | None = Field(
        default=None,
        description='The template\'s variables, e.g. `{"topic": "tides"}` for `$topic` (`$prompt` is `prompt`, '
        "`$language` the output language). A missing or unknown variable is a 400 naming it.",
    )
    source: Literal[SOURCES] = Field(default="other", description="Where the text comes from.")  # type: ignore[valid-type]
    language: str | None = Field(default=None, max_length=50, description="Output language; default: preferences.")
    provider: provider_literal() | None = None  # type: ignore[valid-type]
    model: str | None = Field(default=None, max_length=200)
    system: str | None = Field(default=None, description="Replaces the template's instruction.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    stream: bool = False
    cache: bool | None = None
    conversation_id: int | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,
        description="Continue one of your conversations: its history is sent before this prompt and the exchange "
        "is stored in it. Another user's is not found.",
    )


def usage_model(usage: Usage) -> UsageOut:
    """The usage object djllm answers (documented once, as `UsageOut`)."""
    return UsageOut(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
    )


def usage_out(usage: Usage) -> dict[str, int]:
    return usage_model(usage).model_dump()


# Types handled by another app instead of a prompt template (registered in that app's AppConfig.ready()), e.g.
# `calendar_event` by the calendars app: async handler(cached_token, body, request_id) -> the JSON payload.
TYPE_HANDLERS: dict[str, Callable[[Any, "WebhookIn", str], Awaitable[dict[str, Any]]]] = {}


def register_type_handler(type_name: str, handler) -> None:
    TYPE_HANDLERS[type_name] = handler


def require_prompt(body: WebhookIn) -> None:
    if not body.prompt:
        raise invalid_request({"prompt": ["Field required (unless `template` names a template)."]})


async def build_call(
    cached_token, body: WebhookIn, *, request_id: str, endpoint: str, no_cache: bool = False, batch_id: str = ""
) -> pipeline.GatewayCall:
    """Shared by the webhook and the batch API: the template turns type/source/language into messages."""
    kind = body.template if body.template in TYPES else body.type  # a built-in type's name means that type
    if kind == "calendar_event":
        raise InvalidRequest(
            "type `calendar_event` is served by POST /api/v1/webhook (one text at a time) and "
            "/api/v1/calendar/process-text, not here."
            if "calendar_event" in TYPE_HANDLERS
            else "type `calendar_event` is not available: the calendar integration is not installed.",
            code="type_not_available",
            param="type",
        )
    variables = body.variables or {}
    # `system` replaces the template's instruction
    check_prompt_length(len(body.prompt or "") + sum(map(len, variables.values())) + len(body.system or ""))
    language = body.language or (cached_token.preferences.language if cached_token.preferences else "")
    model, parameters = body.model, {}
    if body.template is not None and body.template not in TYPES:
        snapshot = await aget_template(user_id=cached_token.token.user_id, ref=body.template)
        rendered = render_template(
            snapshot, variables=variables, prompt=body.prompt, language=language, system_override=body.system
        )
        model, parameters = model or snapshot.default_model or None, snapshot.parameters
    else:
        require_prompt(body)
        if variables:
            raise invalid_request({"variables": ["Only with `template`: the built-in types take `prompt` alone."]})
        rendered = await arender(
            type=kind, source=body.source, prompt=body.prompt, language=language, system_override=body.system
        )
    chosen = {name: getattr(body, name) for name in PARAMETERS}
    chosen = {name: parameters.get(name) if value is None else value for name, value in chosen.items()}
    messages = ([Message(role="system", content=rendered.system)] if rendered.system else []) + [
        Message(role="user", content=rendered.user)
    ]
    return pipeline.GatewayCall(
        cached=cached_token,
        endpoint=endpoint,
        request_id=request_id,
        chat=ChatRequest(
            model="",
            messages=messages,
            **chosen,
        ),
        requested_model=model,
        provider_hint=body.provider,
        cache_flag=body.cache,
        no_cache_header=no_cache,
        type=kind,
        source=body.source,
        batch_id=batch_id,
        template_version_id=rendered.version_id,
    )
