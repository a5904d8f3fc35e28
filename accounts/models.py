import zoneinfo
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts.rates import parse_rate


class Scope(models.TextChoices):
    LLM = "llm", "LLM"
    CALENDAR = "calendar", "Calendar"
    ACCOUNT = "account", "Account"  # change the account over the API (preferences, tokens)
    # Write prices and model routes over the API. Only a superuser's token can use it (checked on each request),
    # and only a superuser can give it to a token of their own; it is never a default.
    ADMIN = "admin", "Admin"
    # Read the Prometheus `/metrics`. Only a staff user's token can use it (checked on each request), and only staff
    # can hold it; it is never a default.
    METRICS = "metrics", "Metrics"


ALL_SCOPES = [choice.value for choice in Scope]
# What a new token gets when no scopes are named: enough for the LLM and calendar endpoints, but a token that sits
# in a workbook or a script cannot change the account. Name `account` explicitly to get it.
DEFAULT_SCOPES = [Scope.CALENDAR.value, Scope.LLM.value]
# Scopes only a superuser may give a token of their own (whatever their preferences allow).
SUPERUSER_SCOPES = [Scope.ADMIN.value]
# Scopes only a staff user's tokens may carry.
STAFF_SCOPES = [Scope.METRICS.value]


def all_scopes() -> list[str]:
    return list(ALL_SCOPES)


def rate_limit_validator(value: str) -> None:
    """The limiter's own parser decides, so what is saved is what it can count (`10/0s`, a window of no seconds,
    passed a pattern check and divided by zero later)."""
    try:
        parse_rate(value)
    except (ValueError, TypeError):
        raise ValidationError(
            "Use the form N/unit, e.g. 60/m, 1000/h, 10/5s (units: s, m, h, d; a window of at least one second).",
            code="invalid_rate",
        ) from None


class APIToken(models.Model):
    """A database-backed API token. Only a SHA-256 digest of the token is stored.

    The token looks like `djl_<prefix>_<secret>`; the prefix is visible, unique and used for lookup.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, help_text="Any of: llm, calendar, account, admin, metrics.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    rate_limit = models.CharField(
        max_length=20, blank=True, validators=[rate_limit_validator], help_text="Like 60/m. Blank: the default."
    )
    monthly_budget_usd = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Blank: no budget."
    )
    rotated_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"djl_{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def display_prefix(self) -> str:
        return f"djl_{self.prefix}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None and self.revoked_at <= timezone.now()

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.is_revoked:
            return "revoked"
        if self.revoked_at is not None:
            return "rotating"
        if self.is_expired:
            return "expired"
        return "active"

    def clean(self) -> None:
        unknown = set(self.scopes or []) - set(ALL_SCOPES)
        if unknown:
            raise ValidationError({"scopes": f"Unknown scopes: {', '.join(sorted(unknown))}."})


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA timezone name (like Europe/Berlin).")


# The LLM providers are declared by the llm app (its provider registry), which sits above accounts: it hands its
# choices over when it is ready (LlmConfig.ready), so accounts imports nothing of it.
_provider_choices_source: Callable[[], list[tuple[str, str]]] = list


def set_provider_choices(source: Callable[[], list[tuple[str, str]]]) -> None:
    global _provider_choices_source
    _provider_choices_source = source


def provider_choices() -> list[tuple[str, str]]:
    """The providers a user may prefer: `choices` as a callable, so a new provider needs no migration."""
    return _provider_choices_source()


class UserPreferences(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences")
    default_provider = models.CharField(max_length=20, choices=provider_choices, blank=True)
    default_model = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=50, blank=True, help_text="Output language, e.g. English, German.")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    monthly_budget_usd = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Budget across all tokens. Blank: none."
    )
    # Set by an administrator only (the account page and `PATCH /api/v1/me` never offer them).
    rate_limit = models.CharField(
        max_length=20,
        blank=True,
        validators=[rate_limit_validator],
        verbose_name="rate limit across all tokens",
        help_text="Like 120/m, counted over all of this user's tokens on top of each token's own. "
        "Blank: RATE_LIMIT_PER_USER.",
    )
    token_scopes_allowed = models.JSONField(
        default=all_scopes,
        blank=True,
        verbose_name="scopes the user may give own tokens",
        help_text="Tokens this user creates (account page, API) can have only these scopes.",
    )
    token_rate_limit_max = models.CharField(
        max_length=20,
        blank=True,
        validators=[rate_limit_validator],
        verbose_name="fastest rate for own tokens",
        help_text="Like 30/m. Tokens this user creates get at most this rate (no faster on average, no larger "
        "burst); blank asks for this rate. Blank: no cap.",
    )
    token_budget_max_usd = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        verbose_name="largest monthly budget for own tokens",
        help_text="Tokens this user creates get at most this monthly budget; blank asks for it. Blank: no cap.",
    )

    class Meta:
        verbose_name = "preferences"
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"Preferences of {self.user}"

    def clean(self) -> None:
        unknown = set(self.token_scopes_allowed or []) - set(ALL_SCOPES)
        if unknown:
            raise ValidationError({"token_scopes_allowed": f"Unknown scopes: {', '.join(sorted(unknown))}."})
