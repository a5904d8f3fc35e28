"""Providers, registered in one explicit dict: provider name -> class."""

from django.views.decorators.debug import sensitive_variables

from llm.providers.anthropic_provider import AnthropicProvider
from llm.providers.base import ChatRequest, Chunk, Completion, Message, Provider, ProviderError, Usage
from llm.providers.openai_provider import OpenAIProvider

PROVIDERS: dict[str, type] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "local": OpenAIProvider,  # any OpenAI-compatible server: Ollama, vLLM, LM Studio, OpenRouter
}


@sensitive_variables("api_key")
def provider_for(name: str, *, base_url: str | None, api_key: str) -> Provider:
    return PROVIDERS[name](name=name, base_url=base_url, api_key=api_key)


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
