"""Alerts: upstream error rate over a threshold, a budget crossing 80 % and 100 %, a stuck job queue, requests to
unpriced models. `alerts_evaluate()` runs every ALERT_CHECK_SECONDS (Celery beat, `monitoring.alerts_evaluate`, or
`manage.py check_alerts` from cron), off the request path: it reads the usage records, spend counters and jobs.

Each alert goes to ADMINS by mail (`mail_admins`) and, when ALERT_WEBHOOK_URL is set, as Slack-compatible JSON
(`{"text": ...}`). A condition alerts at most once per ALERT_WINDOW_SECONDS (a budget: once per threshold and month),
deduplicated through the cache (`cache.add`, atomic on Redis), so several beat processes do not repeat it. The text
names tokens by their visible prefix, users by username, models by name: never a token, key or URL.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.core.cache import cache
from django.core.mail import mail_admins
from django.utils import timezone

from llm.limits import month_start
from monitoring import selectors

logger = logging.getLogger(__name__)

BUDGET_THRESHOLDS = (1.0, 0.8)  # the higher first: a budget past 100 % is not also reported at 80 % that run
WEBHOOK_TIMEOUT = 5.0
_MONTH_SECONDS = 32 * 24 * 3600


@dataclass(frozen=True)
class Alert:
    key: str  # the condition, for deduplication
    subject: str
    text: str
    ttl: int  # seconds before the same condition may alert again


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"


def _upstream_errors(window: int) -> list[Alert]:
    rate = selectors.upstream_error_rate(since=timezone.now() - timedelta(seconds=window))
    threshold = settings.ALERT_UPSTREAM_ERROR_RATE
    if rate.requests < settings.ALERT_UPSTREAM_MIN_REQUESTS or rate.rate <= threshold:
        return []
    text = (
        f"Upstream error rate {rate.rate:.0%} ({rate.errors} of {rate.requests} requests sent upstream) in the last "
        f"{_minutes(window)}, over the {threshold:.0%} threshold."
    )
    return [Alert("upstream_error_rate", "Upstream error rate high", text, window)]


def _budgets() -> list[Alert]:
    month = month_start(timezone.now().date()).isoformat()
    alerts, reported = [], set()
    for threshold in BUDGET_THRESHOLDS:
        for use in selectors.budgets_used(at_least=threshold):
            if (use.scope, use.key) in reported:
                continue
            reported.add((use.scope, use.key))
            text = (
                f"Budget {threshold:.0%} reached: {use.label} has spent ${use.spent:.2f} of its ${use.budget:.2f} "
                f"monthly budget ({use.share:.0%}) in {month[:7]}."
            )
            key = f"budget:{use.scope}:{use.key}:{month}:{int(threshold * 100)}"
            alerts.append(Alert(key, f"Budget {threshold:.0%} reached", text, _MONTH_SECONDS))
    return alerts


def _stuck_jobs(window: int) -> list[Alert]:
    age = settings.ALERT_JOB_STUCK_SECONDS
    stuck = selectors.jobs_stuck(older_than=timedelta(seconds=age))
    if not stuck:
        return []
    text = (
        f"Job queue stuck: {stuck} unfinished job(s) have had no sign of life from a worker for over "
        f"{_minutes(age)}. Is a Celery worker running?"
    )
    return [Alert("jobs_stuck", "Job queue stuck", text, window)]


def _unpriced(window: int) -> list[Alert]:
    unpriced = selectors.unpriced_requests(since=timezone.now() - timedelta(seconds=window))
    if not unpriced:
        return []
    models = ", ".join(f"{name} ({count})" for name, count in unpriced.items())
    text = (
        f"Unpriced requests: {sum(unpriced.values())} request(s) in the last {_minutes(window)} went to models "
        f"without a price: {models}. Add their prices in the admin."
    )
    return [Alert("unpriced_requests", "Requests to unpriced models", text, window)]


def alerts_due() -> list[Alert]:
    window = settings.ALERT_WINDOW_SECONDS
    return [*_upstream_errors(window), *_budgets(), *_stuck_jobs(window), *_unpriced(window)]


def _post_webhook(url: str, text: str) -> bool:
    try:
        response = httpx.post(url, json={"text": text}, timeout=WEBHOOK_TIMEOUT)
    except httpx.HTTPError as error:
        logger.warning("Alert webhook not reached (%s)", type(error).__name__)  # the URL may hold a secret
        return False
    if response.status_code >= 400:
        logger.warning("Alert webhook answered %d", response.status_code)
        return False
    return True


def alert_send(*, alert: Alert) -> bool:
    """Mail the admins and post to the webhook; True when at least one channel took it."""
    delivered = False
    if settings.ADMINS:
        try:
            mail_admins(f"Alert: {alert.subject}", alert.text)
            delivered = True
        except Exception:  # the mail server is away: the webhook may still carry it, and the next run retries
            logger.exception("Alert mail not sent")
    if settings.ALERT_WEBHOOK_URL:
        delivered = _post_webhook(settings.ALERT_WEBHOOK_URL, f"djllm alert: {alert.text}") or delivered
    return delivered


def alerts_evaluate() -> list[Alert]:
    """Check every condition; send each alert that is due and was not sent within its window. Returns those sent."""
    if not settings.ALERTS_ENABLED:
        return []
    sent = []
    for alert in alerts_due():
        key = f"djllm:alert:{alert.key}"
        if not cache.add(key, timezone.now().isoformat(), timeout=alert.ttl):
            continue  # already sent within its window
        if alert_send(alert=alert):
            logger.warning("Alert sent: %s", alert.text)
            sent.append(alert)
        else:
            cache.delete(key)  # nothing took it: the next run tries again
    return sent
