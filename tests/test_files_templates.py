"""`template` + `variables` on `POST /api/v1/files/process`: the template makes every call (map and reduce, the
document's text as `$prompt`), its default model applies, each usage record keeps the template version, on the
200 path and on the 202 job path; a bad template, variable or combination is a 400 naming it before any call."""

import json

import pytest
from django.test import Client

from jobs.models import Job
from llm import services
from llm.models import UsageRecord
from tests.documents import pdf_bytes
from tests.factories import UserFactory
from tests.test_files_process import JOBS, _reply, post, user_text
from tests.test_jobs import queued, run  # noqa: F401 - `queued` is a fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def upstream(fake_upstream):
    fake_upstream.configure(reply=_reply)
    return fake_upstream


@pytest.fixture
def client(token, gateway_settings, prices, queued, settings, tmp_path):  # noqa: F811
    settings.FILE_UPLOAD_DIR = str(tmp_path / "uploads")
    settings.JOB_CONCURRENCY = 1
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


@pytest.fixture
def brief(user):
    return services.prompt_template_create(
        owner_id=user.pk,
        created_by_id=user.pk,
        name="brief",
        system="Brief the $audience in $language.",
        user_template="For $audience: $prompt",
        default_model="gpt-4o",
    )


def systems(upstream) -> set[str]:
    return {r.body["messages"][0]["content"] for r in upstream.requests}


def test_a_template_makes_every_call_at_once(client, upstream, brief, settings):
    settings.FILE_CHUNK_MAX_CHARS = 40
    pages = pdf_bytes([f"page SEC-{i} " * 3 for i in (1, 2, 3)])
    response = post(client, pages, "three.pdf", template="brief", variables=json.dumps({"audience": "board"}))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["type"] == "custom" and body["result"] == "combined SEC-1 SEC-2 SEC-3"
    steps = [c["step"] for c in body["calls"]]
    assert steps.count("map") == 3 and steps[-1] == "reduce"
    texts = [user_text(r.body) for r in upstream.requests]
    assert all(t.startswith("For board: ") for t in texts)  # map and reduce alike
    assert sorted(t for t in texts if "Part 1:" not in t) == [
        ("For board: " + f"page SEC-{i} " * 3).strip() for i in (1, 2, 3)
    ]
    assert any(t.startswith("For board: Part 1:\nsummary SEC-1") for t in texts)
    assert systems(upstream) == {"Brief the board in the same language as the input."}
    assert {r.model for r in upstream.requests} == {"gpt-4o"}  # the template's default model
    records = UsageRecord.objects.filter(batch_id=body["batch_id"])
    assert records.count() == len(body["calls"]) == len(upstream.requests)
    assert set(records.values_list("template_version_id", flat=True)) == {brief.current_version_id}
    assert {(r.endpoint, r.status, r.type) for r in records} == {("file", "ok", "custom")}


def test_the_form_overrides_the_template_defaults_and_an_id_names_it(client, upstream, brief):
    variables = json.dumps({"audience": "team", "language": "Dutch"})
    response = post(client, b"Notes SEC-1.", "n.txt", template=str(brief.pk), variables=variables, model="gpt-4o-mini")
    assert response.status_code == 200, response.content
    assert upstream.last_request.body["model"] == "gpt-4o-mini"
    assert systems(upstream) == {"Brief the team in Dutch."}
    assert UsageRecord.objects.get().template_version_id == brief.current_version_id


def test_a_shared_template_and_a_built_in_type_name(client, upstream, admin_user):
    shared = services.prompt_template_create(
        owner_id=None, created_by_id=admin_user.pk, name="house style", system="", user_template="Tidy: $prompt"
    )
    assert post(client, b"Text SEC-1.", "a.txt", template="house style").status_code == 200
    assert user_text(upstream.last_request.body) == "Tidy: Text SEC-1."
    assert UsageRecord.objects.get().template_version_id == shared.current_version_id
    keywords = post(client, b"Text SEC-2.", "a.txt", template="keywords")  # a built-in type's name is that type
    assert keywords.status_code == 200 and keywords.json()["type"] == "keywords"


def test_a_document_job_keeps_the_template_for_its_chunks_and_reduce_rows(
    client,
    upstream,
    brief,
    settings,
    queued,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    settings.FILE_CHUNK_MAX_CHARS = 40
    settings.FILE_SYNC_MAX_CHUNKS = 1
    pages = pdf_bytes([f"page SEC-{i} " * 3 for i in (1, 2, 3)])
    with django_capture_on_commit_callbacks(execute=True):
        created = post(client, pages, "three.pdf", template="brief", variables='{"audience": "owners"}')
    assert created.status_code == 202, created.content
    job = created.json()
    run(job["id"])
    results = client.get(f"{JOBS}/{job['id']}/results").json()["results"]
    assert results[-1]["id"] == "final" and results[-1]["result"] == "combined SEC-1 SEC-2 SEC-3"
    texts = [user_text(r.body) for r in upstream.requests]
    assert len(texts) == len(results) and all(t.startswith("For owners: ") for t in texts)
    assert systems(upstream) == {"Brief the owners in the same language as the input."}
    records = UsageRecord.objects.filter(batch_id=job["batch_id"])
    assert records.count() == len(results)
    assert set(records.values_list("template_version_id", flat=True)) == {brief.current_version_id}


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"template": "brief"}, "variables.audience", "Missing variable"),
        ({"template": "brief", "variables": '{"audience": "x", "tone": "dry"}'}, "variables.tone", "Unknown variable"),
        ({"template": "brief", "variables": '{"audience": "x", "prompt": "y"}'}, "variables.prompt", "document's text"),
        ({"template": "brief", "variables": "audience=x"}, "variables", "JSON object"),
        ({"template": "brief", "variables": '{"audience": 3}'}, "variables", "JSON object"),
        ({"template": "brief", "type": "summary"}, "type", "one of `type` or `template`"),
        ({"type": "summary", "variables": '{"a": "b"}'}, "variables", "Only with `template`"),
        ({"template": "nope"}, "template", "No template `nope`"),
        ({"template": "no text"}, "template", "has no `$prompt`"),
        ({"template": "calendar_event"}, "type", "calendar_event"),
    ],
)
def test_a_bad_template_or_variable_is_a_400_naming_it_before_any_call(
    client, upstream, brief, user, settings, fields, param, words
):
    services.prompt_template_create(
        owner_id=user.pk, created_by_id=user.pk, name="no text", system="Say hi to $who.", user_template="Hi"
    )
    settings.FILE_SYNC_MAX_CHUNKS = 0  # a job would be created if the form got that far
    response = post(client, b"Text SEC-1.", "a.txt", **fields)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert param in error["details"] or f"{param} `" in error["message"], error
    assert words in error["message"] or words in json.dumps(error["details"]), error
    assert upstream.requests == [] and UsageRecord.objects.count() == 0 and Job.objects.count() == 0


def test_another_users_template_is_not_found(client, upstream):
    other = UserFactory(username="mallory")
    services.prompt_template_create(
        owner_id=other.pk, created_by_id=other.pk, name="secret", system="", user_template="$prompt"
    )
    response = post(client, b"Text SEC-1.", "a.txt", template="secret")
    assert response.status_code == 400 and response.json()["error"]["code"] == "template_not_found"
    assert upstream.requests == []
