from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = "LLM gateway"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete

        from accounts.models import APIToken, set_provider_choices
        from common.shutdown import register_flush
        from llm import (
            checks,  # noqa: F401  (registers the system checks)
            rollups,
        )
        from llm.providers.registry import provider_choices
        from llm.recorder import flush_usage_records

        set_provider_choices(provider_choices)  # a user's default provider is one of the registered providers

        register_flush(flush_usage_records)  # a worker shutting down writes every queued usage record first

        # A deleted user's or token's records lose their user/token (SET NULL): so do their daily rollups.
        post_delete.connect(rollups.user_deleted, sender=get_user_model(), dispatch_uid="llm.rollups.user_deleted")
        post_delete.connect(rollups.token_deleted, sender=APIToken, dispatch_uid="llm.rollups.token_deleted")
