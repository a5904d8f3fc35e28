"""Tests: the same env-driven settings, with fast hashing and no HTTPS redirects."""

from config.env import env

from .base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
RATE_LIMIT_ENABLED = True

# Lets parallel local runs on one PostgreSQL server keep apart (CI uses the default, `test_<name>`).
_test_db_name = env.str("TEST_DATABASE_NAME", default="")
if _test_db_name:
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name}  # noqa: F405
