"""`/api/v1/models`, `/api/v1/prices` and `/api/v1/routes`, through DRF's client and over real HTTP (the `call`
fixture runs a test once with each): read with the `llm` scope, written only with a superuser's `admin` token, the
gateway's caches refreshed by a write."""

from decimal import Decimal

import pytest

from accounts import services as account_services
from llm.models import ModelPrice, ModelRoute, UsageRecord
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PRICES_URL, ROUTES_URL, MODELS_URL = "/api/v1/prices", "/api/v1/routes", "/api/v1/models"
NEW_PRICE = {"provider": "openai", "model": "gpt-4.1-mini", "input_per_mtok": "0.40", "output_per_mtok": "1.60"}


@pytest.fixture
def tokens(user, gateway_settings, prices):
    """Plaintexts: `reader` (llm), `calendar` (no llm), `user_admin` (a non-superuser's token carrying `admin`),
    `root` (a superuser's llm + admin), `root_reader` (a superuser's llm only)."""
    root = UserFactory(username="root", is_superuser=True, is_staff=True)

    def plaintext(owner, *scopes):
        return account_services.api_token_create(user=owner, scopes=list(scopes))[1]

    return {
        "reader": plaintext(user, "llm"),
        "calendar": plaintext(user, "calendar"),
        "user_admin": plaintext(user, "llm", "admin"),
        "root": plaintext(root, "llm", "admin"),
        "root_reader": plaintext(root, "llm"),
    }


def _error(answer, status: int, code: str) -> None:
    assert answer.status == status, answer.text
    assert answer.body["error"]["code"] == code, answer.text


# --- /api/v1/models and /v1/models ---------------------------------------------------------------------------------


def test_models_lists_aliases_priced_models_and_defaults_with_prices(call, tokens):
    ModelRoute.objects.create(alias="fast", provider="anthropic", upstream_model="claude-haiku-4-5-20251001")
    ModelPrice.objects.create(provider="local", model="llama3", input_per_mtok=0, output_per_mtok=0)
    ModelPrice.objects.create(provider="openai", model="ft-summary", input_per_mtok=1, output_per_mtok=2)
    answer = call("GET", MODELS_URL, tokens["reader"])
    assert answer.status == 200, answer.text
    models = {model["id"]: model for model in answer.body}
    assert answer.body[0]["id"] == "fast" and models["fast"]["route"] is True
    # An alias is priced by its upstream model (a dated snapshot takes the priced name it starts with).
    assert models["fast"]["provider"] == "anthropic" and models["fast"]["price"]["input_per_mtok"] == "1.000000"
    assert models["gpt-4o"]["price"] == {
        "input_per_mtok": "2.500000",
        "output_per_mtok": "10.000000",
        "cached_input_per_mtok": "1.250000",
        "cache_write_per_mtok": None,
        "max_output_tokens": 16384,
        "effective_from": "2025-01-01",
    }
    assert models["claude-sonnet-4-5"]["provider"] == "anthropic" and models["claude-sonnet-4-5"]["route"] is False
    # Names that do not route by themselves are listed with the prefix that does.
    assert models["local/llama3"]["upstream_model"] == "llama3" and "llama3" not in models
    assert models["openai/ft-summary"]["price"]["output_per_mtok"] == "2.000000"
    assert models["gpt-4o-mini"]["price"]["input_per_mtok"] == "0.150000"  # the default model, priced
    only = call("GET", f"{MODELS_URL}?provider=anthropic", tokens["reader"])
    assert {model["provider"] for model in only.body} == {"anthropic"}
    assert {"fast", "claude-haiku-4-5", "claude-sonnet-4-5"} <= {model["id"] for model in only.body}
    _error(call("GET", f"{MODELS_URL}?provider=acme", tokens["reader"]), 400, "invalid_request")
    _error(call("GET", MODELS_URL, tokens["calendar"]), 403, "insufficient_scope")
    # The OpenAI-shaped list names the same models.
    openai_list = call("GET", "/v1/models", tokens["reader"])
    assert openai_list.status == 200, openai_list.text
    assert [model["id"] for model in openai_list.body["data"]] == [model["id"] for model in answer.body]
    assert {m["id"]: m["owned_by"] for m in openai_list.body["data"]}["local/llama3"] == "local"


