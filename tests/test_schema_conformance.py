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


def test_every_operation_conforms_to_the_schema(live_djllm, prices, connected, user, tmp_path, monkeypatch):
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id: None)  # jobs stay queued; no broker here
    _, plaintext = account_services.api_token_create(user=user, name="schemathesis")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "run",
        f"{live_djllm.url}/api/schema/",
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
        # Revoking the Google connection would leave every later calendar call unconnected (a 409 is documented,
        # but the run then tests one answer only); it is tested on its own in test_calendar_oauth.
        "--exclude-path",
        "/api/v1/calendar/revoke",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = result.stdout + result.stderr
    assert plaintext not in report  # schemathesis filters auth headers from what it prints
    assert result.returncode == 0, report[-20000:]
    print(report[-3000:])  # the phases and their counts, for the log
    assert "No issues found" in report or " passed" in report, report[-5000:]
