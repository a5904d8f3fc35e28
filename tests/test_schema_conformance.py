"""The OpenAPI description is the contract: schemathesis generates requests from `/api/schema/` (valid ones and ones
the schema forbids) for every operation and checks djllm's answers against it. No 5xx, only documented statuses and
content types, bodies matching their schemas, and invalid input rejected.

It runs against djllm over real HTTP, with the providers pointed at the fake upstream and Google Calendar at the
fake Google, as a user who has connected a calendar, with a token of its own."""

import subprocess
import sys
from pathlib import Path

import pytest

from accounts import services as account_services
from accounts.models import ALL_SCOPES
from jobs import services as job_services

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]
MAX_EXAMPLES = 8


def _schemathesis(url: str, plaintext: str, cwd: Path, *operations: str) -> str:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        url,
        "--header",
        f"Authorization: Bearer {plaintext}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",  # the same cases every run: a failure here is reproducible
        "--request-timeout",
        "20",
        "--no-color",
        "--warnings",
        "off",
        *operations,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)
    report = result.stdout + result.stderr
    assert plaintext not in report  # schemathesis filters auth headers from what it prints
    assert result.returncode == 0, report[-20000:]
    assert "No issues found" in report, report[-5000:]
    return report


# Revoking the Google connection would leave the calendar calls after it unconnected, and revoking or rotating a
# token may stop the one schemathesis sends: those operations run in tests of their own.
CALENDAR_REVOKE = "/api/v1/calendar/revoke"
TOKEN_CHANGES = r"^/api/v1/tokens/\{id\}/(revoke|rotate)$"
# The `/v1/` operations run on their own (each run within the suite's timeout): OpenAI's and Anthropic's.
OPENAI_COMPATIBLE = r"^/v1/(?!messages)"
ANTHROPIC_MESSAGES = r"^/v1/messages"
# So do the jobs and usage operations (uploads, CSV downloads).
JOBS_AND_USAGE = r"^/api/v1/(jobs|usage)"
# And the resources: tokens, models, prices, routes.
RESOURCES = r"^/api/v1/(tokens|models|prices|routes)(/|$)"
# And the conversations.
CONVERSATIONS = r"^/api/v1/conversations"
# Prompt templates: a run of their own, so each run stays within the suite's timeout.
TEMPLATES = r"^/api/v1/templates"


@pytest.fixture
def schemathesis_run(live_djllm, prices, connected, tmp_path, monkeypatch, settings):
    """Runs schemathesis against the served schema with a token of `owner` that has every scope."""
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id: None)  # jobs stay queued; no broker here
    # Thousands of requests in a few minutes: with the per-token throttles on, most operations would be answered
    # with their (documented) 429 alone, the schema itself included. They are tested in test_throttling.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api": None, "calendar": None}}

    def run(owner, *operations: str) -> str:
        _, plaintext = account_services.api_token_create(user=owner, name="schemathesis", scopes=list(ALL_SCOPES))
        report = _schemathesis(f"{live_djllm.url}/api/schema/", plaintext, tmp_path, *operations)
        print(report[-3000:])  # the phases and their counts, for the log
        return report

    return run


def test_every_operation_conforms_to_the_schema(schemathesis_run, user):
    # A token with every scope, so that every operation is reached (PATCH /api/v1/me needs `account`).
    schemathesis_run(
        user,
        "--exclude-path",
        CALENDAR_REVOKE,
        "--exclude-path-regex",
        rf"{TOKEN_CHANGES}|^/v1/|{JOBS_AND_USAGE}|{RESOURCES}|{CONVERSATIONS}|{TEMPLATES}",
    )


def test_the_openai_compatible_operations_conform_to_the_schema(schemathesis_run, user):
    schemathesis_run(user, "--include-path-regex", OPENAI_COMPATIBLE)


def test_the_anthropic_compatible_messages_conform_to_the_schema(schemathesis_run, user):
    schemathesis_run(user, "--include-path-regex", ANTHROPIC_MESSAGES)


def test_the_jobs_and_usage_operations_conform_to_the_schema(schemathesis_run, user):
    schemathesis_run(user, "--include-path-regex", JOBS_AND_USAGE)


def test_the_resource_operations_conform_to_the_schema(schemathesis_run, user):
    # The user is no superuser: its `admin` scope does not let it write prices and routes (see the superuser's run).
    schemathesis_run(user, "--include-path-regex", RESOURCES, "--exclude-path-regex", TOKEN_CHANGES)


def test_the_conversations_conform_to_the_schema(schemathesis_run, user):
    schemathesis_run(user, "--include-path-regex", CONVERSATIONS)


def test_prompt_templates_conform_to_the_schema(schemathesis_run, user):
    schemathesis_run(user, "--include-path-regex", TEMPLATES)


def test_revoking_the_calendar_conforms_to_the_schema(schemathesis_run, user):
    schemathesis_run(user, "--include-path", CALENDAR_REVOKE)


def test_revoking_and_rotating_tokens_conform_to_the_schema(schemathesis_run, user):
    schemathesis_run(user, "--include-path-regex", TOKEN_CHANGES)


def test_a_superusers_writes_to_prices_and_routes_conform_to_the_schema(schemathesis_run):
    root = account_services.user_create(username="root", is_superuser=True)
    schemathesis_run(root, "--include-path-regex", r"^/api/v1/(prices|routes)")
