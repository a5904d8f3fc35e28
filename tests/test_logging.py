"""No API token ever reaches a log line, at any level, in either format; production writes JSON lines that carry
the request id.

The in-process tests capture what the *configured* console handler (its filters and formatter, from
`settings.LOGGING`) writes, with every logger at DEBUG and Django's SQL logging on.
"""

import copy
import io
import json
import logging
import logging.config
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.test import override_settings

from accounts import services
from common.logging import RedactSecretsFilter
from tests.factories import UserFactory

BASE_DIR = Path(__file__).resolve().parent.parent


def console_handler() -> logging.Handler:
    handlers = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactSecretsFilter) for f in h.filters)]
    assert len(handlers) == 1, "settings.LOGGING should give the root logger one redacting console handler"
    assert handlers[0] in logging.getLogger("django").handlers
    return handlers[0]


def configured_formatter(name: str) -> logging.Formatter:
    spec = copy.deepcopy(settings.LOGGING["formatters"][name])
    return logging.config.DictConfigurator({}).configure_formatter(spec)


@contextmanager
def captured_console(formatter: str):
    """Everything the configured console handler writes, with `formatter`, every logger at DEBUG."""
    handler = console_handler()
    stream = io.StringIO()
    old_stream = handler.setStream(stream)
    old_formatter = handler.formatter
    handler.setFormatter(configured_formatter(formatter))
    names = ["", "django", "django.request", "django.db.backends", "django.security", "accounts", "common"]
    levels = {name: logging.getLogger(name).level for name in names}
    old_handler_level = handler.level
    try:
        handler.setLevel(logging.DEBUG)
        for name in names:
            logging.getLogger(name).setLevel(logging.DEBUG)
        yield stream
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        handler.setLevel(old_handler_level)
        handler.setFormatter(old_formatter)
        handler.setStream(old_stream)


def exercise_every_token_path(client, *, request_id: str) -> list[str]:
    """Requests with valid, invalid and revoked tokens in both headers, plus deliberate logging of secrets.

    Returns the secrets that must not appear."""
    user = UserFactory(username="logger-alice")
    valid = services.api_token_create(user=user, name="valid")[1]
    revoked_row, revoked = services.api_token_create(user=user, name="revoked")
    services.api_token_revoke(token=revoked_row)
    invalid = valid[:-6] + "AAAAAA"  # right prefix, wrong secret
    expected = {valid: 200, invalid: 401, revoked: 401}

    for plaintext, status in expected.items():
        for header in ({"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}, {"HTTP_X_API_TOKEN": plaintext}):
            response = client.get("/api/v1/me", HTTP_X_REQUEST_ID=request_id, **header)
            assert response.status_code == status, response.content
            both = {"HTTP_AUTHORIZATION": f"Bearer {plaintext}", "HTTP_X_API_TOKEN": plaintext}
            client.patch(
                "/api/v1/me", {"timezone": "Nowhere/Land"}, format="json", HTTP_X_REQUEST_ID=request_id, **both
            )
            client.get("/api/v1/nothing-here", HTTP_X_REQUEST_ID=request_id, **header)

    # A token in the query string is not accepted, but the URL ends up in Django's request log (and its `request`).
    client.get(f"/api/v1/nothing-here?token={valid}", HTTP_X_REQUEST_ID=request_id)

    log = logging.getLogger("djllm.tests.careless")
    log.debug("Authorization: %s", f"Bearer {valid}")
    log.debug("Authorization: Bearer " + valid)
    log.info("headers were %s", {"Authorization": f"Bearer {valid}", "X-API-Token": valid})
    log.info("X-API-Token=%s and token %s", revoked, invalid)
    log.warning("incoming", extra={"authorization": f"Bearer {valid}", "headers": {"X-API-Token": revoked}})
    log.info("stack while handling %s", valid[:12], stack_info=True, extra={"seen": [valid, {"t": revoked}]})
    try:
        raise ValueError(f"could not use {valid}")
    except ValueError:
        log.exception("failed with %s", invalid)
    return [valid, invalid, revoked]


def secret_parts(tokens: list[str]) -> list[str]:
    # The whole token and its secret half (everything after djl_<prefix>_).
    return [part for token in tokens for part in (token, token.split("_", 2)[2])]


@pytest.mark.django_db
@pytest.mark.parametrize("formatter", ["text", "json"])
def test_no_token_in_any_log_line_even_at_debug(api_client, formatter):
    with override_settings(DEBUG=True), captured_console(formatter) as stream:
        tokens = exercise_every_token_path(api_client, request_id=f"log-{formatter}")
    output = stream.getvalue()

    # The capture really saw the requests and the careless lines...
    assert "Unauthorized: /api/v1/me" in output
    assert "Not Found: /api/v1/nothing-here" in output
    assert "SELECT" in output  # SQL logging was on
    assert "[REDACTED]" in output
    assert "could not use" in output and "ValueError" in output
    # ... and no secret survived.
    for secret in secret_parts(tokens):
        assert secret not in output

    if formatter == "json":
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert lines
        request_lines = [line for line in lines if line["message"].startswith("Unauthorized: ")]
        assert request_lines and all(line["request_id"] == "log-json" for line in request_lines)
        careless = [line for line in lines if line["message"] == "incoming"]
        assert careless and careless[0]["authorization"] == "Bearer [REDACTED]"
    else:
        assert "[log-text] Unauthorized: /api/v1/me" in output


_PRODUCTION_RUN = """
import json, logging, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
from accounts import services
user = services.user_create(username="prod-user")
_, valid = services.api_token_create(user=user)
row, revoked = services.api_token_create(user=user)
services.api_token_revoke(token=row)
c = Client()
statuses = []
for plaintext in (valid, revoked):
    for headers in ({"HTTP_AUTHORIZATION": "Bearer " + plaintext}, {"HTTP_X_API_TOKEN": plaintext}):
        statuses.append(c.get("/api/v1/me", secure=True, HTTP_X_REQUEST_ID="prod-req-1", **headers).status_code)
statuses.append(c.get("/api/v1/missing", secure=True, HTTP_X_REQUEST_ID="prod-req-2").status_code)
logging.getLogger("djllm.careless").debug("Authorization: Bearer %s", valid)
print(json.dumps({"tokens": [valid, revoked], "statuses": statuses}))
"""


def test_production_logs_are_json_lines_with_request_id_and_no_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "LOG_FORMAT", "DEBUG"}}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY="p" * 20 + "roduction-secret-key-for-this-test-only",
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        LOG_LEVEL="DEBUG",
        # Python's own `warnings` print plain text to stderr; they are not log lines.
        PYTHONWARNINGS="ignore",
    )
    result = subprocess.run(
        [sys.executable, "-c", _PRODUCTION_RUN], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["statuses"] == [200, 200, 401, 401, 404]

    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line is one JSON object
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "request_id", "message"} <= set(line)
    unauthorized = [line for line in lines if line["message"] == "Unauthorized: /api/v1/me"]
    assert len(unauthorized) == 2
    assert all(line["request_id"] == "prod-req-1" and line["level"] == "WARNING" for line in unauthorized)
    not_found = [line for line in lines if line["message"] == "Not Found: /api/v1/missing"]
    assert [line["request_id"] for line in not_found] == ["prod-req-2"]
    assert any(line["message"].startswith("Authorization: [REDACTED]") for line in lines)
    for secret in secret_parts(seen["tokens"]):
        assert secret not in result.stderr and secret not in result.stdout.splitlines()[0:-1]
