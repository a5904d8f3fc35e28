"""Prompt templates as requests use them.

Built-ins answer the webhook's `type` x `source` (per-process copy of the table, refreshed every few seconds). User
and shared templates are named in a request by name or id and read on each request (they change as users edit
them). Both are `string.Template` text: `$name` or `${name}` is a variable, `$$` a dollar sign; a value is inserted
as it is (never read as a template itself), and nothing else is evaluated."""

from dataclasses import dataclass, field
from string import Template
from typing import Any

from common.errors import InvalidRequest
from common.process_copy import ProcessCopy
from common.validation import invalid_request
from llm.models import PromptTemplate
from llm.template_text import template_variables

_CACHE_SECONDS = 5.0
NO_LANGUAGE = "the same language as the input"


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    user: str
    version_id: int | None = None


@dataclass(frozen=True)
class TemplateSnapshot:
    """A template's current version, as one request uses it."""

    id: int
    name: str
    version_id: int | None
    system: str
    user_template: str
    default_model: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


def _load() -> dict[tuple[str, str], tuple[str, str, int | None]]:
    rows = PromptTemplate.objects.filter(owner__isnull=True).exclude(type="")
    return {(t.type, t.source): (t.system, t.user_template, t.current_version_id) for t in rows}


_table = ProcessCopy(_load, seconds=_CACHE_SECONDS, empty={})


async def arender(*, type: str, source: str, prompt: str, language: str, system_override: str | None) -> RenderedPrompt:
    """The built-in template of `type` (tailored to `source` when there is one): `$prompt` and `$language`."""
    table = await _table.aget()
    system, user_template, version_id = table.get((type, source)) or table.get((type, "")) or ("", "$prompt", None)
    values = {"prompt": prompt, "language": language or NO_LANGUAGE}
    system = system_override if system_override is not None else Template(system).safe_substitute(values)
    return RenderedPrompt(system=system, user=Template(user_template).safe_substitute(values), version_id=version_id)


def templates_changed() -> None:
    _table.changed()


def _snapshot(template: PromptTemplate) -> TemplateSnapshot:
    return TemplateSnapshot(
        id=template.pk,
        name=template.name,
        version_id=template.current_version_id,
        system=template.system,
        user_template=template.user_template,
        default_model=template.default_model,
        parameters=dict(template.parameters or {}),
    )


async def aget_template(*, user_id: int, ref: str | int) -> TemplateSnapshot:
    """The caller's template or a shared one, by id or by name (the caller's own first). Another user's private
    template is not found, as one that does not exist."""
    visible = PromptTemplate.objects.filter(owner_id=user_id) | PromptTemplate.objects.filter(owner__isnull=True)
    text = str(ref)
    if isinstance(ref, int) or text.isdigit():
        template = await visible.filter(pk=int(text)).afirst()
    else:
        template = await PromptTemplate.objects.filter(owner_id=user_id, name=text).afirst()
        template = template or await PromptTemplate.objects.filter(owner__isnull=True, name=text).afirst()
    if template is None:
        problem = f"No template `{text}`: name one of yours or a shared one (GET /api/v1/templates), by name or id."
        raise InvalidRequest(
            f"Invalid `template`: {problem}",
            code="template_not_found",
            param="template",
            details={"template": [problem]},
        )
    return _snapshot(template)


def render_template(
    snapshot: TemplateSnapshot,
    *,
    variables: dict[str, str],
    prompt: str | None,
    language: str,
    system_override: str | None,
) -> RenderedPrompt:
    """The template's text with the request's variables. `$prompt` is the request's `prompt` and `$language` the
    output language unless `variables` sets them. A variable the template does not use, or one it uses that the
    request does not give, is a 400 naming it."""
    system = snapshot.system if system_override is None else ""
    names = template_variables(system, snapshot.user_template)
    details: dict[str, list[str]] = {}
    for name in variables:
        if name not in names:
            details[f"variables.{name}"] = [f"Unknown variable: the template `{snapshot.name}` has no `${name}`."]
    values = {"language": language or NO_LANGUAGE, **({"prompt": prompt} if prompt else {}), **variables}
    if prompt and "prompt" not in names:
        details["prompt"] = [f"The template `{snapshot.name}` has no `$prompt`: send its variables in `variables`."]
    for name in names:
        if name not in values:
            details[f"variables.{name}"] = [f"Missing variable: the template `{snapshot.name}` uses `${name}`."]
    if details:
        raise invalid_request(details)
    return RenderedPrompt(
        system=system_override if system_override is not None else Template(system).substitute(values),
        user=Template(snapshot.user_template).substitute(values),
        version_id=snapshot.version_id,
    )


@dataclass(frozen=True)
class ConversationTemplate:
    """What a conversation keeps of the template it starts from."""

    version_id: int | None
    system: str  # rendered with the variables
    user_template: str  # as written: `$prompt` is each message
    variables: dict[str, str]  # besides `$prompt`, `$language` pinned when the template uses it
    default_model: str
    parameters: dict[str, Any]


def conversation_template(
    snapshot: TemplateSnapshot, *, variables: dict[str, str], language: str, system_override: str | None
) -> ConversationTemplate:
    """Check a template and its variables for a conversation: each message is the template's user text with the
    message as `$prompt` (so the user text must have `$prompt` and the system prompt must not); every other variable
    is given now, in `variables` (`$language`: the output language unless set), a missing or unknown one a 400
    naming it."""
    details: dict[str, list[str]] = {}
    if "prompt" not in template_variables(snapshot.user_template):
        details["template"] = [
            f"The template `{snapshot.name}` has no `$prompt` in its user text: each message of a conversation is sent "
            "as `$prompt`."
        ]
    elif system_override is None and "prompt" in template_variables(snapshot.system):
        details["template"] = [
            f"The template `{snapshot.name}` uses `$prompt` in its system prompt: in a conversation `$prompt` is each "
            "message, so it belongs in the user text (or give `system`)."
        ]
    if "prompt" in variables:
        details["variables.prompt"] = ["`$prompt` is each message's content: it cannot be set in `variables`."]
    if details:
        raise invalid_request(details)
    rendered = render_template(
        snapshot, variables=variables, prompt="-", language=language, system_override=system_override
    )
    pinned = {"language": language or NO_LANGUAGE} if "language" in template_variables(snapshot.user_template) else {}
    return ConversationTemplate(
        version_id=snapshot.version_id,
        system=rendered.system,
        user_template=snapshot.user_template,
        variables={**pinned, **variables},
        default_model=snapshot.default_model,
        parameters=snapshot.parameters,
    )


def render_message(user_template: str, *, variables: dict[str, str], content: str) -> str:
    """A conversation's message as sent: its template's user text with the message as `$prompt` (checked when the
    conversation was started)."""
    return Template(user_template).safe_substitute({**variables, "prompt": content})
