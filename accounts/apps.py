from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self) -> None:
        from accounts import checks, schema  # noqa: F401  (registers system checks and the OpenAPI extension)
        from accounts.authentication import aauthenticate_request
        from common import asgi

        # The API's lean ASGI handler authenticates from the headers before it reads a body.
        asgi.set_authenticator(aauthenticate_request)
