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


def test_every_operation_conforms_to_the_schema(live_djllm, prices, connected, user, tmp_path, monkeypatch, settings):
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id: None)  # jobs stay queued; no broker here
    # Thousands of requests in a few minutes: with the per-token throttles on, most operations would be answered
    # with their (documented) 429 alone, the schema itself included. They are tested in test_throttling.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api": None, "calendar": None}}
    # A token of its own, with every scope, so that every operation is reached (PATCH /api/v1/me needs `account`).
    # The user is no superuser: its `admin` scope does not let it write prices and routes (see the last run).
    _, plaintext = account_services.api_token_create(user=user, name="schemathesis", scopes=list(ALL_SCOPES))
    url = f"{live_djllm.url}/api/schema/"
    # Revoking the Google connection would leave every later calendar call unconnected, and revoking or rotating a
    # token may stop the one schemathesis sends: those run last, each on its own.
    last = ("/api/v1/calendar/revoke", r"^/api/v1/tokens/\{id\}/(revoke|rotate)$")
    report = _schemathesis(url, plaintext, tmp_path, "--exclude-path", last[0], "--exclude-path-regex", last[1])
    print(report[-3000:])  # the phases and their counts, for the log
    report = _schemathesis(url, plaintext, tmp_path, "--include-path", last[0])
    print(report[-1500:])
    report = _schemathesis(url, plaintext, tmp_path, "--include-path-regex", last[1])
    print(report[-1500:])
    # The user's token reached the writes to prices and routes only to be refused (they need a superuser): a
    # superuser's token makes them for real.
    root = account_services.user_create(username="root", is_superuser=True)
    _, root_plaintext = account_services.api_token_create(user=root, name="schemathesis", scopes=list(ALL_SCOPES))
    report = _schemathesis(url, root_plaintext, tmp_path, "--include-path-regex", r"^/api/v1/(prices|routes)")
    print(report[-1500:])
