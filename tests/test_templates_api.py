"""Prompt templates: `/api/v1/templates` through DRF's test client and over real HTTP (httpx), the webhook with
`template` + `variables` (what the fake upstream receives, the usage record's template version), the built-ins
after their move to `$prompt`/`$language`, and that data migration forward and backward."""

import importlib

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from accounts import services as account_services
from llm import templates_store
from llm.models import PromptTemplate, PromptTemplateVersion, UsageRecord
from tests.api_clients import with_query
from tests.factories import UserFactory

seed_migration = importlib.import_module("llm.migrations.0002_seed_prices_and_templates")
dollar_migration = importlib.import_module("llm.migrations.0011_templates_dollar_placeholders")

URL = "/api/v1/templates"
WEBHOOK = "/api/v1/webhook"

TIDES = {
    "name": "explain",
    "description": "Explain a topic",
    "system": "You explain $topic in $language. Prices in $$.",
    "user_template": "Tell me about $topic, for $audience.",
    "default_model": "gpt-4o",
    "parameters": {"temperature": 0.3, "max_tokens": 50},
}


@pytest.fixture
def builtins(db):
    """The seeded built-ins as the migrations leave them (a transactional test elsewhere may have emptied the
    table: then they are seeded and migrated again here)."""
    if not PromptTemplate.objects.filter(type="summary", source="").exists():
        seed_migration.seed(django_apps, None)
        dollar_migration.forward(django_apps, None)
    templates_store.templates_changed()


@pytest.fixture
def people(user, token, builtins):
    bob = UserFactory(username="bob")
    _, bob_plaintext = account_services.api_token_create(user=bob, name="bob", scopes=["llm"])
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    _, admin_plaintext = account_services.api_token_create(user=admin, name="admin", scopes=["llm"])
    return {"alice": token[1], "bob": bob_plaintext, "bob_user": bob, "admin": admin_plaintext}


def mine(owner, **fields) -> PromptTemplate:
    from llm import services

    return services.prompt_template_create(owner_id=owner.pk, created_by_id=owner.pk, **{**TIDES, **fields})


def assert_error(answer, status: int, code: str) -> dict:
    """`answer`: the `call` fixture's, or a Django test client's response."""
    if hasattr(answer, "status_code"):
        assert answer.status_code == status, answer.content
        error = answer.json()["error"]
    else:
        assert answer.status == status, answer.text
        error = answer.body["error"]
    assert error["code"] == code and error["message"] and error["request_id"], error
    return error


def test_create_edit_versions_delete(call, people):
    created = call("POST", URL, people["alice"], TIDES)
    assert created.status == 201, created.text
    body = created.body
    assert (body["name"], body["shared"], body["type"], body["version"]) == ("explain", False, None, 1)
    assert body["variables"] == ["topic", "language", "audience"]
    assert body["parameters"] == {"temperature": 0.3, "max_tokens": 50} and body["default_model"] == "gpt-4o"
    url = f"{URL}/{body['id']}"

    edited = call("PATCH", url, people["alice"], {"user_template": "Explain $topic to $audience."})
    assert edited.status == 200, edited.text
    assert edited.body["version"] == 2 and edited.body["system"] == TIDES["system"]
    same = call("PATCH", url, people["alice"], {"user_template": "Explain $topic to $audience."})
    assert same.body["version"] == 2  # nothing changed: no new version
    replaced = call("PUT", url, people["alice"], {"name": "explain", "user_template": "Just $topic."})
    assert replaced.body["version"] == 3 and replaced.body["system"] == "" and replaced.body["parameters"] == {}

    versions = call("GET", f"{url}/versions", people["alice"])
    assert versions.status == 200, versions.text
    rows = versions.body["results"]
    assert [v["number"] for v in rows] == [3, 2, 1]
    assert [v["user_template"] for v in rows] == [
        "Just $topic.",
        "Explain $topic to $audience.",
        TIDES["user_template"],
    ]
    assert rows[2]["variables"] == ["topic", "language", "audience"]

    listed = call("GET", with_query(URL, {"shared": "false"}), people["alice"])
    assert [t["name"] for t in listed.body["results"]] == ["explain"]
    assert call("DELETE", url, people["alice"]).status == 204
    assert_error(call("GET", url, people["alice"]), 404, "not_found")
    assert not PromptTemplateVersion.objects.filter(template_id=body["id"]).exists()


def test_another_users_template_is_not_found(call, people, user):
    bobs = mine(people["bob_user"], name="bob-private")
    url = f"{URL}/{bobs.pk}"
    assert_error(call("GET", url, people["alice"]), 404, "not_found")
    assert_error(call("PATCH", url, people["alice"], {"description": "x"}), 404, "not_found")
    assert_error(call("DELETE", url, people["alice"]), 404, "not_found")
    assert_error(call("GET", f"{url}/versions", people["alice"]), 404, "not_found")
    names = [t["name"] for t in call("GET", with_query(URL, {"limit": 500}), people["alice"]).body["results"]]
    assert "bob-private" not in names and "summary" in names  # the shared built-ins are listed
    assert PromptTemplate.objects.get(pk=bobs.pk).description == TIDES["description"]


