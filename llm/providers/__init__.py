"""Providers: the interface and its data types, and the registry (`llm.providers.registry`): name -> class."""

from django.views.decorators.debug import sensitive_variables

from llm.providers.base import ChatRequest, Chunk, Completion, Message, Provider, ProviderError, Usage
from llm.providers.registry import PROVIDERS


@sensitive_variables("api_key")
def provider_for(name: str, *, base_url: str | None, api_key: str, responses_api: bool = False) -> Provider:
    """`responses_api`: the route says its server has a Responses endpoint (heeded by providers that ask routes)."""
    return PROVIDERS[name](name=name, base_url=base_url, api_key=api_key, responses_api=responses_api)


__all__ = [
    "PROVIDERS",
    "ChatRequest",
    "Chunk",
    "Completion",
    "Message",
    "Provider",
    "ProviderError",
    "Usage",
    "provider_for",
]
