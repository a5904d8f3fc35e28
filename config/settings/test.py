"""Tests: the same env-driven settings, with fast hashing and no HTTPS redirects."""

from config.env import env

from .base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
RATE_LIMIT_ENABLED = True
# The per-test transaction lives on the test thread's connection; tests over real HTTP (tests/live.py) and the
# event-loop test switch the dedicated database thread back on (server processes started by tests, through the env).
DB_THREAD_ENABLED = env.bool("DB_THREAD_ENABLED", default=False)

# Lets parallel local runs on one PostgreSQL server keep apart (CI uses the default, `test_<name>`).
_test_db_name = env.str("TEST_DATABASE_NAME", default="")
if _test_db_name:
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name}  # noqa: F405
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not shared-cache memory: concurrent requests in tests then lock like they do in production (WAL and
    # busy_timeout waits) instead of failing at once with "database table is locked". One file per test process.
    import os
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"djllm-test-{os.getpid()}.sqlite3")
    }
    # Tests that slow the database down on purpose (test_event_loop) hold the write lock longer than real life.
    DATABASES["default"]["OPTIONS"]["init_command"] = DATABASES["default"]["OPTIONS"]["init_command"].replace(  # noqa: F405
        "busy_timeout=5000", "busy_timeout=60000"
    )