def test_shared_templates_are_read_only_to_users(call, people):
    summary = PromptTemplate.objects.get(type="summary", source="")
    url = f"{URL}/{summary.pk}"
    body = call("GET", url, people["alice"]).body
    assert (body["name"], body["shared"], body["type"], body["source"]) == ("summary", True, "summary", "")
    assert body["variables"] == ["language", "prompt"] and body["version"] == 1
    assert_error(call("PATCH", url, people["alice"], {"system": "Hacked"}), 403, "permission_denied")
    assert_error(call("DELETE", url, people["alice"]), 403, "permission_denied")
    assert_error(call("POST", URL, people["alice"], {**TIDES, "shared": True}), 403, "permission_denied")
    assert PromptTemplate.objects.get(pk=summary.pk).system == summary.system

    shared = call("POST", URL, people["admin"], {**TIDES, "name": "house-style", "shared": True})
    assert shared.status == 201 and shared.body["shared"] is True
    seen = call("GET", f"{URL}/{shared.body['id']}", people["bob"])
    assert seen.status == 200 and seen.body["name"] == "house-style"
    edited = call("PATCH", url, people["admin"], {"system": "Summarize in $language."})
    assert edited.status == 200 and edited.body["version"] == 2


def test_bad_template_text_and_names_are_400(call, people):
    answer = call("POST", URL, people["alice"], {**TIDES, "user_template": "Leak ${x.__class__} here"})
    error = assert_error(answer, 400, "invalid_request")
    assert first_field(error) == "user_template" and "${x.__class__}" in error["message"]
    assert_error(call("POST", URL, people["alice"], {**TIDES, "name": "summary"}), 400, "invalid_request")
    assert call("POST", URL, people["alice"], TIDES).status == 201
    twice = assert_error(call("POST", URL, people["alice"], TIDES), 400, "invalid_request")
    assert "already have a template" in twice["message"]
    bad = call("POST", URL, people["alice"], {**TIDES, "name": "p", "parameters": {"temperature": 9}})
    assert first_field(assert_error(bad, 400, "invalid_request")) == "parameters.temperature"
    assert PromptTemplate.objects.filter(owner__isnull=False).count() == 1


def first_field(error: dict) -> str:
    """The field the error names first (its message starts with "Invalid", then the field in backquotes)."""
    field = next(iter(error["details"]))
    assert error["message"].startswith(f"Invalid `{field}`"), error
    return field


# --- The webhook with a template -----------------------------------------------------------------


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def webhook(client, **body):
    return client.post(WEBHOOK, body, content_type="application/json")


def test_webhook_renders_the_template_with_its_defaults(client, fake_upstream, user, token):
    template = mine(user)
    fake_upstream.configure(reply="Tides are ...")
    answer = webhook(client, template="explain", variables={"topic": "tides", "audience": "children"})
    assert answer.status_code == 200, answer.content
    sent = fake_upstream.last_request
    assert sent.body["messages"] == [
        {"role": "system", "content": "You explain tides in the same language as the input. Prices in $."},
        {"role": "user", "content": "Tell me about tides, for children."},
    ]
    assert (sent.model, sent.body["temperature"], sent.body["max_tokens"]) == ("gpt-4o", 0.3, 50)
    record = UsageRecord.objects.get()
    assert record.template_version_id == template.current_version_id
    rows = Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}").get("/api/v1/usage/records").json()["results"]
    assert rows[0]["template_version"] == template.current_version_id

    # The request's own model and parameters win; by id as well as by name.
    answer = webhook(
        client,
        template=template.pk,
        variables={"topic": "tides", "audience": "sailors"},
        model="gpt-4o-mini",
        temperature=1.0,
        language="French",
    )
    assert answer.status_code == 200, answer.content
    sent = fake_upstream.last_request
    assert (sent.model, sent.body["temperature"], sent.body["max_tokens"]) == ("gpt-4o-mini", 1.0, 50)
    assert sent.body["messages"][0]["content"] == "You explain tides in French. Prices in $."


def test_missing_or_unknown_variable_is_a_400_naming_it(client, fake_upstream, user):
    mine(user)
    missing = webhook(client, template="explain", variables={"topic": "tides"})
    error = assert_error(missing, 400, "invalid_request")
    assert first_field(error) == "variables.audience" and "$audience" in error["message"]
    unknown = webhook(client, template="explain", variables={"topic": "t", "audience": "a", "colour": "red"})
    error = assert_error(unknown, 400, "invalid_request")
    assert first_field(error) == "variables.colour" and "colour" in error["message"]
    assert_error(webhook(client, prompt="Hi", variables={"topic": "t"}), 400, "invalid_request")
    assert_error(webhook(client, type="summary"), 400, "invalid_request")  # no prompt, no template
    assert fake_upstream.requests == []


