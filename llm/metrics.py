"""Prometheus counters of the gateway, counted once per usage record (see docs/metrics.md).

The names follow LiteLLM's where they mean the same, so dashboards made for LiteLLM read djllm's figures; the rest
are `djllm_*`. prometheus_client adds `_total` to a counter's name in what it serves.

Several processes (gunicorn's workers, a Celery worker) count together through prometheus_client's multiprocess
mode: with PROMETHEUS_MULTIPROC_DIR set before this module is first imported, every process writes its values to
files in that directory and a scrape adds them up (`monitoring.exposition`). Without it (one process: `runserver`,
the tests), the values live in the process.

Labels stay few and bounded: the endpoint, the HTTP status, the provider and the routed model (set by routing from
configured routes and provider patterns, never the name a client sent when it routed nowhere).
"""

from prometheus_client import Counter, Gauge, Histogram

# Seconds; the upstream calls of an LLM take from a few hundred milliseconds to minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, float("inf"))

requests_total = Counter(
    "litellm_proxy_total_requests_metric",
    "Requests that reached the gateway (one per usage record), by endpoint, routed model and HTTP status.",
    ["endpoint", "requested_model", "status_code"],
)
requests_failed = Counter(
    "litellm_proxy_failed_requests_metric",
    "Requests answered with an error (HTTP status 400 or more, or a stream that failed after its 200).",
    ["endpoint", "requested_model", "status_code"],
)
request_latency = Histogram(
    "litellm_request_total_latency_metric",
    "Seconds from the request's checks to its last byte, by endpoint and routed model.",
    ["endpoint", "model"],
    buckets=LATENCY_BUCKETS,
)
upstream_latency = Histogram(
    "litellm_llm_api_latency_metric",
    "Seconds the upstream took to answer (non-streamed) or to send its first chunk (streamed), per provider.",
    ["api_provider", "model"],
    buckets=LATENCY_BUCKETS,
)
time_to_first_token = Histogram(
    "litellm_llm_api_time_to_first_token_metric",
    "Seconds to the first streamed token, per provider.",
    ["api_provider", "model"],
    buckets=LATENCY_BUCKETS,
)
spend = Counter(
    "litellm_spend_metric", "Cost in USD of the requests, per provider and model.", ["api_provider", "model"]
)
total_tokens = Counter(
    "litellm_total_tokens_metric", "Input plus output tokens, per provider and model.", ["api_provider", "model"]
)
input_tokens = Counter(
    "litellm_input_tokens_metric", "Input tokens, per provider and model.", ["api_provider", "model"]
)
output_tokens = Counter(
    "litellm_output_tokens_metric", "Output tokens, per provider and model.", ["api_provider", "model"]
)
upstream_failures = Counter(
    "litellm_deployment_failure_responses",
    "Requests that failed upstream (after retries and fallbacks), per provider and error code.",
    ["api_provider", "model", "error_code"],
)
cache_hits = Counter("litellm_cache_hits_metric", "Answers served from the response cache.", ["model"])
saved = Counter("djllm_cache_saved_usd", "What the cache hits would have cost upstream, in USD.", ["model"])
rate_limit_rejections = Counter(
    "djllm_rate_limit_rejections", "Requests refused by djllm's own rate limit (429).", ["endpoint"]
)
budget_rejections = Counter("djllm_budget_rejections", "Requests refused by a monthly budget (402).", ["endpoint"])
unpriced = Counter("djllm_unpriced_requests", "Requests to a model without a price row.", ["api_provider", "model"])
recorder_queue_depth = Gauge(
    "djllm_recorder_queue_depth",
    "Usage records waiting to be written, summed over the live processes.",
    multiprocess_mode="livesum",
)

_REJECTIONS = {"rate_limited": rate_limit_rejections, "budget_exceeded": budget_rejections}

# (metric, label values) -> the labelled child: `.labels()` checks and locks on every call; a dict lookup does not.
# The labels are bounded (see above), so this stays small; the values notice a fork themselves (new files per pid).
_children: dict = {}


def _child(metric, *labels):
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def usage_observe(draft) -> None:
    """Count one request from its usage draft (`llm.services.UsageDraft`): a handful of counter increments, no I/O
    but prometheus_client's own (in multiprocess mode, writes to a memory-mapped file)."""
    endpoint, model, provider, status = draft.endpoint, draft.upstream_model, draft.provider, draft.status
    code = str(draft.http_status)
    _child(requests_total, endpoint, model, code).inc()
    failed = draft.http_status >= 400 or status == "upstream_error"
    if failed:
        _child(requests_failed, endpoint, model, code).inc()
    _child(request_latency, endpoint, model).observe(draft.latency_ms / 1000)
    rejection = _REJECTIONS.get(status)
    if rejection is not None:
        _child(rejection, endpoint).inc()
        return
    if not provider:
        return
    if draft.upstream_latency_ms is not None:
        _child(upstream_latency, provider, model).observe(draft.upstream_latency_ms / 1000)
    if draft.time_to_first_token_ms is not None and status != "cached":
        _child(time_to_first_token, provider, model).observe(draft.time_to_first_token_ms / 1000)
    if status == "upstream_error":
        _child(upstream_failures, provider, model, draft.error_code).inc()
    if status == "cached":
        _child(cache_hits, model).inc()
        if draft.saved_usd:
            _child(saved, model).inc(float(draft.saved_usd))
        return
    if not draft.priced:
        _child(unpriced, provider, model).inc()
    usage = draft.usage
    if usage is not None and (usage.input_tokens or usage.output_tokens):
        _child(input_tokens, provider, model).inc(usage.input_tokens)
        _child(output_tokens, provider, model).inc(usage.output_tokens)
        _child(total_tokens, provider, model).inc(usage.input_tokens + usage.output_tokens)
    if draft.cost_usd:
        _child(spend, provider, model).inc(float(draft.cost_usd))
