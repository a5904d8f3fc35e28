"""Which settings each entry point runs on when nobody says: the deployed ones (WSGI, ASGI, Celery) production,
the development ones (manage.py) the local settings. Each case is a fresh process with a scrubbed environment."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

_SHOW = """
import json, sys
import {module}
from django.conf import settings
print(json.dumps({{"module": settings.SETTINGS_MODULE, "debug": settings.DEBUG, "secret": settings.SECRET_KEY}}))
"""


def _env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PYTEST", "SECURE_", "DEBUG", "FIELD_ENCRYPTION"))
    }
    env.update(overrides)
    return env


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=_env(**env), capture_output=True, text=True, timeout=120
    )


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(b"k" * 32).decode()


@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi", "config.celery"])
def test_deployed_entry_points_refuse_to_start_on_their_defaults_without_a_secret_key(module):
    # No DJANGO_SETTINGS_MODULE and no secret: production settings are chosen, and they refuse the public default key.
    result = _python(_SHOW.format(module=module) + "\nimport django; django.setup()")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set in production" in result.stderr


@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi", "config.celery"])
def test_deployed_entry_points_default_to_production_settings(module):
    secret = "s" * 50
    result = _python(_SHOW.format(module=module), DJANGO_SECRET_KEY=secret, FIELD_ENCRYPTION_KEYS=_fernet_key())
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"module": "config.settings.production", "debug": False, "secret": secret}


def test_an_explicit_settings_module_still_wins_on_a_deployed_entry_point():
    result = _python(_SHOW.format(module="config.wsgi"), DJANGO_SETTINGS_MODULE="config.settings.test")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["module"] == "config.settings.test"


def test_manage_py_keeps_the_development_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "diffsettings", "--all"],
        cwd=BASE_DIR,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "DEBUG = True" in result.stdout.splitlines()
    assert "SETTINGS_MODULE = 'config.settings.local'" in result.stdout


def test_make_run_names_the_development_settings_and_serve_and_worker_production():
    makefile = (BASE_DIR / "Makefile").read_text()
    assert "export DJANGO_SETTINGS_MODULE ?= config.settings.local" in makefile
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "SERVE_SETTINGS", "MAKEFLAGS")}
    for target in ("serve", "worker"):
        plan = subprocess.run(["make", "-n", target], cwd=BASE_DIR, env=env, capture_output=True, text=True).stdout
        plan = plan.replace("\\\n", " ")  # one line per command
        started = [line for line in plan.splitlines() if "gunicorn" in line or "celery" in line]
        assert started and all("DJANGO_SETTINGS_MODULE=config.settings.production" in line for line in started), plan


def test_readme_names_the_settings_module_for_pythonanywhere():
    readme = (BASE_DIR / "README.md").read_text()
    assert 'os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.production"' in readme
