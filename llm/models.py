from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from common.fields import EncryptedTextField
from llm.providers.registry import provider_choices, provider_class

# Output tokens a request may produce when it sets no `max_tokens`, for a price row that names no limit of its own:
# budgets reserve this many output tokens at the output price (see ModelPrice.max_output_tokens).
DEFAULT_MAX_OUTPUT_TOKENS = 16_384


class ModelRoute(models.Model):
    """An admin-managed alias: `alias` -> provider + upstream model (+ base URL, key, fallback)."""

    alias = models.CharField(max_length=100, unique=True, help_text="The model name clients send, e.g. `fast`.")
    provider = models.CharField(max_length=20, choices=provider_choices)
    upstream_model = models.CharField(max_length=100)
    base_url = models.URLField(
        blank=True,
        help_text="Blank: the provider's configured base URL. Otherwise a host allowed by LLM_BASE_URL_ALLOWLIST.",
    )
    api_key = EncryptedTextField(
        blank=True,
        help_text="Blank: the provider's key from the environment when the route uses the provider's configured base "
        "URL; no key at all when the route has a base URL of its own.",
    )
    fallback = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, help_text="Tried when this route keeps failing."
    )
    responses_api = models.BooleanField(
        "Responses API",
        default=False,
        help_text="This OpenAI-compatible server has a /v1/responses endpoint (vLLM and recent Ollama do); otherwise "
        "djllm translates through Chat Completions. Local routes only: OpenAI routes always use it, Anthropic routes "
        "cannot.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["alias"]

    def __str__(self) -> str:
        return f"{self.alias} → {self.provider}/{self.upstream_model}"

    def clean(self) -> None:
        from llm.upstream_urls import base_url_problem

        errors = {}
        problem = base_url_problem(self.base_url) if self.base_url else None
        if problem:
            errors["base_url"] = problem
        declared = provider_class(self.provider)
        if (
            self.responses_api
            and declared is not None
            and not (declared.responses_api or declared.responses_api_by_route)
        ):
            errors["responses_api"] = (
                f"The {declared.label} provider has no Responses API: djllm translates /v1/responses requests for it. "
                "Only an OpenAI-compatible (local) server can have one."
            )
        if errors:
            raise ValidationError(errors)


class ModelPrice(models.Model):
    """List price per 1M tokens in USD, valid from `effective_from` until the next row for the model."""

    provider = models.CharField(max_length=20, choices=provider_choices)
    model = models.CharField(max_length=100, help_text="The upstream model name (prefix match on dated snapshots).")
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(
        default=DEFAULT_MAX_OUTPUT_TOKENS,
        help_text="The most output tokens the model produces in one answer. A request under a budget that sets no "
        "max_tokens reserves this many output tokens; set it to at least the model's real limit.",
    )
    effective_from = models.DateField(default=timezone.localdate)

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model", "effective_from"], name="uniq_price_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} from {self.effective_from}"


class PromptTemplate(models.Model):
    """A prompt template: an instruction (`system`) and the user message (`user_template`) with `$name` variables
    (`string.Template`: `$$` is a dollar sign; nothing else is evaluated).

    Built-in templates answer the webhook's `type`, tailored by `source` (seeded by a data migration, shared, edited
    by admins; their variables are `$prompt` and `$language`). User templates have a `name` and an owner; a shared
    one (no owner) is readable by every user and written only by admins. Every edit is a new
    PromptTemplateVersion; `current_version` is the one requests use, and usage records keep the one they used."""

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Blank: shared with every user (read only to them).",
    )
    type = models.CharField(max_length=40, blank=True, help_text="Built-ins: the webhook `type` this answers.")
    source = models.CharField(max_length=40, blank=True, help_text="Blank: any source.")
    system = models.TextField(blank=True, help_text="System instruction; $language is the output language.")
    user_template = models.TextField(default="$prompt", help_text="$prompt is the user's text; $$ is a dollar sign.")
    default_model = models.CharField(max_length=200, blank=True, help_text="Used when a request names no model.")
    parameters = models.JSONField(
        default=dict,
        blank=True,
        help_text="Defaults for temperature, max_tokens, top_p, stop, used when a request does not set them.",
    )
    current_version = models.ForeignKey(
        "PromptTemplateVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["type", "source"],
                condition=~models.Q(type=""),
                name="uniq_template_type_source",
                violation_error_message="There is already a built-in template for this type and source.",
            ),
            models.UniqueConstraint(
                fields=["owner", "name"],
                condition=models.Q(owner__isnull=False),
                name="uniq_template_owner_name",
                violation_error_message="You already have a template with this name.",
            ),
            models.UniqueConstraint(  # built-ins are named by their type and source (unique above)
                fields=["name"],
                condition=models.Q(owner__isnull=True, type=""),
                name="uniq_template_shared_name",
                violation_error_message="There is already a shared template with this name.",
            ),
        ]
        ordering = ["type", "source", "name"]

    def __str__(self) -> str:
        return self.name or f"{self.type}/{self.source or '*'}"

    def clean(self) -> None:
        from llm.template_text import BUILTIN_VARIABLES, PARAMETERS, template_problem, template_variables

        errors = {}
        for name in ("system", "user_template"):
            problem = template_problem(getattr(self, name))
            if problem:
                errors[name] = problem
        if not errors and self.type:
            unknown = [v for v in template_variables(self.system, self.user_template) if v not in BUILTIN_VARIABLES]
            if unknown:
                errors["user_template"] = f"A built-in template has only $prompt and $language, not ${unknown[0]}."
        if not isinstance(self.parameters, dict) or any(key not in PARAMETERS for key in self.parameters):
            errors["parameters"] = f"An object with any of: {', '.join(PARAMETERS)}."
        if errors:
            raise ValidationError(errors)


