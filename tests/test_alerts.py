"""Alerts: each condition is mailed to ADMINS (the locmem mail backend) and posted as {"text": ...} to a receiver
the test runs on 127.0.0.1, once per window; never with a secret in the text."""

import io
import json
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from jobs.models import Job
from llm.models import UsageRecord
from llm.providers import Usage
from llm.services import UsageDraft, usage_record_create
from monitoring.alerts import alerts_evaluate

pytestmark = pytest.mark.django_db

HOOK_SECRET = "T000/B000/hook-secret-part"


class Receiver:
    """A Slack-like incoming webhook: records each JSON body; answers `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/{HOOK_SECRET}"

    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    receiver = Receiver()
    settings.ALERT_WEBHOOK_URL = receiver.url
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.ALERT_WINDOW_SECONDS = 3600
    settings.ALERT_UPSTREAM_ERROR_RATE = 0.2
    settings.ALERT_UPSTREAM_MIN_REQUESTS = 10
    settings.ALERT_JOB_STUCK_SECONDS = 900
    yield receiver
    receiver.close()


def record(token, *, status="ok", priced=True, cost="0.01", model="gpt-4o-mini", attempts=1) -> UsageRecord:
    row = token[0]
    return usage_record_create(
        draft=UsageDraft(
            request_id=f"r{UsageRecord.objects.count()}",
            endpoint="chat.completions",
            user_id=row.user_id,
            token_id=row.pk,
            provider="openai",
            upstream_model=model,
            status=status,
            http_status=502 if status == "upstream_error" else 200,
            error_code="upstream_server_error" if status == "upstream_error" else "",
            usage=Usage(input_tokens=10, output_tokens=5),
            cost_usd=Decimal(cost) if cost is not None else None,
            priced=priced,
            attempts=attempts,
        )
    )


def assert_sent_once(receiver, needle: str, token_plaintext: str | None = None) -> str:
    texts = [t for t in receiver.texts() if needle in t]
    assert len(texts) == 1, receiver.texts()
    mails = [m for m in mail.outbox if needle in m.body]
    assert len(mails) == 1, [m.body for m in mail.outbox]
    assert mails[0].to == ["ops@example.com"] and mails[0].subject.startswith("[djllm] Alert: ")
    for text in (texts[0], mails[0].body, mails[0].subject):
        assert HOOK_SECRET not in text
        if token_plaintext:
            assert token_plaintext not in text and token_plaintext.split("_", 2)[2] not in text
    return texts[0]


def test_the_upstream_error_rate_over_the_threshold_alerts_once_per_window(receiver, token):
    for _ in range(7):
        record(token)
    for _ in range(3):
        record(token, status="upstream_error", cost="0")
    record(token, status="cached", attempts=0)  # sent nothing upstream: not counted
    alerts_evaluate()
    text = assert_sent_once(receiver, "Upstream error rate", token[1])
    assert text == (
        "djllm alert: Upstream error rate 30% (3 of 10 requests sent upstream) in the last 60 min, "
        "over the 20% threshold."
    )
    record(token, status="upstream_error", cost="0")
    alerts_evaluate()  # still over it, within the window: no second alert
    assert_sent_once(receiver, "Upstream error rate")
    cache.clear()  # the window is over
    alerts_evaluate()
    assert len([t for t in receiver.texts() if "Upstream error rate" in t]) == 2


def test_an_error_rate_under_the_threshold_or_too_few_requests_is_quiet(receiver, token):
    for _ in range(9):
        record(token, status="upstream_error", cost="0")  # 100 %, but 9 < ALERT_UPSTREAM_MIN_REQUESTS
    alerts_evaluate()
    for _ in range(41):
        record(token)  # 9 of 50: 18 %
    alerts_evaluate()
    assert receiver.texts() == [] and mail.outbox == []


def test_a_token_budget_alerts_at_80_and_again_at_100_percent(receiver, token):
    row = token[0]
    row.monthly_budget_usd = Decimal("1.00")
    row.save()
    record(token, cost="0.79")
    alerts_evaluate()
    assert receiver.texts() == []
    record(token, cost="0.06")
    alerts_evaluate()
    month = timezone.now().strftime("%Y-%m")
    text = assert_sent_once(receiver, "Budget 80%", token[1])
    assert text == (
        f"djllm alert: Budget 80% reached: token {row.display_prefix} of alice has spent $0.85 of its $1.00 monthly "
        f"budget (85%) in {month}."
    )
    alerts_evaluate()
    assert_sent_once(receiver, "Budget 80%")
    record(token, cost="0.20")
    alerts_evaluate()
    text = assert_sent_once(receiver, "Budget 100%", token[1])
    assert "has spent $1.05 of its $1.00 monthly budget (105%)" in text
    alerts_evaluate()
    assert len(receiver.texts()) == 2 and len(mail.outbox) == 2


def test_a_user_budget_is_watched_too(receiver, token):
    from accounts.models import UserPreferences

    preferences, _ = UserPreferences.objects.get_or_create(user=token[0].user)
    preferences.monthly_budget_usd = Decimal("2.00")
    preferences.save()
    record(token, cost="2.50")
    alerts_evaluate()
    text = assert_sent_once(receiver, "Budget 100%")
    assert "user alice has spent $2.50 of its $2.00 monthly budget (125%)" in text
    assert not [t for t in receiver.texts() if "Budget 80%" in t]


def test_a_stuck_job_queue_alerts_once(receiver, user):
    old = timezone.now() - timedelta(hours=1)
    Job.objects.create(user=user, status="queued", created_at=old)
    Job.objects.create(user=user, status="running", created_at=old, heartbeat_at=old)
    Job.objects.create(user=user, status="running", created_at=old, heartbeat_at=timezone.now())  # alive
    Job.objects.create(user=user, status="done", created_at=old)
    alerts_evaluate()
    text = assert_sent_once(receiver, "Job queue stuck")
    assert text.startswith("djllm alert: Job queue stuck: 2 unfinished job(s) have had no sign of life from a worker")
    alerts_evaluate()
    assert_sent_once(receiver, "Job queue stuck")


def test_unpriced_requests_alert_once_naming_the_models(receiver, token):
    record(token, priced=False, cost=None, model="my-finetune")
    record(token, priced=False, cost=None, model="my-finetune")
    record(token)
    call_command("check_alerts", stdout=io.StringIO())
    text = assert_sent_once(receiver, "Unpriced requests")
    assert text == (
        "djllm alert: Unpriced requests: 2 request(s) in the last 60 min went to models without a price: "
        "openai/my-finetune (2). Add their prices in the admin."
    )
    call_command("check_alerts", stdout=io.StringIO())
    assert_sent_once(receiver, "Unpriced requests")


def test_an_alert_no_channel_took_is_tried_again(receiver, token, settings):
    settings.ADMINS = []
    receiver.status = 500
    record(token, priced=False, cost=None, model="my-finetune")
    assert alerts_evaluate() == []
    receiver.status = 200
    assert [alert.key for alert in alerts_evaluate()] == ["unpriced_requests"]
    assert len(receiver.texts()) == 2  # the refused one, then the one taken


def test_alerts_can_be_switched_off(receiver, token, settings):
    settings.ALERTS_ENABLED = False
    record(token, priced=False, cost=None, model="my-finetune")
    assert alerts_evaluate() == []
    assert receiver.texts() == [] and mail.outbox == []
