"""Model routing: which provider and upstream model serve a requested model name.

Order: an explicit provider prefix (`openai/`, `anthropic/`, `local/`: a registered provider's name); an
admin-managed `ModelRoute` alias; the model name's family (each provider's `model_pattern`: `gpt-*`, `o1`/`o3`/`o4`…,
`chatgpt-*` -> OpenAI; `claude-*` -> Anthropic); the caller's explicit provider. With no model at all: the user's
preferences, then `LLM_PROVIDER` and that provider's default model (`OPENAI_MODEL`, `ANTHROPIC_MODEL`).
"""

from dataclasses import dataclass, field, replace

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from common.crypto import UnreadableSecret
from common.errors import AppError, InvalidRequest, ServiceUnavailable
from common.process_copy import ProcessCopy
from llm import upstream_urls
from llm.models import ModelRoute
from llm.providers.registry import PROVIDERS, provider_for_family

_ROUTE_CACHE_SECONDS = 5.0
_MAX_FALLBACK_DEPTH = 3


class UnknownModel(InvalidRequest):
    code = "unknown_model"


class ProviderNotConfigured(ServiceUnavailable):
    code = "provider_not_configured"


class RouteBaseUrlNotAllowed(ServiceUnavailable):
    """A stored route points at a host outside `LLM_BASE_URL_ALLOWLIST`: refused before anything is sent."""

    code = "route_base_url_not_allowed"


class RouteKeyUnreadable(ServiceUnavailable):
    """A route's stored key cannot be decrypted with `FIELD_ENCRYPTION_KEYS`: that route fails, the others work."""

    code = "route_key_unreadable"


@dataclass(frozen=True)
class Route:
    requested: str  # what the client asked for (alias or model)
    provider: str
    model: str  # upstream model
    base_url: str | None
    api_key: str = field(repr=False)
    fallback: "Route | None" = None
    responses_api: bool = False  # the alias says its OpenAI-compatible server has a Responses endpoint


def _load_table() -> dict[str, ModelRoute]:
    return {r.alias: r for r in ModelRoute.objects.filter(is_active=True).select_related("fallback")}


async def aroutes() -> dict[str, ModelRoute]:
    """The alias table, re-read at most every few seconds per process (and at once after an admin save here)."""
    return await _table.aget()


_table = ProcessCopy(_load_table, seconds=_ROUTE_CACHE_SECONDS, empty={})


def routes_changed() -> None:
    _table.changed()


@sensitive_variables()
def _provider_defaults(provider: str) -> tuple[str | None, str, str]:
    """(base URL, key, env variable to name when what it requires is missing) for a provider."""
    declared = PROVIDERS[provider]
    required = declared.base_url_setting if declared.requires == "base_url" else declared.api_key_setting
    return getattr(settings, declared.base_url_setting), getattr(settings, declared.api_key_setting), required


@sensitive_variables("api_key", "key", "default_key")
def _direct(requested: str, provider: str, model: str, base_url: str = "", api_key: str = "") -> Route:
    """The server's key for a provider goes only to that provider's configured base URL: a route with a base URL of
    its own sends its own key, or none."""
    default_url, default_key, env_name = _provider_defaults(provider)
    if base_url and not upstream_urls.is_configured_endpoint(base_url, provider):
        problem = upstream_urls.base_url_problem(base_url)
        if problem:
            raise RouteBaseUrlNotAllowed(
                f"Model {requested!r} is routed to a base URL this server does not allow; no request was sent. "
                f"{problem}",
                details={"model": requested, "setting": "LLM_BASE_URL_ALLOWLIST"},
            )
        return Route(requested=requested, provider=provider, model=model, base_url=base_url, api_key=api_key)
    url, key = default_url, api_key or default_key
    requires = PROVIDERS[provider].requires
    if requires == "base_url" and not url:
        raise ProviderNotConfigured(
            f"No {provider} model server configured: set {env_name}.", details={"provider": provider, "env": env_name}
        )
    if requires == "api_key" and not key:
        raise ProviderNotConfigured(
            f"The {provider} provider has no API key: set {env_name}.", details={"provider": provider, "env": env_name}
        )
    return Route(requested=requested, provider=provider, model=model, base_url=url or None, api_key=key)


def _route_key(route: ModelRoute) -> str:
    if isinstance(route.api_key, UnreadableSecret):
        raise RouteKeyUnreadable(
            f"The API key stored for model route {route.alias!r} cannot be decrypted with FIELD_ENCRYPTION_KEYS; "
            "no request was sent. An administrator must restore the key it was encrypted with (as a later entry of "
            "FIELD_ENCRYPTION_KEYS) or enter the route's key again.",
            details={"model": route.alias, "setting": "FIELD_ENCRYPTION_KEYS"},
        )
    return route.api_key or ""


def _from_alias(route: ModelRoute, table: dict[str, ModelRoute], depth: int = 0) -> Route:
    fallback = None
    if route.fallback_id and depth < _MAX_FALLBACK_DEPTH:
        target = table.get(route.fallback.alias) if route.fallback else None
        if target is not None and target.pk != route.pk:
            try:
                fallback = _from_alias(target, table, depth + 1)
            except AppError:
                fallback = None  # an unconfigured fallback is skipped, not fatal
    primary = _direct(route.alias, route.provider, route.upstream_model, route.base_url, _route_key(route))
    return replace(primary, fallback=fallback, responses_api=route.responses_api)


def default_model(provider: str) -> str:
    # An unknown `LLM_PROVIDER` gets the first registered provider's default model (which its family then routes).
    declared = PROVIDERS.get(provider) or next(iter(PROVIDERS.values()))
    return declared.default_model()


async def aresolve(requested: str | None, *, provider: str | None = None, preferences=None) -> Route:
    if provider and provider not in PROVIDERS:
        raise InvalidRequest(
            f"Unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}.",
            code="unknown_provider",
            param="provider",
        )
    if not requested:
        provider = provider or (preferences.default_provider if preferences else "") or settings.LLM_PROVIDER
        requested = (preferences.default_model if preferences and preferences.default_model else "") or default_model(
            provider
        )
    head, sep, rest = requested.partition("/")
    if sep and head in PROVIDERS and rest:
        return _direct(requested, head, rest)
    table = await aroutes()
    if requested in table:
        return _from_alias(table[requested], table)
    family = provider_for_family(requested)
    if family is not None:
        return _direct(requested, family.name, requested)
    if provider:
        return _direct(requested, provider, requested)
    hints = "/".join(declared.model_hint for declared in PROVIDERS.values() if declared.model_hint)
    prefixes = ", ".join(f"{name}/" for name in PROVIDERS)
    raise UnknownModel(
        f"No route for model {requested!r}. Use a {hints} name, a prefix ({prefixes}), "
        "or an alias defined in the admin.",
        param="model",
        details={"model": requested},
    )


def routes_table() -> dict[str, ModelRoute]:
    """The active aliases, read now (`aroutes` is this process's copy)."""
    return _load_table()


def provider_configured(provider: str) -> bool:
    """A request can reach the provider without a route of its own: its key (or, for `local`, its URL) is set."""
    try:
        _direct("", provider, "")
    except AppError:
        return False
    return True


def name_to_request(provider: str, model: str, aliases) -> str:
    """What a client sends to reach `model` at `provider`: the bare name where `aresolve` routes it there by its
    family (and no alias takes that name), otherwise `provider/model`."""
    head, sep, _ = model.partition("/")
    if model in aliases or (sep and head in PROVIDERS):
        return f"{provider}/{model}"
    family = provider_for_family(model)
    return model if family is not None and family.name == provider else f"{provider}/{model}"
