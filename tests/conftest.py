import contextlib
import os

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts import services, token_cache
from accounts.models import ALL_SCOPES
from tests.factories import UserFactory

# `browser_page` (headless Chromium on `live_server`) and friends: see tests/browser.py.
pytest_plugins = [
    "tests.openapi_check",  # every JSON answer a test receives is checked against the served OpenAPI schema
    "tests.browser",
    "tests.gateway_fixtures",
    "tests.live",
    "tests.api_clients",  # `call`: a resource endpoint through APIClient and over real HTTP
    "tests.fake_upstream_fixtures",
]

REDIS_URL = os.environ.get("REDIS_URL", "")


def pytest_collection_modifyitems(config, items):
    if REDIS_URL:
        return
    skip = pytest.mark.skip(reason="needs REDIS_URL (runs in the PostgreSQL + Redis pass of CI)")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_caches():
    token_cache.clear()
    cache.clear()
    yield
    token_cache.clear()


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def make_token(db):
    def _make(user=None, **kwargs):
        user = user or UserFactory()
        return services.api_token_create(user=user, **kwargs)

    return _make


@pytest.fixture
def token(user, make_token):
    """(APIToken, plaintext) for `user` with every scope."""
    return make_token(user=user, name="test", scopes=list(ALL_SCOPES))


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def auth_client(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    return client


@pytest.fixture(scope="session", autouse=True)
def _close_thread_connections_at_end(django_db_setup, django_db_blocker):
    """Async tests run their sync database calls on asgiref's shared thread (and some on the hot path's database
    thread); connections opened there outlive the test. Close them before the test database is dropped, which
    PostgreSQL refuses while a session is still connected. On a SQLite file, the writers' lock file beside it
    (common/db_thread.py) goes with it."""
    yield
    from django.db import connections

    from tests.live import close_server_thread_connections

    with django_db_blocker.unblock():
        close_server_thread_connections()
    default = connections["default"]
    if default.vendor == "sqlite" and not default.is_in_memory_db():
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{default.settings_dict['NAME']}-writer.lock")
