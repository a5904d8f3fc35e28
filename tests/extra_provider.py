"""A provider that exists only in the tests: everything adding one takes, a module like this one and its line in
`llm.providers.registry.PROVIDER_CLASSES` (test_provider_registry.py registers it in a fresh process)."""

import re

from llm.providers.openai_provider import OpenAIProvider


class ExtraProvider(OpenAIProvider):
    name = "extra"
    label = "Extra (OpenAI-compatible)"
    api_key_setting = "EXTRA_LLM_API_KEY"
    base_url_setting = "EXTRA_LLM_BASE_URL"
    sdk_base_url = "https://api.extra.example/v1"
    model_setting = "EXTRA_LLM_MODEL"
    model_pattern = re.compile(r"^extra-")
    model_hint = "extra-*"
    default_max_tokens_setting = "EXTRA_LLM_MAX_TOKENS"