def test_models_leaves_out_providers_the_server_cannot_reach(tokens, settings, api_client):
    settings.ANTHROPIC_API_KEY = ""
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['reader']}")
    ids = {model["id"] for model in api_client.get(MODELS_URL).json()}
    assert "claude-sonnet-4-5" not in ids and "claude-haiku-4-5" not in ids and "gpt-4o" in ids


# --- reading prices and routes ---------------------------------------------------------------------------------------


def test_prices_page_newest_first_with_filters(call, tokens):
    rows = list(ModelPrice.objects.order_by("-id"))
    first = call("GET", f"{PRICES_URL}?limit=3", tokens["reader"])
    assert first.status == 200, first.text
    assert [price["id"] for price in first.body["results"]] == [row.pk for row in rows[:3]]
    second = call("GET", first.body["next"], tokens["reader"])
    assert [price["id"] for price in second.body["results"]] == [row.pk for row in rows[3:]]
    assert second.body["next"] is None
    anthropic = call("GET", f"{PRICES_URL}?provider=anthropic", tokens["reader"])
    assert {price["model"] for price in anthropic.body["results"]} == {"claude-haiku-4-5", "claude-sonnet-4-5"}
    one = call("GET", f"{PRICES_URL}?model=gpt-4o", tokens["reader"])
    assert [price["model"] for price in one.body["results"]] == ["gpt-4o"]
    shown = call("GET", f"{PRICES_URL}/{rows[0].pk}", tokens["reader"])
    assert shown.status == 200 and shown.body["id"] == rows[0].pk and shown.body["provider"] == rows[0].provider
    _error(call("GET", f"{PRICES_URL}/999999", tokens["reader"]), 404, "not_found")
    _error(call("GET", f"{PRICES_URL}?provider=acme", tokens["reader"]), 400, "invalid_request")
    _error(call("GET", PRICES_URL, tokens["calendar"]), 403, "insufficient_scope")


def test_routes_never_show_a_key(call, tokens):
    backup = ModelRoute.objects.create(alias="backup", provider="anthropic", upstream_model="claude-haiku-4-5")
    secret = "sk-route-secret-0123456789"
    ModelRoute.objects.create(
        alias="fast", provider="openai", upstream_model="gpt-4o-mini", api_key=secret, fallback=backup
    )
    answer = call("GET", ROUTES_URL, tokens["reader"])
    assert answer.status == 200, answer.text
    assert [(r["alias"], r["api_key"], r["fallback"]) for r in answer.body["results"]] == [
        ("fast", "set", "backup"),
        ("backup", "not set", None),
    ]
    assert secret not in answer.text
    assert [r["alias"] for r in call("GET", f"{ROUTES_URL}?provider=anthropic", tokens["reader"]).body["results"]] == [
        "backup"
    ]
    assert (
        call("GET", f"{ROUTES_URL}?alias=fast&is_active=true", tokens["reader"]).body["results"][0]["alias"] == "fast"
    )
    assert call("GET", f"{ROUTES_URL}?is_active=false", tokens["reader"]).body["results"] == []


# --- writing: a superuser's token with the admin scope -----------------------------------------------------------------


def test_only_a_superusers_admin_token_writes_prices(call, tokens):
    price = ModelPrice.objects.get(model="gpt-4o")
    attempts = [
        ("POST", PRICES_URL, NEW_PRICE),
        ("PATCH", f"{PRICES_URL}/{price.pk}", {"input_per_mtok": "9"}),
        ("DELETE", f"{PRICES_URL}/{price.pk}", None),
    ]
    for method, path, body in attempts:
        _error(call(method, path, tokens["reader"], body), 403, "insufficient_scope")
        _error(call(method, path, tokens["root_reader"], body), 403, "insufficient_scope")
        refused = call(method, path, tokens["user_admin"], body)
        _error(refused, 403, "permission_denied")
        assert "superuser" in refused.body["error"]["message"]
    assert not ModelPrice.objects.filter(model="gpt-4.1-mini").exists()
    assert ModelPrice.objects.get(pk=price.pk).input_per_mtok == Decimal("2.5")

    created = call("POST", PRICES_URL, tokens["root"], NEW_PRICE)
    assert created.status == 201, created.text
    row = ModelPrice.objects.get(pk=created.body["id"])
    assert (row.provider, row.model, row.input_per_mtok, row.cached_input_per_mtok) == (
        "openai",
        "gpt-4.1-mini",
        Decimal("0.4"),
        None,
    )
    assert created.body["max_output_tokens"] == 16384 and created.body["effective_from"] == str(row.effective_from)
    changed = call("PATCH", f"{PRICES_URL}/{row.pk}", tokens["root"], {"output_per_mtok": 2, "max_output_tokens": 8192})
    assert changed.status == 200, changed.text
    row.refresh_from_db()
    assert (row.output_per_mtok, row.max_output_tokens, row.input_per_mtok) == (Decimal("2"), 8192, Decimal("0.4"))
    deleted = call("DELETE", f"{PRICES_URL}/{row.pk}", tokens["root"])
    assert deleted.status == 204 and not ModelPrice.objects.filter(pk=row.pk).exists()
    _error(call("DELETE", f"{PRICES_URL}/{row.pk}", tokens["root"]), 404, "not_found")


