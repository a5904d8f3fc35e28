"""`GET /api/v1/jobs`: the caller's jobs, newest first, in cursor pages, filtered by status and creation time; and
the job body's validation by DRF serializers (what the batch's models accept, nothing more). Through DRF's test
client and over real HTTP (httpx)."""

from datetime import datetime
from decimal import Decimal

import pytest

from accounts import services as account_services
from jobs import services as job_services
from jobs.models import ItemStatus, Job, JobItem, JobStatus
from tests.api_clients import with_query
from tests.factories import UserFactory

JOBS = "/api/v1/jobs"


def job(user, *, at="2025-03-10T12:00:00Z", status=JobStatus.DONE, items=(), **fields) -> Job:
    made = Job.objects.create(
        user=user,
        status=status,
        total=len(items),
        created_at=datetime.fromisoformat(at.replace("Z", "+00:00")),
        **fields,
    )
    JobItem.objects.bulk_create(
        JobItem(job=made, position=i, ref=i, prompt=f"p{i}", status=item_status, cost_usd=cost)
        for i, (item_status, cost) in enumerate(items)
    )
    return made


@pytest.fixture
def alice(user, token):
    user.preferences.timezone = "UTC"
    user.preferences.save()
    bob = UserFactory(username="bob")
    _, bob_plaintext = account_services.api_token_create(user=bob, name="bob", scopes=["llm"])
    return {"plaintext": token[1], "bob": bob, "bob_plaintext": bob_plaintext, "bob_job": job(bob)}


def ids(answer) -> list[str]:
    assert answer.status == 200, answer.text
    return [row["id"] for row in answer.body["results"]]


def test_a_listed_job_is_the_job_as_its_own_url_shows_it(call, alice, user):
    made = job(
        user,
        status=JobStatus.RUNNING,
        items=[(ItemStatus.OK, Decimal("0.000021")), (ItemStatus.ERROR, None), (ItemStatus.PENDING, None)],
    )
    answer = call("GET", JOBS, alice["plaintext"])
    assert ids(answer) == [str(made.pk)]  # Bob's job is not among them
    listed = answer.body["results"][0]
    assert (listed["status"], listed["total"], listed["done"], listed["failed"], listed["pending"]) == (
        "running",
        3,
        2,
        1,
        1,
    )
    assert listed["cost_usd"] == "0.000021"
    assert listed["links"]["self"].endswith(f"{JOBS}/{made.pk}")
    detail = call("GET", f"{JOBS}/{made.pk}", alice["plaintext"])
    assert detail.status == 202  # still running
    assert {**detail.body, "eta_seconds": None} == {**listed, "eta_seconds": None}


def test_other_users_jobs_are_not_listed_or_found(call, alice):
    bob_job = alice["bob_job"]
    assert ids(call("GET", JOBS, alice["plaintext"])) == []
    for path in (f"{JOBS}/{bob_job.pk}", f"{JOBS}/{bob_job.pk}/results"):
        answer = call("GET", path, alice["plaintext"])
        assert answer.status == 404 and answer.body["error"]["code"] == "job_not_found"
    assert call("POST", f"{JOBS}/{bob_job.pk}/cancel", alice["plaintext"]).status == 404
    assert ids(call("GET", JOBS, alice["bob_plaintext"])) == [str(bob_job.pk)]


def test_the_llm_scope_is_needed(call, alice, user):
    _, calendar_only = account_services.api_token_create(user=user, name="cal", scopes=["calendar"])
    answer = call("GET", JOBS, calendar_only)
    assert answer.status == 403 and answer.body["error"]["code"] == "insufficient_scope"
    assert call("GET", JOBS, "djl_nope_nope").status == 401


def test_cursor_pages_newest_first_without_duplicates(call, alice, user):
    # Four jobs made in the same instant and three at other times: every job once, newest first.
    same = [job(user, at="2025-03-05T08:00:00Z") for _ in range(4)]
    older = job(user, at="2025-03-01T08:00:00Z")
    newer = [job(user, at="2025-03-09T08:00:00Z"), job(user, at="2025-03-08T08:00:00Z")]
    seen: list[str] = []
    answer = call("GET", with_query(JOBS, {"limit": 2}), alice["plaintext"])
    while True:
        page = ids(answer)
        assert 1 <= len(page) <= 2
        seen += page
        if answer.body["next"] is None:
            break
        answer = call("GET", answer.body["next"], alice["plaintext"])
    assert len(seen) == len(set(seen)) == 7
    assert seen[:2] == [str(j.pk) for j in newer] and seen[-1] == str(older.pk)
    assert set(seen[2:6]) == {str(j.pk) for j in same}


