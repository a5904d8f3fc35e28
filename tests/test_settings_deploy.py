"""Settings as an operator meets them: each case runs `manage.py` or Python in a fresh process with its own
environment, because the settings read the environment once, at import."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent

# Variables a developer's shell (or this suite's own run) may carry that would change what is being tested.
_SCRUBBED = {
    "DATABASE_URL",
    "REDIS_URL",
    "DEBUG",
    "DJANGO_SECRET_KEY",
    "FIELD_ENCRYPTION_KEYS",
    "DJANGO_ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "USE_X_FORWARDED_PROTO",
    "LOG_FORMAT",
    "LOG_LEVEL",
}


def run(args: list[str], **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["FIELD_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()  # production needs one; tests override it
    env.update(env_overrides)
    return subprocess.run(args, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "manage.py", *args], **env)


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", code], **env)


def last_json_line(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def random_secret_key() -> str:
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789!@#%^&*(-_=+)") for _ in range(50))


def test_check_deploy_is_clean_under_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=random_secret_key(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_would_flag_the_development_defaults():
    # The same command must be able to fail: under the development settings it does.
    result = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SETTINGS_MODULE="config.settings.local")
    assert result.returncode != 0
    assert "security.W018" in result.stderr  # DEBUG on


def test_production_refuses_to_start_without_a_secret_key():
    # An empty value counts as missing (and also stops an optional `.env` from supplying one).
    for command in (["check"], ["migrate", "--plan"]):
        result = manage(*command, DJANGO_SETTINGS_MODULE="config.settings.production", DJANGO_SECRET_KEY="")
        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr
        assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_field_encryption_keys():
    for command in (["check"], ["migrate", "--plan"]):
        result = manage(
            *command,
            DJANGO_SETTINGS_MODULE="config.settings.production",
            DJANGO_SECRET_KEY=random_secret_key(),
            FIELD_ENCRYPTION_KEYS="",
        )
        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr
        assert "FIELD_ENCRYPTION_KEYS must be set in production" in result.stderr
        assert "rotate_encryption_keys" in result.stderr  # how an existing install moves its secrets over
    result = python(
        "import config.asgi",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=random_secret_key(),
        FIELD_ENCRYPTION_KEYS=" , ",
    )
    assert result.returncode != 0 and "FIELD_ENCRYPTION_KEYS must be set" in result.stderr


def test_development_still_starts_without_field_encryption_keys():
    result = manage("check", DJANGO_SETTINGS_MODULE="config.settings.local", FIELD_ENCRYPTION_KEYS="")
    assert result.returncode == 0, result.stderr


def test_malformed_field_encryption_keys_stop_the_start_with_a_clear_error():
    bad = "not-a-fernet-key-but-a-secret-value"
    result = manage("check", DJANGO_SETTINGS_MODULE="config.settings.local", FIELD_ENCRYPTION_KEYS=bad)
    assert result.returncode != 0
    assert "common.E001" in result.stderr and "key #1 is not a Fernet key" in result.stderr
    assert bad not in result.stderr + result.stdout


def test_asgi_entry_refuses_too():
    result = python("import config.asgi", DJANGO_SETTINGS_MODULE="config.settings.production", DJANGO_SECRET_KEY="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


_SHOW_SECURITY = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "hsts": s.SECURE_HSTS_SECONDS, "hsts_sub": s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "preload": s.SECURE_HSTS_PRELOAD,
    "ssl_redirect": s.SECURE_SSL_REDIRECT, "session_secure": s.SESSION_COOKIE_SECURE,
    "csrf_secure": s.CSRF_COOKIE_SECURE, "proxy": getattr(s, "SECURE_PROXY_SSL_HEADER", None), "debug": s.DEBUG,
}))
"""


def test_production_defaults_are_secure():
    seen = last_json_line(
        python(_SHOW_SECURITY, DJANGO_SETTINGS_MODULE="config.settings.production", DJANGO_SECRET_KEY="k" * 50)
    )
    assert seen == {
        "hsts": 31_536_000,
        "hsts_sub": True,
        "preload": True,
        "ssl_redirect": True,
        "session_secure": True,
        "csrf_secure": True,
        "proxy": None,
        "debug": False,
    }


def test_hsts_secure_cookies_and_proxy_header_are_set_by_env():
    seen = last_json_line(
        python(
            _SHOW_SECURITY,
            DJANGO_SETTINGS_MODULE="config.settings.production",
            DJANGO_SECRET_KEY="k" * 50,
            SECURE_HSTS_SECONDS="600",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
            SECURE_HSTS_PRELOAD="false",
            SECURE_SSL_REDIRECT="false",
            SESSION_COOKIE_SECURE="false",
            CSRF_COOKIE_SECURE="false",
            USE_X_FORWARDED_PROTO="true",
        )
    )
    assert seen == {
        "hsts": 600,
        "hsts_sub": False,
        "preload": False,
        "ssl_redirect": False,
        "session_secure": False,
        "csrf_secure": False,
        "proxy": ["HTTP_X_FORWARDED_PROTO", "https"],
        "debug": False,
    }


_READINESS = """
import json, django
django.setup()
from django.test import Client
c = Client()
ready = c.get("/api/v1/health/ready", HTTP_X_REQUEST_ID="ready-probe")
live = c.get("/api/v1/health")
print(json.dumps({"ready": [ready.status_code, ready.json(), ready.headers["X-Request-ID"]],
                  "live": [live.status_code, live.json()]}))
"""


def test_readiness_is_503_naming_the_database_when_database_url_is_broken():
    # Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    seen = last_json_line(
        python(
            _READINESS,
            DJANGO_SETTINGS_MODULE="config.settings.test",
            DATABASE_URL="postgres://nobody@127.0.0.1:1/nope",
        )
    )
    status, body, request_id = seen["ready"]
    assert status == 503
    error = body["error"]
    assert error["code"] == "not_ready"
    assert error["message"] == "Failing checks: database."
    assert error["details"]["cache"] == "ok"
    # The probe is public: it says which check failed, never the driver's text (hosts, ports, user names).
    assert error["details"]["database"] == "unavailable"
    assert "OperationalError" not in json.dumps(body) and "nobody" not in json.dumps(body)
    assert error["request_id"] == request_id == "ready-probe"
    # Liveness does not depend on the database at all.
    assert seen["live"] == [200, {"status": "ok"}]
