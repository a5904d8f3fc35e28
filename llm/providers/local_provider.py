"""Any OpenAI-compatible server of one's own (Ollama, vLLM, LM Studio, OpenRouter) at `LOCAL_LLM_BASE_URL`."""

from llm.providers.openai_provider import OpenAIProvider


class LocalProvider(OpenAIProvider):
    name = "local"
    label = "Local (OpenAI-compatible)"
    api_key_setting = "LOCAL_LLM_API_KEY"  # optional: such servers often need none
    base_url_setting = "LOCAL_LLM_BASE_URL"
    sdk_base_url = None  # no public endpoint: it serves only when LOCAL_LLM_BASE_URL is set
    model_setting = "OPENAI_MODEL"
    requires = "base_url"
    model_pattern = None  # only by the `local/` prefix, an alias, or `provider: local`
    model_hint = ""
    lists_default_model = False
    # Servers differ by version (vLLM and recent Ollama serve `/v1/responses`, others only chat completions): the
    # route says (`ModelRoute.responses_api`); without a route, the chat translation, which they all serve.
    responses_api = False
    responses_api_by_route = True
