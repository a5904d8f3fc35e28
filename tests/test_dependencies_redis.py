"""Redis down: every limiter that counts in the cache follows RATE_LIMIT_FAIL_OPEN, and a cache outage is never a 500.

The cache is pointed at a redis-server of the test's own (stopped mid-test) or at a closed port; the shared Redis
of the suite is never touched."""

import logging
import shutil
import subprocess
import time
from decimal import Decimal

import pytest
import redis
from django.test import Client
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from bench.fake_upstream import Usage as FakeUsage
from common import limiter
from common.limiter import CacheFailurePolicyThrottleMixin
from llm.models import UsageRecord
from tests.processes import free_port

pytestmark = [pytest.mark.redis, pytest.mark.django_db]

CHAT = "/v1/chat/completions"
WEBHOOK = "/api/v1/webhook"


def redis_cache(url: str) -> dict:
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}


CLOSED_PORT_CACHE = redis_cache("redis://127.0.0.1:1/0")  # nothing listens on port 1: refused at once


class OwnRedis:
    """A redis-server of this test's own on a free port, stopped by the test (or at the end), and started again on
    the same port when a test wants to see the service recover."""

    def __init__(self, log_dir) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log_path = log_dir / "redis.log"
        self.process = None
        self.start()

    def start(self) -> None:
        self._log = self._log_path.open("a")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the test's redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_counter():
    limiter.reset_cache_failures()
    yield
    limiter.reset_cache_failures()


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def chat(client, content="Hello there", temperature=0.7):
    # temperature > 0 by default: the response cache (with its own fail-open) stays out of these tests
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "temperature": temperature,
        "max_tokens": 100,
    }
    return client.post(CHAT, body, content_type="application/json")


def readiness_counter(api_client) -> int:
    response = api_client.get("/api/v1/health/ready")
    body = response.json()
    counters = body["counters"] if response.status_code == 200 else body["error"]["details"]["counters"]
    return counters["rate_limiter_cache_errors"]


def test_redis_stopped_mid_test_fails_open_logged_once_and_counted(
    client, token, settings, own_redis, fake_upstream, caplog, api_client
):
    settings.CACHES = redis_cache(own_redis.url)
    settings.RATE_LIMIT_FAIL_OPEN = True
    row = token[0]
    row.rate_limit = "2/h"
    row.save()

    first = chat(client, "one")
    assert first.status_code == 200, first.content
    assert first["X-RateLimit-Limit"] == "2" and first["X-RateLimit-Remaining"] == "1"

    own_redis.stop()
    caplog.set_level(logging.ERROR, logger="common.limiter")
    answers = [chat(client, f"n{i}") for i in range(3)]

    # Over the token's limit of 2, yet served: the limiter could not count, and the policy is fail-open.
    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].content
    assert all("X-RateLimit-Limit" not in a for a in answers)
    assert len(fake_upstream.requests) == 4
    assert UsageRecord.objects.filter(status="ok").count() == 4
    logged = [r for r in caplog.records if r.name == "common.limiter"]
    assert len(logged) == 1, [r.getMessage() for r in logged]  # once a minute, not once a request
    assert "cache is unreachable" in logged[0].getMessage() and "RATE_LIMIT_FAIL_OPEN=true" in logged[0].getMessage()
    assert readiness_counter(api_client) == 3


def test_redis_back_again_limits_and_caches_again_without_a_restart(client, token, settings, own_redis, fake_upstream):
    settings.CACHES = redis_cache(own_redis.url)
    settings.RATE_LIMIT_FAIL_OPEN = True
    row = token[0]
    row.rate_limit = "2/h"
    row.save()
    assert chat(client, "before").status_code == 200

    own_redis.stop()
    assert chat(client, "while down").status_code == 200  # fail open
    own_redis.start()  # the same address, empty: the counters start again

    counted = [chat(client, "after", temperature=0) for _ in range(3)]
    assert [a.status_code for a in counted] == [200, 200, 429], counted[-1].content
    assert counted[0]["X-RateLimit-Remaining"] == "1" and counted[1]["X-RateLimit-Remaining"] == "0"
    assert (counted[0]["X-Djllm-Cached"], counted[1]["X-Djllm-Cached"]) == ("false", "true")  # the cache is back
    assert len(fake_upstream.requests) == 3  # before, while down, and the first after: the second was a hit
    statuses = list(UsageRecord.objects.order_by("id").values_list("status", flat=True))
    assert statuses == ["ok", "ok", "ok", "cached", "rate_limited"]


def test_fail_closed_answers_503_rate_limiter_unavailable_in_both_shapes(client, token, settings, fake_upstream):
    settings.CACHES = CLOSED_PORT_CACHE
    settings.RATE_LIMIT_FAIL_OPEN = False

    openai_shape = chat(client)
    assert openai_shape.status_code == 503, openai_shape.content
    assert openai_shape["Retry-After"] == "5"
    error = openai_shape.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limiter_unavailable", "api_error")

    api_shape = client.post(
        WEBHOOK, {"prompt": "Hello", "type": "summary", "temperature": 0.7}, content_type="application/json"
    )
    assert api_shape.status_code == 503, api_shape.content
    assert api_shape["Retry-After"] == "5"
    body = api_shape.json()["error"]
    assert body["code"] == "rate_limiter_unavailable" and body["request_id"] == api_shape["X-Request-ID"]

    assert fake_upstream.requests == []  # refused before the upstream call
    records = list(UsageRecord.objects.order_by("id").values_list("http_status", "error_code"))
    assert records == [(503, "rate_limiter_unavailable")] * 2
    assert limiter.cache_failures() == 2


