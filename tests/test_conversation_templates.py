"""A conversation started from a prompt template (`template` + `variables` on `POST /api/v1/conversations`), over
real HTTP with the fake upstream: the system prompt, default model and parameters it gives (and what overrides
them), each message sent in its user text, the template version on the conversation and on every message's usage
record, a later edit not changing it, and 400s naming a bad template or variable with nothing created."""

import httpx
import pytest

from llm import services
from llm.models import Conversation, UsageRecord
from tests.factories import UserFactory
from tests.test_conversations import URL, auth, send, sent_messages


@pytest.fixture
def upstream(fake_upstream):
    return fake_upstream


@pytest.fixture
def tutor(token):
    user = token[0].user
    return services.prompt_template_create(
        owner_id=user.pk,
        created_by_id=user.pk,
        name="tutor",
        system="You teach $subject, answering in $language.",
        user_template="[$level] $prompt",
        default_model="gpt-4o",
        parameters={"temperature": 0.3, "max_tokens": 300},
    )


def create(server, token, **body) -> httpx.Response:
    return httpx.post(f"{server.url}{URL}", headers=auth(token), json=body, timeout=30)


def test_a_conversation_from_a_template_keeps_its_version_and_sends_messages_in_it(
    live_djllm, upstream, token, tutor, prices
):
    created = create(live_djllm, token, template="tutor", variables={"subject": "tides", "level": "beginner"})
    assert created.status_code == 201, created.text
    conversation = created.json()
    assert conversation["template_version"] == tutor.current_version_id
    assert conversation["system"] == "You teach tides, answering in the same language as the input."
    assert conversation["model"] == "gpt-4o"
    assert conversation["variables"] == {"subject": "tides", "level": "beginner"}

    upstream.configure(reply="Twice a day.")
    first = send(live_djllm, token, conversation["id"], content="How often?")
    assert first.status_code == 200, first.text
    assert sent_messages(upstream) == [
        ("system", "You teach tides, answering in the same language as the input."),
        ("user", "[beginner] How often?"),
    ]
    request = upstream.last_request.body
    assert request["model"] == "gpt-4o" and request["temperature"] == 0.3
    assert request.get("max_tokens", request.get("max_completion_tokens")) == 300

    # Edited afterwards: the conversation keeps the version it started from.
    services.prompt_template_update(template=tutor, changed_by_id=tutor.owner_id, user_template="(new) $prompt")
    upstream.configure(reply="The moon.")
    second = send(live_djllm, token, conversation["id"], content="Why?", temperature=0.9, model="gpt-4o-mini")
    assert second.status_code == 200, second.text
    assert sent_messages(upstream)[1:] == [
        ("user", "[beginner] How often?"),
        ("assistant", "Twice a day."),
        ("user", "[beginner] Why?"),
    ]
    request = upstream.last_request.body
    assert request["model"] == "gpt-4o-mini" and request["temperature"] == 0.9  # the message's own win

    records = UsageRecord.objects.filter(conversation_id=conversation["id"])
    assert records.count() == 2
    assert set(records.values_list("template_version_id", flat=True)) == {conversation["template_version"]}
    assert tutor.current_version_id != conversation["template_version"]
    detail = httpx.get(f"{live_djllm.url}{URL}/{conversation['id']}", headers=auth(token), timeout=30).json()
    assert detail["template_version"] == conversation["template_version"]
    assert [m["content"] for m in detail["messages"] if m["role"] == "user"] == [
        "[beginner] How often?",
        "[beginner] Why?",
    ]


def test_system_and_model_given_replace_the_templates_and_language_is_pinned(live_djllm, upstream, token, tutor):
    tutor.system = "Teach in $language."
    tutor.user_template = "$prompt ($language)"
    tutor.save()
    services.prompt_template_version_create(template=tutor, created_by_id=tutor.owner_id)
    tutor.refresh_from_db()
    created = create(live_djllm, token, template=tutor.pk, system="", model="gpt-4o-mini", variables={})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["system"], body["model"]) == ("", "gpt-4o-mini")
    assert body["variables"] == {"language": "the same language as the input"}
    assert send(live_djllm, token, body["id"], content="Hi").status_code == 200
    assert sent_messages(upstream) == [("user", "Hi (the same language as the input)")]
    assert upstream.last_request.body["model"] == "gpt-4o-mini"


def test_a_shared_template_starts_a_conversation(live_djllm, upstream, token, admin_user):
    shared = services.prompt_template_create(
        owner_id=None, created_by_id=admin_user.pk, name="plain", system="Be kind.", user_template="$prompt"
    )
    created = create(live_djllm, token, template="plain")
    assert created.status_code == 201, created.text
    assert send(live_djllm, token, created.json()["id"], content="Hello").status_code == 200
    assert sent_messages(upstream) == [("system", "Be kind."), ("user", "Hello")]
    assert UsageRecord.objects.get().template_version_id == shared.current_version_id


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"template": "tutor", "variables": {"subject": "x"}}, "variables.level", "Missing variable"),
        (
            {"template": "tutor", "variables": {"subject": "x", "level": "y", "mood": "z"}},
            "variables.mood",
            "Unknown variable",
        ),
        (
            {"template": "tutor", "variables": {"subject": "x", "level": "y", "prompt": "z"}},
            "variables.prompt",
            "each message",
        ),
        ({"variables": {"subject": "x"}}, "variables", "Only with `template`"),
        ({"template": "nope"}, "template", "No template `nope`"),
        ({"template": "no prompt"}, "template", "no `$prompt` in its user text"),
        ({"template": "prompt in system"}, "template", "in its system prompt"),
        ({"template": "theirs"}, "template", "No template `theirs`"),
    ],
)
def test_a_bad_template_or_variable_is_a_400_naming_it(live_djllm, upstream, token, tutor, body, field, words):
    user = token[0].user
    services.prompt_template_create(
        owner_id=user.pk, created_by_id=user.pk, name="no prompt", system="", user_template="Say hi."
    )
    services.prompt_template_create(
        owner_id=user.pk, created_by_id=user.pk, name="prompt in system", system="On $prompt", user_template="$prompt"
    )
    other = UserFactory(username="mallory")
    services.prompt_template_create(
        owner_id=other.pk, created_by_id=other.pk, name="theirs", system="", user_template="$prompt"
    )
    response = create(live_djllm, token, **body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert field in error["details"] and words in str(error["details"][field]), error
    assert not Conversation.objects.exists() and upstream.requests == []


def test_a_system_prompt_variable_is_not_needed_when_system_is_given(live_djllm, upstream, token, tutor):
    created = create(live_djllm, token, template="tutor", system="Short answers.", variables={"level": "expert"})
    assert created.status_code == 201, created.text
    assert created.json()["system"] == "Short answers."
    assert send(live_djllm, token, created.json()["id"], content="Ebb?").status_code == 200
    assert sent_messages(upstream) == [("system", "Short answers."), ("user", "[expert] Ebb?")]