def test_price_writes_are_checked_as_in_the_admin(call, tokens):
    existing = ModelPrice.objects.get(model="gpt-4o")
    for body, field in [
        ({**NEW_PRICE, "provider": "acme"}, "provider"),
        ({**NEW_PRICE, "input_per_mtok": "-1"}, "input_per_mtok"),
        ({**NEW_PRICE, "output_per_mtok": "1.1234567"}, "output_per_mtok"),
        ({**NEW_PRICE, "model": ""}, "model"),
        ({key: value for key, value in NEW_PRICE.items() if key != "output_per_mtok"}, "output_per_mtok"),
        ({**NEW_PRICE, "max_output_tokens": 0}, "max_output_tokens"),
    ]:
        answer = call("POST", PRICES_URL, tokens["root"], body)
        _error(answer, 400, "invalid_request")
        assert field in answer.body["error"]["details"], answer.text
    # One price per model and day, as the admin's form says.
    same_day = {**NEW_PRICE, "model": "gpt-4o", "effective_from": str(existing.effective_from)}
    duplicate = call("POST", PRICES_URL, tokens["root"], same_day)
    _error(duplicate, 400, "invalid_request")
    assert ModelPrice.objects.filter(model="gpt-4o").count() == 1


def test_route_writes_keep_the_key_write_only(call, tokens, settings):
    created = call(
        "POST",
        ROUTES_URL,
        tokens["root"],
        {"alias": "fast", "provider": "openai", "upstream_model": "gpt-4o-mini", "api_key": "sk-own-key-123456"},
    )
    assert created.status == 201, created.text
    assert created.body["api_key"] == "set" and "sk-own-key" not in created.text
    route = ModelRoute.objects.get(alias="fast")
    assert route.api_key == "sk-own-key-123456"
    renamed = call("PATCH", f"{ROUTES_URL}/{route.pk}", tokens["root"], {"upstream_model": "gpt-4o"})
    assert renamed.status == 200 and renamed.body["api_key"] == "set"
    route.refresh_from_db()
    assert (route.upstream_model, route.api_key) == ("gpt-4o", "sk-own-key-123456")
    cleared = call("PATCH", f"{ROUTES_URL}/{route.pk}", tokens["root"], {"api_key": ""})
    assert cleared.status == 200 and cleared.body["api_key"] == "not set"
    backup = call(
        "POST", ROUTES_URL, tokens["root"], {"alias": "backup", "provider": "anthropic", "upstream_model": "claude-x"}
    )
    assert backup.status == 201, backup.text
    linked = call("PATCH", f"{ROUTES_URL}/{route.pk}", tokens["root"], {"fallback": "backup"})
    assert linked.status == 200 and linked.body["fallback"] == "backup"
    _error(call("PATCH", f"{ROUTES_URL}/{route.pk}", tokens["root"], {"fallback": "nowhere"}), 400, "invalid_request")
    blank = call(
        "PATCH", f"{ROUTES_URL}/{route.pk}", tokens["root"], {"fallback": ""}
    )  # null removes it; "" is no alias
    _error(blank, 400, "invalid_request")
    assert "fallback" in blank.body["error"]["details"]
    for hostile in ("back\x00up",):  # never sent to the database (PostgreSQL refuses a NUL byte)
        refused = call("PATCH", f"{ROUTES_URL}/{route.pk}", tokens["root"], {"fallback": hostile})
        _error(refused, 400, "invalid_request")
        assert "NUL byte or invalid text" in str(refused.body["error"]["details"]["fallback"])
    # As in the admin: a base URL must be a host LLM_BASE_URL_ALLOWLIST allows; an alias is unique.
    settings.LLM_BASE_URL_ALLOWLIST = ["api.openai.com"]
    outside = call("PATCH", f"{ROUTES_URL}/{route.pk}", tokens["root"], {"base_url": "https://evil.example.com/v1"})
    _error(outside, 400, "invalid_request")
    assert "base_url" in outside.body["error"]["details"]
    duplicate = call(
        "POST", ROUTES_URL, tokens["root"], {"alias": "fast", "provider": "openai", "upstream_model": "gpt-4o"}
    )
    _error(duplicate, 400, "invalid_request")
    assert "alias" in duplicate.body["error"]["details"]
    _error(call("DELETE", f"{ROUTES_URL}/{route.pk}", tokens["user_admin"]), 403, "permission_denied")
    assert call("DELETE", f"{ROUTES_URL}/{backup.body['id']}", tokens["root"]).status == 204
    route.refresh_from_db()
    assert route.fallback is None and route.base_url == ""