def test_filters(call, alice, user):
    done = job(user, at="2025-03-01T10:00:00Z", status=JobStatus.DONE)
    failed = job(user, at="2025-03-02T23:30:00Z", status=JobStatus.FAILED)
    queued = job(user, at="2025-03-03T09:00:00Z", status=JobStatus.QUEUED)

    def only(**params) -> list[str]:
        return ids(call("GET", with_query(JOBS, params), alice["plaintext"]))

    assert only() == [str(queued.pk), str(failed.pk), str(done.pk)]
    assert only(status="failed") == [str(failed.pk)]
    assert only(status="running") == []
    assert only(**{"from": "2025-03-02"}) == [str(queued.pk), str(failed.pk)]
    assert only(to="2025-03-02") == [str(failed.pk), str(done.pk)]  # the whole day of `to`
    assert only(**{"from": "2025-03-01T10:00:01Z", "to": "2025-03-03T08:59:59+00:00"}) == [str(failed.pk)]
    assert only(status="done", to="2025-03-01") == [str(done.pk)]


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "finished"), ("from", "last week"), ("to", "2025-13-01"), ("limit", "0"), ("limit", "x")],
)
def test_bad_filter_values_are_400s(call, alice, field, value):
    answer = call("GET", with_query(JOBS, {field: value}), alice["plaintext"])
    assert answer.status == 400, answer.text
    error = answer.body["error"]
    assert error["code"] == "invalid_request" and field in error["details"] and error["request_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": [{"prompt": "a"}], "colour": "red"}, "colour"),
        ({"items": [{"prompt": "a", "extra": 1}]}, "items.0.extra"),
        ({"items": [{"prompt": "a"}], "parameters": {"temperature": "0"}}, "parameters.temperature"),
        ({"items": [{"prompt": "a"}], "parameters": {"temperature": 3}}, "parameters.temperature"),
        ({"items": [{"prompt": "a"}], "cache": 1}, "cache"),
        ({"items": [{"prompt": "a"}], "provider": "acme"}, "provider"),
        ({"items": [{"prompt": "a"}], "type": "poem"}, "type"),
        ({"items": [{"prompt": "a"}], "language": "x" * 51}, "language"),
        ({"items": [{"id": True, "prompt": "a"}]}, "items.0.id"),
        ({"items": [{"prompt": ["a"]}]}, "items.0.prompt"),
        ({"items": [{"id": 1}]}, "items.0.prompt"),
        ({"items": []}, "items"),
        ({"items": "a"}, "items"),
        ({}, "items"),
        ({"items": [{"prompt": "a"}], "type": "summary", "template": "sentiment"}, "non_field_errors"),
    ],
)
def test_a_job_body_is_validated_like_a_batch(call, alice, monkeypatch, body, field):
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id: None)
    answer = call("POST", JOBS, alice["plaintext"], body)
    assert answer.status == 400, answer.text
    error = answer.body["error"]
    assert error["code"] == "invalid_request" and field in error["details"], error
    assert not Job.objects.exclude(user=alice["bob"]).exists()


def test_a_valid_job_body_keeps_its_values(call, alice, monkeypatch, gateway_settings, prices):
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id: None)
    body = {
        "template": "summary",
        "source": "email",
        "language": " German ",
        "provider": "openai",
        "system": "",
        "parameters": {"temperature": 0, "max_tokens": 20, "stop": ["\n"]},
        "cache": None,
        "items": [{"id": "A2", "prompt": "one"}, {"prompt": 3.5}, {"id": 7, "prompt": True}, {"prompt": None}],
    }
    answer = call("POST", JOBS, alice["plaintext"], body)
    assert answer.status == 202, answer.text
    made = Job.objects.get(pk=answer.body["id"])
    assert made.options["template"] == "summary" and made.options["source"] == "email"
    assert made.options["language"] == " German " and made.options["system"] == ""
    assert made.options["parameters"] == {
        "temperature": 0,
        "max_tokens": 20,
        "top_p": None,
        "stop": ["\n"],
        "response_format": None,
    }
    rows = list(JobItem.objects.filter(job=made).order_by("position").values_list("ref", "prompt"))
    assert rows == [("A2", "one"), (1, "3.5"), (7, "true"), (3, "")]
