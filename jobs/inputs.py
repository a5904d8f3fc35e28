"""Request bodies of the batch API and of JSON jobs (pydantic: fast, and the same models document the endpoints)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm.providers.registry import provider_literal
from llm.webhook_calls import SOURCES, TYPES, WebhookIn


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, description="0: identical rows answer from cache.")
    max_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    response_format: dict[str, Any] | None = Field(
        default=None,
        description='OpenAI\'s `response_format`, sent with every item, e.g. `{"type": "json_schema", '
        '"json_schema": {"name": ..., "schema": {...}, "strict": true}}` for answers in a JSON shape.',
    )


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str | int | None = Field(default=None, description="Echoed in the result; default: the item's index.")
    # Excel cells may hold numbers or nothing: they are taken as text, and an empty one fails only its own row.
    prompt: str | int | float | bool | None = Field(description="The text to work on (one cell).")
    model: str | None = Field(default=None, max_length=200, description="Overrides the batch's model for this item.")
    variables: dict[str, str] | None = Field(
        default=None, description="This item's template variables (over the batch's `variables`)."
    )

    def text(self) -> str:
        return prompt_text(self.prompt)


def prompt_text(prompt: str | int | float | bool | None) -> str:
    """A cell as the prompt's text: empty for null, `true`/`false` for booleans, numbers as written."""
    if prompt is None or isinstance(prompt, str):
        return prompt or ""
    return str(prompt).lower() if isinstance(prompt, bool) else str(prompt)


class BatchOptions(BaseModel):
    """What every item of a batch or job shares."""

    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal[TYPES] | None = Field(default=None, description="What to do with each text (default: custom).")  # type: ignore[valid-type]
    template: str | int | None = Field(
        default=None,
        description="A prompt template of yours or a shared one (GET /api/v1/templates), by name or id; its default "
        "model and parameters apply unless this request sets them. A built-in type's name (`summary`, ...) is an "
        "alias of `type`.",
    )
    variables: dict[str, str] | None = Field(
        default=None,
        description="The template's variables for every item (an item's own `variables` win). `$prompt` is the "
        "item's prompt. A missing or unknown variable fails the item, naming it.",
    )
    source: Literal[SOURCES] = Field(default="excel", description="Where the texts come from.")  # type: ignore[valid-type]
    language: str | None = Field(default=None, max_length=50, description="Output language; default: preferences.")
    provider: provider_literal() | None = None  # type: ignore[valid-type]
    model: str | None = Field(default=None, max_length=200)
    system: str | None = Field(default=None, description="Replaces the template's instruction.")
    parameters: Parameters = Field(default_factory=Parameters)
    cache: bool | None = Field(default=None, description="Default: cached when temperature is 0.")
    labels: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The answer must be one of these labels (matched ignoring case, surrounding spaces, quotes "
        "and a final period; the result is the label as given). Any other answer is the item's error "
        "`answer_not_in_labels` (its row's, in a job) and is not kept in the response cache.",
    )

    @model_validator(mode="after")
    def _one_kind(self):
        if self.type is not None and self.template is not None and self.type != self.template:
            raise ValueError("send `type` or `template`, not both")
        return self

    @property
    def kind(self) -> str:
        return self.type or (self.template if self.template in TYPES else None) or "custom"

    @property
    def user_template(self) -> str | int | None:
        """The template named by name or id (not a built-in type's name), if any."""
        return None if self.template in TYPES else self.template

    def options(self) -> dict:
        """The shared options as stored on a job (`items` excluded)."""
        return self.model_dump(mode="json", include=set(BatchOptions.model_fields))


class BatchIn(BatchOptions):
    items: list[ItemIn] = Field(min_length=1, description="At most BATCH_MAX_ITEMS (default 200).")
    dry_run: bool = Field(
        default=False,
        description="Price the batch without running it: nothing is sent upstream or recorded (see BatchDryRunOut).",
    )


class JobIn(BatchOptions):
    items: list[ItemIn] = Field(min_length=1, description="At most JOB_MAX_ITEMS (default 50,000).")


def webhook_body(
    options: BatchOptions, *, prompt: str, model: str | None = None, variables: dict[str, str] | None = None
) -> WebhookIn:
    """One item as the webhook's input, so batches and jobs share its templates and checks."""
    p = options.parameters
    return WebhookIn.model_construct(
        prompt=prompt,
        type=options.kind,
        template=options.user_template,
        variables={**(options.variables or {}), **(variables or {})} or None,
        source=options.source,
        language=options.language,
        provider=options.provider,
        model=model or options.model,
        system=options.system,
        temperature=p.temperature,
        max_tokens=p.max_tokens,
        top_p=p.top_p,
        stop=p.stop,
        stream=False,
        cache=options.cache,
    )


def label_of(answer: str, labels: list[str]) -> str | None:
    """The label `answer` names, as given in `labels`; None when it names none of them."""

    def plain(text: str) -> str:
        return text.strip().strip("\"'`*").strip().rstrip(".").strip().casefold()

    wanted = plain(answer)
    return next((label for label in labels if plain(label) == wanted), None)
