"""GET /metrics: who may read it, and what the gateway's counters show after real requests through the fake upstream.
The counters live in the test process (no PROMETHEUS_MULTIPROC_DIR), so each test compares before and after; the
multiprocess mode is shown with two real processes writing to one directory."""

import os
import subprocess
import sys
from decimal import Decimal

import pytest
from django.test import Client
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import UserPreferences
from accounts.selectors import token_scopes_grantable
from llm.models import UsageRecord
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def staff_token(make_token):
    staff = UserFactory(username="ops", is_staff=True)
    return make_token(user=staff, name="prometheus", scopes=["metrics"])


@pytest.fixture
def scraper(staff_token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {staff_token[1]}")

    def scrape() -> dict:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain")
        return samples(response.content.decode())

    return scrape


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["code"] == code
    return body["error"]


# --- Access ---------------------------------------------------------------------------------------------------------


def test_a_staff_token_with_the_metrics_scope_reads_the_metrics(scraper):
    scraped = scraper()
    assert ("djllm_job_queue_depth", (("status", "queued"),)) in scraped


def test_without_a_token_it_is_a_401_in_the_error_shape():
    error_of(Client().get("/metrics"), 401, "token_missing")
    error_of(Client(HTTP_AUTHORIZATION="Bearer djl_nope_nope").get("/metrics"), 401, "token_invalid")


def test_a_staff_token_without_the_scope_is_a_403(make_token):
    staff = UserFactory(is_staff=True)
    _, plaintext = make_token(user=staff, scopes=["llm"])
    error = error_of(Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}").get("/metrics"), 403, "insufficient_scope")
    assert error["details"] == {"required_scope": "metrics"}


def test_a_non_staff_token_with_the_scope_is_refused_and_cannot_be_given_it(make_token, user):
    _, plaintext = make_token(user=user, scopes=["metrics"])  # as an administrator could, by mistake
    error = error_of(Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}").get("/metrics"), 403, "permission_denied")
    assert "staff" in error["message"]
    preferences = UserPreferences.objects.get_or_create(user=user)[0]
    assert "metrics" not in token_scopes_grantable(user=user, preferences=preferences)
    user.is_staff = True
    assert "metrics" in token_scopes_grantable(user=user, preferences=preferences)


def test_a_user_creating_their_own_token_cannot_take_the_metrics_scope(auth_client):
    response = auth_client.post("/api/v1/tokens", {"name": "x", "scopes": ["metrics"]}, format="json")
    error = error_of(response, 403, "token_limit_exceeded")
    assert "metrics" in error["message"]


def test_a_user_who_stops_being_staff_stops_reading(staff_token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {staff_token[1]}")
    assert client.get("/metrics").status_code == 200
    type(staff_token[0].user).objects.filter(pk=staff_token[0].user_id).update(is_staff=False)
    error_of(client.get("/metrics"), 403, "permission_denied")


def test_an_allowed_address_reads_without_a_token(settings):
    settings.METRICS_ALLOWED_IPS = ["10.1.2.0/24", "192.0.2.7"]
    assert Client(REMOTE_ADDR="10.1.2.9").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.7").get("/metrics").status_code == 200
    error_of(Client(REMOTE_ADDR="192.0.2.8").get("/metrics"), 401, "token_missing")


def test_the_allowlist_is_empty_by_default(settings):
    assert settings.METRICS_ALLOWED_IPS == []
    error_of(Client(REMOTE_ADDR="127.0.0.1").get("/metrics"), 401, "token_missing")


def test_other_methods_are_a_405_in_the_error_shape(scraper, staff_token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {staff_token[1]}")
    response = client.post("/metrics")
    error_of(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"


# --- Counters after real requests ----------------------------------------------------------------------------------


def chat(client, **extra):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}], **extra}
    return client.post(CHAT, body, content_type="application/json")


def test_requests_tokens_cost_and_cache_hits_are_counted(scraper, token, gateway_settings, prices):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    before = scraper()
    assert chat(client, temperature=0).status_code == 200
    assert chat(client, temperature=0).status_code == 200  # the same again: from the response cache
    after = scraper()
    paid, hit = UsageRecord.objects.order_by("id")
    assert (paid.status, hit.status) == ("ok", "cached")
    model = paid.upstream_model

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    labels = dict(endpoint="chat.completions", requested_model=model, status_code="200")
    assert delta("litellm_proxy_total_requests_metric_total", **labels) == 2
    assert delta("litellm_proxy_failed_requests_metric_total", **labels) == 0
    per_model = dict(api_provider="openai", model=model)
    assert delta("litellm_input_tokens_metric_total", **per_model) == paid.input_tokens > 0
    assert delta("litellm_output_tokens_metric_total", **per_model) == paid.output_tokens > 0
    assert delta("litellm_total_tokens_metric_total", **per_model) == paid.input_tokens + paid.output_tokens
    assert Decimal(str(delta("litellm_spend_metric_total", **per_model))).quantize(Decimal("1e-9")) == (
        paid.cost_usd.quantize(Decimal("1e-9"))
    )
    assert delta("litellm_cache_hits_metric_total", model=model) == 1
    assert delta("djllm_cache_saved_usd_total", model=model) > 0
    assert delta("litellm_llm_api_latency_metric_count", **per_model) == 1  # the cache hit sent nothing upstream
    assert delta("litellm_request_total_latency_metric_count", endpoint="chat.completions", model=model) == 2


def test_a_rate_limit_and_a_budget_rejection_are_counted(scraper, token, gateway_settings, prices, settings):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    before = scraper()
    settings.RATE_LIMIT = "1/h"
    assert chat(client).status_code == 200
    assert chat(client).status_code == 429
    settings.RATE_LIMIT = "1000/h"
    row = token[0]
    row.monthly_budget_usd = Decimal("0")
    row.save()
    from accounts import token_cache

    token_cache.clear()
    assert chat(client).status_code == 402
    after = scraper()
    endpoint = "chat.completions"
    rate = "djllm_rate_limit_rejections_total"
    budget = "djllm_budget_rejections_total"
    assert value(after, rate, endpoint=endpoint) - value(before, rate, endpoint=endpoint) == 1
    assert value(after, budget, endpoint=endpoint) - value(before, budget, endpoint=endpoint) == 1
    failed = "litellm_proxy_failed_requests_metric_total"
    for code in ("429", "402"):
        labels = {"endpoint": endpoint, "status_code": code}
        got = sum(v for (name, lab), v in after.items() if name == failed and set(labels.items()) <= set(lab))
        was = sum(v for (name, lab), v in before.items() if name == failed and set(labels.items()) <= set(lab))
        assert got - was == 1, code


def test_an_upstream_failure_is_counted_per_provider(scraper, token, gateway_settings, prices):
    gateway_settings.fail_next("500", times=None)
    before = scraper()
    response = chat(Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}"))
    assert response.status_code == 502
    after = scraper()
    record = UsageRecord.objects.get()
    labels = dict(api_provider="openai", model=record.upstream_model, error_code=record.error_code)
    name = "litellm_deployment_failure_responses_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_the_job_queue_depth_is_read_at_scrape(scraper, user):
    from jobs.models import Job

    Job.objects.create(user=user, status="queued")
    Job.objects.create(user=user, status="queued")
    Job.objects.create(user=user, status="running")
    Job.objects.create(user=user, status="done")
    scraped = scraper()
    assert value(scraped, "djllm_job_queue_depth", status="queued") == 2
    assert value(scraped, "djllm_job_queue_depth", status="running") == 1


# --- Several processes -----------------------------------------------------------------------------------------------

CHILD = """
import sys
from dataclasses import dataclass
from llm import metrics

@dataclass
class Draft:
    endpoint: str = "webhook"
    upstream_model: str = "gpt-4o-mini"
    provider: str = "openai"
    status: str = "ok"
    http_status: int = 200
    latency_ms: int = 120
    upstream_latency_ms: int = 100
    time_to_first_token_ms: None = None
    error_code: str = ""
    saved_usd: int = 0
    priced: bool = True
    usage: None = None
    cost_usd: float = 0.5

for _ in range(int(sys.argv[1])):
    metrics.usage_observe(Draft())
metrics.recorder_queue_depth.set(int(sys.argv[1]))
"""


def test_two_processes_counts_add_up_in_multiprocess_mode(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": ROOT}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(n)], env=env, cwd=ROOT) for n in (3, 4)]
    assert [child.wait(timeout=60) for child in children] == [0, 0]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    requests = registry.get_sample_value(
        "litellm_proxy_total_requests_metric_total",
        {"endpoint": "webhook", "requested_model": "gpt-4o-mini", "status_code": "200"},
    )
    assert requests == 7
    assert (
        registry.get_sample_value("litellm_spend_metric_total", {"api_provider": "openai", "model": "gpt-4o-mini"})
        == 3.5
    )
    # A live-sum gauge counts only live processes; both children have exited and were never marked dead here, so
    # their files still count: 3 + 4.
    assert registry.get_sample_value("djllm_recorder_queue_depth", {}) == 7
