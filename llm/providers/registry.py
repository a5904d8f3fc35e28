"""The providers, registered in one place: adding one is a new module under `llm/providers/` plus one line here.

Everything else is derived from the classes (see `SDKProvider`): the choices of forms and model fields (a callable,
so a new provider needs no migration), the `provider` values the APIs accept, the model prefixes, routing by model
family, the defaults and the SDK client.
"""

from typing import Literal

from django.utils.module_loading import import_string

from llm.providers.clients import SDKProvider

# One line per provider, in the order forms and lists show them.
PROVIDER_CLASSES = (
    "llm.providers.openai_provider.OpenAIProvider",
    "llm.providers.anthropic_provider.AnthropicProvider",
    "llm.providers.local_provider.LocalProvider",
)

PROVIDERS: dict[str, type[SDKProvider]] = {}


def register(provider: type[SDKProvider]) -> type[SDKProvider]:
    PROVIDERS[provider.name] = provider
    return provider


for _path in PROVIDER_CLASSES:
    register(import_string(_path))


def provider_names() -> tuple[str, ...]:
    return tuple(PROVIDERS)


def provider_choices() -> list[tuple[str, str]]:
    """`choices` of the model fields and forms that name a provider (called each time, hence never stale)."""
    return [(name, provider.label) for name, provider in PROVIDERS.items()]


def provider_literal():
    """`Literal["openai", ...]` of the providers registered when it is called (pydantic request models)."""
    return Literal[provider_names()]  # type: ignore[valid-type]


def provider_class(name: str) -> type[SDKProvider] | None:
    return PROVIDERS.get(name)


def provider_for_family(model: str) -> type[SDKProvider] | None:
    """The provider whose model names `model` looks like (`claude-*` -> anthropic), if any."""
    for provider in PROVIDERS.values():
        if provider.model_pattern is not None and provider.model_pattern.match(model):
            return provider
    return None