def test_values_are_inserted_as_text_never_evaluated(client, fake_upstream, user):
    mine(user, name="raw", system="", user_template="Say: $topic")
    fake_upstream.configure(reply="ok")
    answer = webhook(client, template="raw", variables={"topic": "${x.__class__} $audience $$"})
    assert answer.status_code == 200, answer.content
    assert fake_upstream.last_request.body["messages"] == [
        {"role": "user", "content": "Say: ${x.__class__} $audience $$"}
    ]


def test_another_users_template_cannot_be_used(client, fake_upstream, people):
    bobs = mine(people["bob_user"], name="bob-private")
    for ref in ("bob-private", bobs.pk):
        error = assert_error(webhook(client, template=ref, variables={"topic": "t"}), 400, "template_not_found")
        assert first_field(error) == "template"
    assert fake_upstream.requests == []


def test_editing_makes_a_new_version_and_old_records_keep_theirs(client, fake_upstream, user):
    from llm import services

    template = mine(user, name="raw", system="", user_template="One: $topic")
    first = template.current_version_id
    assert webhook(client, template="raw", variables={"topic": "a"}).status_code == 200
    services.prompt_template_update(template=template, changed_by_id=user.pk, user_template="Two: $topic")
    assert webhook(client, template="raw", variables={"topic": "b"}).status_code == 200
    assert fake_upstream.last_request.body["messages"][-1]["content"] == "Two: b"
    versions = list(UsageRecord.objects.order_by("id").values_list("template_version__number", flat=True))
    assert versions == [1, 2]
    assert UsageRecord.objects.order_by("id").first().template_version_id == first


def test_preferences_apply_when_neither_request_nor_template_says(client, fake_upstream, user):
    user.preferences.default_model = "gpt-4o"
    user.preferences.language = "Dutch"
    user.preferences.save()
    mine(user, name="plain", default_model="", parameters={}, system="Answer in $language.", user_template="$prompt")
    mine(user, name="pinned", default_model="gpt-4o-mini", system="", user_template="$prompt")
    assert webhook(client, template="plain", prompt="Hello").status_code == 200
    sent = fake_upstream.last_request
    assert sent.model == "gpt-4o" and sent.body["messages"][0]["content"] == "Answer in Dutch."
    assert webhook(client, template="pinned", prompt="Hello").status_code == 200
    assert fake_upstream.last_request.model == "gpt-4o-mini"


def test_builtins_use_dollar_placeholders_and_keep_working(client, fake_upstream, builtins):
    summary = PromptTemplate.objects.get(type="summary", source="")
    assert "$language" in summary.system and "{language}" not in summary.system
    assert summary.user_template == "$prompt" and summary.name == "summary"
    fake_upstream.configure(reply="Short.")
    answer = webhook(client, prompt="A long text", type="summary", language="German")
    assert answer.status_code == 200, answer.content
    messages = fake_upstream.last_request.body["messages"]
    assert "in German" in messages[0]["content"] and messages[1] == {"role": "user", "content": "A long text"}
    assert UsageRecord.objects.get().template_version_id == summary.current_version_id
    # `template` naming a built-in type means that type (the batch's old alias keeps working on the webhook too)
    assert webhook(client, prompt="A long text", template="summary").status_code == 200


def test_the_placeholder_migration_forward_and_backward(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate([("llm", "0010_user_templates")])
    executor.loader.build_graph()
    old = executor.loader.project_state([("llm", "0010_user_templates")]).apps.get_model("llm", "PromptTemplate")
    old.objects.update_or_create(
        type="summary", source="", defaults={"system": "Costs $5 in {language}.", "user_template": "{prompt}"}
    )

    executor = MigrationExecutor(connection)
    executor.migrate([("llm", "0011_templates_dollar_placeholders")])
    row = PromptTemplate.objects.get(type="summary", source="")
    assert (row.system, row.user_template, row.name) == ("Costs $$5 in $language.", "$prompt", "summary")
    assert row.current_version.number == 1 and row.current_version.system == row.system

    executor = MigrationExecutor(connection)
    executor.migrate([("llm", "0010_user_templates")])
    executor.loader.build_graph()
    old = executor.loader.project_state([("llm", "0010_user_templates")]).apps.get_model("llm", "PromptTemplate")
    row = old.objects.get(type="summary", source="")
    assert (row.system, row.user_template) == ("Costs $5 in {language}.", "{prompt}")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert PromptTemplate.objects.get(type="summary", source="").system == "Costs $$5 in $language."