def test_route_responses_api_flag_is_shown_and_written(call, tokens):
    local = call(
        "POST",
        ROUTES_URL,
        tokens["root"],
        {"alias": "vllm", "provider": "local", "upstream_model": "qwen3", "responses_api": True},
    )
    assert local.status == 201, local.text
    assert local.body["responses_api"] is True and ModelRoute.objects.get(alias="vllm").responses_api is True
    plain = call("POST", ROUTES_URL, tokens["root"], {"alias": "ollama", "provider": "local", "upstream_model": "q"})
    assert plain.status == 201 and plain.body["responses_api"] is False  # omitted: the chat translation
    listed = call("GET", ROUTES_URL, tokens["reader"]).body["results"]
    assert {r["alias"]: r["responses_api"] for r in listed} == {"vllm": True, "ollama": False}
    # As in the admin: an Anthropic route cannot claim a Responses endpoint.
    claude = call(
        "POST",
        ROUTES_URL,
        tokens["root"],
        {"alias": "claude", "provider": "anthropic", "upstream_model": "claude-x", "responses_api": True},
    )
    _error(claude, 400, "invalid_request")
    assert "Only an OpenAI-compatible (local) server" in str(claude.body["error"]["details"]["responses_api"])
    assert not ModelRoute.objects.filter(alias="claude").exists()
    off = call("PATCH", f"{ROUTES_URL}/{local.body['id']}", tokens["root"], {"responses_api": False})
    assert off.status == 200 and off.body["responses_api"] is False


# --- the gateway sees a write at once ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_new_price_and_route_are_used_by_the_next_request(http_call, tokens):
    """Over real HTTP, in one server process: the price and route tables it keeps are refreshed by the write."""
    call = http_call

    def chat(model: str):
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
        return call("POST", "/v1/chat/completions", tokens["reader"], body)

    assert chat("gpt-4o-mini").status == 200  # the price table is now loaded in the server
    first = UsageRecord.objects.latest("id")
    price = ModelPrice.objects.get(model="gpt-4o-mini")
    changed = call(
        "PATCH", f"{PRICES_URL}/{price.pk}", tokens["root"], {"input_per_mtok": "15", "output_per_mtok": "60"}
    )
    assert changed.status == 200, changed.text
    assert chat("gpt-4o-mini").status == 200
    second = UsageRecord.objects.latest("id")
    assert (second.input_tokens, second.output_tokens) == (first.input_tokens, first.output_tokens)
    expected = (second.input_tokens * Decimal(15) + second.output_tokens * Decimal(60)) / Decimal(1_000_000)
    assert second.cost_usd == expected and second.cost_usd == first.cost_usd * 100

    unknown = chat("quick")
    assert unknown.status == 400 and unknown.body["error"]["code"] == "unknown_model"
    route = call(
        "POST", ROUTES_URL, tokens["root"], {"alias": "quick", "provider": "openai", "upstream_model": "gpt-4o"}
    )
    assert route.status == 201, route.text
    assert chat("quick").status == 200
    routed = UsageRecord.objects.latest("id")
    assert (routed.requested_model, routed.upstream_model, routed.provider) == ("quick", "gpt-4o", "openai")
    assert call("DELETE", f"{ROUTES_URL}/{route.body['id']}", tokens["root"]).status == 204
    assert chat("quick").status == 400


def test_route_filters_refuse_what_they_cannot_read(call, tokens):
    for query in ("is_active=null", "is_active=yes", "provider=acme"):
        _error(call("GET", f"{ROUTES_URL}?{query}", tokens["reader"]), 400, "invalid_request")