def test_fail_open_with_the_cache_unreachable_still_serves_and_counts(client, settings, fake_upstream, api_client):
    settings.CACHES = CLOSED_PORT_CACHE
    settings.RATE_LIMIT_FAIL_OPEN = True
    assert [chat(client, f"n{i}").status_code for i in range(2)] == [200, 200]
    assert len(fake_upstream.requests) == 2

    # Requests are served, so the worker stays in the load balancer: ready, degraded, the cache named.
    ready = api_client.get("/api/v1/health/ready")
    assert ready.status_code == 200, ready.content
    body = ready.json()
    assert body["status"] == "degraded" and body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "unavailable"  # the driver's text goes to the log only
    assert body["counters"] == {"rate_limiter_cache_errors": 2}


def test_fail_closed_readiness_is_503_when_the_cache_is_unreachable(settings, api_client):
    settings.CACHES = CLOSED_PORT_CACHE
    settings.RATE_LIMIT_FAIL_OPEN = False
    ready = api_client.get("/api/v1/health/ready")
    assert ready.status_code == 503
    error = ready.json()["error"]
    assert error["code"] == "not_ready" and error["details"]["cache"] == "unavailable"


def test_budgets_do_not_depend_on_redis(client, token, settings, fake_upstream):
    settings.CACHES = CLOSED_PORT_CACHE
    settings.RATE_LIMIT_FAIL_OPEN = True
    row = token[0]
    row.monthly_budget_usd = Decimal("0.05")
    row.save()
    fake_upstream.configure(usage=FakeUsage(input_tokens=1_000_000, output_tokens=10))  # $0.15: over the budget
    assert chat(client, "spend").status_code == 200
    refused = chat(client, "more")
    assert refused.status_code == 402, refused.content
    assert refused.json()["error"]["code"] == "budget_exceeded"


class _Throttle(CacheFailurePolicyThrottleMixin, AnonRateThrottle):
    rate = "1/h"


class _ThrottledView(APIView):
    authentication_classes = []
    permission_classes = []
    throttle_classes = [_Throttle]

    def get(self, request):
        return Response({"ok": True})


def _throttled_get():
    return _ThrottledView.as_view()(APIRequestFactory().get("/api/v1/throttled"))


def test_drf_throttle_follows_the_same_policy(settings):
    settings.CACHES = CLOSED_PORT_CACHE
    settings.RATE_LIMIT_FAIL_OPEN = True
    assert [_throttled_get().status_code for _ in range(3)] == [200, 200, 200]  # over 1/h, but nothing can count

    settings.RATE_LIMIT_FAIL_OPEN = False
    refused = _throttled_get()
    assert refused.status_code == 503
    assert refused["Retry-After"] == "5"
    assert refused.data["error"]["code"] == "rate_limiter_unavailable"
    assert limiter.cache_failures() == 4


def test_drf_throttle_still_limits_when_the_cache_is_up(settings):
    settings.RATE_LIMIT_FAIL_OPEN = False
    assert [_throttled_get().status_code for _ in range(2)] == [200, 429]
    assert limiter.cache_failures() == 0


_SILENT_REDIS_PROBE = """
import json, django
django.setup()
from django.core.cache import cache
from django.test import Client
from common.limiter import cache_failures, guarded
allowed = guarded(cache.incr, "probe", limiter="probe", default="allowed")
ready = Client().get("/api/v1/health/ready")
print(json.dumps({"allowed": allowed, "failures": cache_failures(), "ready": [ready.status_code, ready.json()]}))
"""


@pytest.mark.django_db(transaction=False)
def test_a_redis_that_never_answers_fails_fast_into_the_policy(tmp_path):
    """A Redis host that accepts connections and never answers (or is gone without refusing): requests are not held
    for the operating system's TCP timeouts. The probe runs in a process of its own with djllm's own settings."""
    import json
    import os
    import socket
    import subprocess
    import sys

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the kernel's backlog; nothing ever reads or answers
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}",
            "REDIS_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            "REDIS_TIMEOUT": "0.5",
            "RATE_LIMIT_FAIL_OPEN": "true",
        }
        # Without a timeout the probe would wait on the silent socket for good; `timeout` turns that into a failure.
        result = subprocess.run(
            [sys.executable, "-c", _SILENT_REDIS_PROBE], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        silent.close()
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["allowed"] == "allowed" and seen["failures"] == 1
    status, body = seen["ready"]
    assert status == 200 and body["status"] == "degraded"  # fail-open: the worker still serves
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "unavailable"
