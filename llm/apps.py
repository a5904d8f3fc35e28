from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = "LLM gateway"

    def ready(self) -> None:
        from accounts.models import set_provider_choices
        from common.shutdown import register_flush
        from llm import checks  # noqa: F401  (registers the system checks)
        from llm.providers.registry import provider_choices
        from llm.recorder import flush_usage_records

        set_provider_choices(provider_choices)  # a user's default provider is one of the registered providers

        register_flush(flush_usage_records)  # a worker shutting down writes every queued usage record first
