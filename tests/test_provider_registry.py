"""One place per provider: what the rest of djllm knows about providers comes from the registry.

The extra provider (tests/extra_provider.py) is registered in a fresh process before Django starts, as its line in
`PROVIDER_CLASSES` would: the request models, model fields, forms, routing, defaults and SDK client pick it up with
no other edit, and no migration is needed.
"""

import json
import os
import subprocess
import sys

from django.conf import settings

from accounts.models import UserPreferences
from llm.models import ModelPrice, ModelRoute
from llm.providers.registry import PROVIDERS, provider_choices
from llm.webhook_calls import WebhookIn

_PROBE = r"""
import asyncio, io, json, os
from decimal import Decimal

from django.utils.module_loading import import_string

from llm.providers import registry

registry.register(import_string("tests.extra_provider.ExtraProvider"))

import django

django.setup()
from django.conf import settings
from django.core.management import call_command

settings.EXTRA_LLM_API_KEY = "sk-extra-test-key-0001"
settings.EXTRA_LLM_BASE_URL = os.environ["EXTRA_BASE_URL"]
settings.EXTRA_LLM_MODEL = "extra-small"
settings.EXTRA_LLM_MAX_TOKENS = 321

from accounts.apis import MeApi
from accounts.models import UserPreferences
from jobs.inputs import BatchOptions
from llm import pricing, routing, upstream_urls
from llm.models import ModelPrice, ModelRoute
from llm.providers import ChatRequest, Message, provider_for
from llm.providers.registry import provider_for_family
from llm.webhook_calls import WebhookIn

out = {}
out["preference_choices"] = list(UserPreferences._meta.get_field("default_provider").choices)
out["route_choices"] = list(ModelRoute._meta.get_field("provider").choices)
out["price_choices"] = list(ModelPrice._meta.get_field("provider").choices)
out["webhook_provider"] = WebhookIn.model_validate({"prompt": "hi", "provider": "extra"}).provider
out["webhook_schema"] = WebhookIn.model_json_schema()["properties"]["provider"]
out["batch_provider"] = BatchOptions.model_validate({"provider": "extra"}).provider
preferences = MeApi.PreferencesSerializer(data={"default_provider": "extra"})
out["preferences_valid"] = preferences.is_valid()
route = asyncio.run(routing.aresolve("extra/extra-large"))
out["prefixed_route"] = [route.provider, route.model, route.base_url]
out["family"] = provider_for_family("extra-medium").name
out["default_model"] = routing.default_model("extra")
out["default_allowlist"] = list(upstream_urls.DEFAULT_ALLOWLIST)
price = pricing.Price(input=Decimal(1), output=Decimal(1), cached_input=Decimal(1), cache_write=Decimal(1))
out["max_tokens_bound"] = pricing.output_token_bound(ChatRequest(model="extra-large", messages=[]), price, "extra")
migrations = io.StringIO()
call_command("makemigrations", "--check", "--dry-run", stdout=migrations)
out["makemigrations"] = migrations.getvalue().strip()
provider = provider_for("extra", base_url=route.base_url, api_key=route.api_key)
completion = asyncio.run(
    provider.complete(ChatRequest(model="extra-large", messages=[Message(role="user", content="hello")]))
)
out["reply"] = completion.text
print(json.dumps(out))
"""


def _probe(base_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.test", EXTRA_BASE_URL=base_url)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_choices_literals_and_defaults_come_from_the_registry():
    assert provider_choices() == [
        ("openai", "OpenAI"),
        ("anthropic", "Anthropic"),
        ("local", "Local (OpenAI-compatible)"),
    ]
    for field in (
        UserPreferences._meta.get_field("default_provider"),
        ModelRoute._meta.get_field("provider"),
        ModelPrice._meta.get_field("provider"),
    ):
        assert list(field.choices) == provider_choices()
    assert WebhookIn.model_json_schema()["properties"]["provider"]["anyOf"][0]["enum"] == list(PROVIDERS)
    assert PROVIDERS["anthropic"].default_max_tokens() == settings.ANTHROPIC_DEFAULT_MAX_TOKENS
    assert PROVIDERS["openai"].default_model() == settings.OPENAI_MODEL


def test_a_registered_provider_appears_everywhere_without_other_edits(fake_upstream):
    fake_upstream.configure(reply="Bonjour from extra")
    seen = _probe(fake_upstream.openai_base_url)

    extra = ["extra", "Extra (OpenAI-compatible)"]
    assert seen["preference_choices"][-1] == extra
    assert seen["route_choices"][-1] == extra
    assert seen["price_choices"][-1] == extra
    assert seen["webhook_provider"] == "extra"
    assert seen["batch_provider"] == "extra"
    assert seen["webhook_schema"]["anyOf"][0]["enum"] == ["openai", "anthropic", "local", "extra"]
    assert seen["preferences_valid"] is True
    assert seen["prefixed_route"] == ["extra", "extra-large", fake_upstream.openai_base_url]
    assert seen["family"] == "extra"
    assert seen["default_model"] == "extra-small"
    assert "api.extra.example" in seen["default_allowlist"]
    assert seen["max_tokens_bound"] == 321
    assert seen["makemigrations"] == "No changes detected"
    # The client switch: the extra provider's requests went out through its SDK, with its key.
    assert seen["reply"] == "Bonjour from extra"
    request = fake_upstream.last_request
    assert request.model == "extra-large"
    assert request.headers.get("authorization") == "Bearer sk-extra-test-key-0001"


def test_an_unknown_provider_is_refused_with_the_registered_names(client, token):
    _, plaintext = token
    response = client.post(
        "/api/v1/webhook",
        data={"prompt": "hi", "provider": "nope"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {plaintext}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"]["provider"] == ["Input should be 'openai', 'anthropic' or 'local'"]
