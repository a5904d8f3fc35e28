from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = "LLM gateway"

    def ready(self) -> None:
        from common.shutdown import register_flush
        from llm import checks  # noqa: F401  (registers the system checks)
        from llm.recorder import flush_usage_records

        register_flush(flush_usage_records)  # a worker shutting down writes every queued usage record first