class PromptTemplateVersion(models.Model):
    """One edit of a template, never changed afterwards."""

    template = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    system = models.TextField(blank=True)
    user_template = models.TextField()
    default_model = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="uniq_template_version")]
        ordering = ["template", "-number"]

    def __str__(self) -> str:
        return f"{self.name} v{self.number}"


class UsageStatus(models.TextChoices):
    OK = "ok"
    CACHED = "cached"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_ERROR = "client_error"
    CANCELLED = "cancelled"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"


class UsageRecord(models.Model):
    """One row per request, whatever happened."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    request_id = models.CharField(max_length=128, db_index=True)
    # No index of their own: the composite indexes below lead with user and with token and serve every lookup by
    # either (and the SET NULL of a deleted user or token); each index more is another B-tree every record updates.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    token = models.ForeignKey(
        "accounts.APIToken", null=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    endpoint = models.CharField(max_length=40)
    provider = models.CharField(max_length=20, blank=True)
    requested_model = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=100, blank=True)
    type = models.CharField(max_length=40, blank=True)
    source = models.CharField(max_length=40, blank=True)
    batch_id = models.CharField(max_length=64, blank=True, db_index=True)
    template_version = models.ForeignKey(
        PromptTemplateVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    status = models.CharField(max_length=20, choices=UsageStatus.choices)
    http_status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.CharField(
        max_length=500, blank=True, help_text="What the client was told, secrets redacted."
    )

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    # False: the model had no ModelPrice row. cost_usd is then null, or the UNPRICED_* fallback price when set.
    priced = models.BooleanField(default=True)

    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    saved_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal("0"))

    latency_ms = models.PositiveIntegerField(default=0)
    upstream_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    stream = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(
        default=0,
        help_text="Calls sent upstream for this request, retries and fallbacks included (0: none was needed).",
    )
    conversation = models.ForeignKey(
        "llm.Conversation", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="usage_user_time"),
            # The records API lists a user's records newest first by id, in cursor pages.
            models.Index(fields=["user", "-id"], name="usage_user_id"),
            models.Index(fields=["token", "created_at"], name="usage_token_time"),
            models.Index(fields=["status", "created_at"], name="usage_status_time"),
            models.Index(fields=["upstream_model", "created_at"], name="usage_model_time"),
            # The few records that never reached a model (no upstream model), by the model asked for, with what the
            # admin's totals sum: the daily rollups file them under that model, and the totals of a model take them
            # back out (llm/usage_totals.py) from this small index alone (PostgreSQL: no table read).
            models.Index(
                fields=["requested_model", "created_at"],
                include=[
                    "id",
                    "user_id",
                    "token_id",
                    "provider",
                    "status",
                    "priced",
                    "cost_usd",
                    "saved_usd",
                    "input_tokens",
                    "output_tokens",
                    "cached_input_tokens",
                    "cache_write_tokens",
                    "reasoning_tokens",
                ],  # fmt: skip
                condition=models.Q(upstream_model=""),
                name="usage_unrouted_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.status}"


class SpendCounter(models.Model):
    """Running monthly spend per token and per user, updated with each usage record so budget checks never sum
    the usage table. `scope` is "token" or "user"; `month` is the first day of the month (UTC).

    `reserved_usd` is what requests in flight may still cost at most: reserved before their upstream call (only
    where a budget applies), released in the transaction that writes their usage record and adds their real cost
    to `spent_usd`. A reservation fits when spent + reserved + it <= budget."""

    scope = models.CharField(max_length=10)
    key = models.BigIntegerField()
    month = models.DateField()
    spent_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal("0"))
    reserved_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal("0"))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key", "month"], name="uniq_spend_counter")]
        verbose_name = "budget and spend"
        verbose_name_plural = "budgets and spend"

    def __str__(self) -> str:
        return f"{self.scope}:{self.key} {self.month:%Y-%m} ${self.spent_usd}"


class Conversation(models.Model):
    """A chat kept by djllm: its messages are sent again, trimmed to the model's context window, with each new one."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Blank: the user's default model.")
    system = models.TextField(blank=True, help_text="The system prompt, always sent first.")
    # Started from a prompt template: the version it was made from (its usage records keep it too) and what of the
    # template the conversation keeps, so later edits or a deleted template do not change it.
    template_version = models.ForeignKey(
        PromptTemplateVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user_template = models.TextField(
        blank=True, help_text="The template's user text: each message is sent as `$prompt` in it (blank: as typed)."
    )
    variables = models.JSONField(default=dict, blank=True, help_text="The template's variables besides `$prompt`.")
    parameters = models.JSONField(
        default=dict, blank=True, help_text="The template's default parameters, used when a message does not set them."
    )
    # Trimming (llm/context.py): with `summarize_dropped`, the messages left out are summarised by one more call, and
    # the summary is sent instead of them; it covers the oldest `summary_covers` messages and is only extended.
    summarize_dropped = models.BooleanField(
        default=False, help_text="Summarise the messages trimmed to fit the context window instead of leaving them out."
    )
    summary = models.TextField(blank=True, help_text="The summary of the oldest `summary_covers` messages.")
    summary_covers = models.PositiveIntegerField(default=0, help_text="How many of the oldest messages it covers.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["user", "id"], name="conversation_user_id")]

    def __str__(self) -> str:
        return self.title or f"conversation {self.pk}"


class ConversationMessage(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField()
    model = models.CharField(max_length=200, blank=True, help_text="The model that answered (assistant messages).")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    complete = models.BooleanField(default=True, help_text="False: the stream was cut short; the text is partial.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


class StoredResponse(models.Model):
    """A response of `POST /v1/responses` kept for its user (`store`, on by default): `GET`/`DELETE
    /v1/responses/{id}` and `previous_response_id`. Each keeps the whole conversation it answered (`input`: every
    earlier turn, already resolved, and this request's input items) and its `output` items, so any stored response
    can be continued, branches included, by sending the upstream `input + output + the new input` statelessly,
    whether or not its ancestors were deleted since."""

    id = models.CharField(primary_key=True, max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    created_at = models.DateTimeField(default=timezone.now)
    input = models.JSONField(default=list)
    output = models.JSONField(default=list)
    body = models.JSONField(help_text="The response object as it was answered.")

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="stored_response_user_time")]

    def __str__(self) -> str:
        return self.id


class UsageDaily(models.Model):
    """Exact daily totals of the usage records, one row per (UTC day, user, token, provider, model, status), kept in
    the same transaction that writes the records and rebuildable from them (`manage.py rebuild_usage_rollups`).
    The dashboard and the spend summaries read these instead of the raw rows. `user_key`/`token_key` are the ids
    (0 for none), not foreign keys, so a row's key never changes; `model` is the upstream model, or the requested
    one when the request never reached an upstream."""

    day = models.DateField()
    user_key = models.BigIntegerField(default=0)
    token_key = models.BigIntegerField(default=0)
    provider = models.CharField(max_length=20, blank=True)
    model = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=20, choices=UsageStatus.choices)
    requests = models.BigIntegerField(default=0)
    unpriced = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal("0"))
    saved_usd = models.DecimalField(max_digits=24, decimal_places=12, default=Decimal("0"))
    latency_ms_sum = models.BigIntegerField(default=0)
    no_cost = models.BigIntegerField(default=0, help_text="Requests with no cost recorded (`cost_usd` empty).")
    price_missing = models.BigIntegerField(
        default=0,
        help_text="Requests that used tokens and have no cost: their model has no price (what `/api/v1/usage` calls "
        "`unpriced`).",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "user_key", "token_key", "provider", "model", "status"], name="uniq_usage_daily"
            )
        ]
        indexes = [
            models.Index(fields=["user_key", "day"], name="usage_daily_user"),
            models.Index(fields=["token_key", "day"], name="usage_daily_token"),
            models.Index(fields=["model", "day"], name="usage_daily_model"),
        ]
        verbose_name = "daily usage total"

    def __str__(self) -> str:
        return f"{self.day} user {self.user_key} token {self.token_key} {self.model} {self.status}: {self.requests}"


class UsageLatencyDaily(models.Model):
    """Per UTC day and provider, how many requests fell in each latency bucket (`metric` "latency": the whole
    request; "ttft": time to first token of streamed ones). Percentiles over any range of days are read from these
    counts, exact to the bucket (bounds in llm/rollups.py)."""

    day = models.DateField()
    provider = models.CharField(max_length=20, blank=True)
    metric = models.CharField(max_length=10)
    bucket = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "provider", "metric", "bucket"], name="uniq_usage_latency_daily")
        ]
        verbose_name = "daily latency histogram"

    def __str__(self) -> str:
        return f"{self.day} {self.provider} {self.metric}[{self.bucket}] = {self.count}"
