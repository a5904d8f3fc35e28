"""Model routes as an attacker or a careless admin would set them up: where the server's key goes, which hosts a route
may reach, who may edit routes, and what the caller learns of an upstream's error."""

import http.server
import threading

import openai
import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client

from common import crypto
from llm import routing
from llm.models import ModelRoute, UsageRecord
from llm.providers.errors import MAX_UPSTREAM_MESSAGE, redact
from tests.gateway_fixtures import ANTHROPIC_KEY, OPENAI_KEY, route_form

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
ROUTE_KEY = "sk-route-own-key-0123456789"


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def chat(client, model, content="Hello there", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return client.post(CHAT, body, content_type="application/json")


def other_host_url(fake, path="/v1") -> str:
    """The fake upstream under a host name that is not the configured base URL's (127.0.0.1): "another server"."""
    return fake.url.replace("127.0.0.1", "localhost") + path


def sent_header_values(fake) -> list[str]:
    return [value for request in fake.requests for value in request.headers.values()]


def raw_api_key(alias: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM llm_modelroute WHERE alias = %s", [alias])
        return cursor.fetchone()[0]


# --- The server's key goes only to the provider's configured base URL ------------------------------------------


def test_route_with_own_base_url_and_blank_key_is_not_sent_the_server_key(client, fake_upstream):
    ModelRoute.objects.create(
        alias="elsewhere", provider="openai", upstream_model="gpt-4o-mini", base_url=other_host_url(fake_upstream)
    )
    response = chat(client, "elsewhere")
    assert response.status_code == 200, response.content
    request = fake_upstream.last_request
    assert request.headers["host"].startswith("localhost:")
    assert request.headers["authorization"] == "Bearer not-needed"  # the SDK's placeholder, no key
    assert not any(OPENAI_KEY in value for value in sent_header_values(fake_upstream))


def test_anthropic_route_with_own_base_url_and_blank_key_sends_no_key_header(client, fake_upstream):
    ModelRoute.objects.create(
        alias="claude-elsewhere",
        provider="anthropic",
        upstream_model="claude-haiku-4-5",
        base_url=other_host_url(fake_upstream, ""),
    )
    response = chat(client, "claude-elsewhere")
    assert response.status_code == 200, response.content
    request = fake_upstream.last_request
    assert request.provider == "anthropic" and request.headers["host"].startswith("localhost:")
    assert "x-api-key" not in request.headers and "authorization" not in request.headers
    assert not any(ANTHROPIC_KEY in value for value in sent_header_values(fake_upstream))


def test_route_with_own_base_url_sends_its_own_key(client, fake_upstream):
    ModelRoute.objects.create(
        alias="elsewhere",
        provider="openai",
        upstream_model="gpt-4o-mini",
        base_url=other_host_url(fake_upstream),
        api_key=ROUTE_KEY,
    )
    assert chat(client, "elsewhere").status_code == 200
    assert fake_upstream.last_request.headers["authorization"] == f"Bearer {ROUTE_KEY}"


def test_route_on_the_configured_base_url_still_uses_the_server_key(client, fake_upstream):
    ModelRoute.objects.create(alias="blank-url", provider="openai", upstream_model="gpt-4o-mini")
    ModelRoute.objects.create(
        alias="same-url", provider="openai", upstream_model="gpt-4o", base_url=fake_upstream.openai_base_url + "/"
    )
    for alias in ("blank-url", "same-url"):
        assert chat(client, alias).status_code == 200
        assert fake_upstream.last_request.headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_route_key_never_shows_in_the_route_repr():
    route = routing._direct("x", "openai", "gpt-4o", "https://api.openai.com/v1/", ROUTE_KEY)
    assert ROUTE_KEY not in repr(route)


# --- Base URL allowlist: at request time ------------------------------------------------------------------------


def test_stored_route_to_a_host_outside_the_allowlist_is_refused_and_nothing_is_sent(client, fake_upstream, settings):
    settings.LLM_BASE_URL_ALLOWLIST = ["api.openai.com"]  # loopback by name no longer allowed; 127.0.0.1 is configured
    # Written past validation, as an older version or a direct database edit would have stored it.
    ModelRoute.objects.create(
        alias="ssrf", provider="openai", upstream_model="gpt-4o-mini", base_url=other_host_url(fake_upstream)
    )
    ModelRoute.objects.create(
        alias="metadata", provider="openai", upstream_model="gpt-4o-mini", base_url="http://169.254.169.254/latest"
    )
    for alias in ("ssrf", "metadata"):
        response = chat(client, alias)
        assert response.status_code == 503, response.content
        error = response.json()["error"]
        assert error["code"] == "route_base_url_not_allowed"
        assert alias in error["message"] and "LLM_BASE_URL_ALLOWLIST" in error["message"]
        assert "no request was sent" in error["message"]
    assert fake_upstream.requests == []
    records = UsageRecord.objects.order_by("id")
    assert [(r.status, r.error_code, r.cost_usd or 0, r.input_tokens) for r in records] == [
        ("client_error", "route_base_url_not_allowed", 0, 0)
    ] * 2
    # The service and the other routes still answer.
    assert chat(client, "gpt-4o-mini").status_code == 200


def test_route_refused_as_fallback_is_skipped_not_used(client, fake_upstream, settings):
    settings.LLM_BASE_URL_ALLOWLIST = ["api.openai.com"]
    backup = ModelRoute.objects.create(
        alias="backup", provider="openai", upstream_model="gpt-4o", base_url=other_host_url(fake_upstream)
    )
    ModelRoute.objects.create(alias="main", provider="openai", upstream_model="gpt-4o-mini", fallback=backup)
    fake_upstream.fail_next("500", times=None)
    response = chat(client, "main")
    assert response.status_code == 502
    assert all(not r.headers["host"].startswith("localhost") for r in fake_upstream.requests)


@pytest.fixture
def redirector(fake_upstream):
    """An allowed host (127.0.0.1) whose every answer is a 307 to the fake upstream under a name that is not allowed."""
    target = other_host_url(fake_upstream) + "/chat/completions"

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(307)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_upstream_redirect_to_a_host_outside_the_allowlist_is_not_followed(
    client, fake_upstream, settings, redirector, transport
):
    settings.LLM_BASE_URL_ALLOWLIST = ["api.openai.com"]
    settings.LLM_HTTP_TRANSPORT = transport
    ModelRoute.objects.create(
        alias="bouncer", provider="openai", upstream_model="gpt-4o-mini", base_url=redirector, api_key=ROUTE_KEY
    )
    response = chat(client, "bouncer")
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "upstream_redirect_refused"
    assert fake_upstream.requests == []  # the prompt never reached the host the redirect named


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.openai.com/v1", True),
        ("https://API.Anthropic.com", True),
        ("http://localhost:11434/v1", True),
        ("http://127.0.0.5:8080/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://169.254.169.254/latest/meta-data", False),
        ("http://10.0.0.5/v1", False),
        ("https://api.openai.com.evil.example/v1", False),
        ("https://evil.example/?x=api.openai.com", False),
        ("https://api.openai.com@evil.example/v1", False),
        ("https://user:pw@api.openai.com/v1", False),
        ("http://2130706433/v1", False),  # 127.0.0.1 spelled as a number: not an allowed name, refused
        ("file:///etc/passwd", False),
        ("ftp://api.openai.com/", False),
    ],
)
def test_allowlist_defaults(url, allowed, settings):
    settings.LLM_BASE_URL_ALLOWLIST = []
    settings.OPENAI_BASE_URL = settings.ANTHROPIC_BASE_URL = None
    settings.LOCAL_LLM_BASE_URL = "http://127.0.0.1:11434/v1"
    from llm.upstream_urls import base_url_problem

    assert (base_url_problem(url) is None) is allowed, base_url_problem(url)


def test_allowlist_setting_wildcards_networks_and_configured_hosts(settings):
    from llm.upstream_urls import base_url_problem

    settings.LLM_BASE_URL_ALLOWLIST = ["*.openrouter.ai", "10.1.0.0/16", " https://Models.Example.org/v1 "]
    settings.OPENAI_BASE_URL = "https://gateway.internal.example/v1"
    assert base_url_problem("https://api.openrouter.ai/v1") is None
    assert base_url_problem("https://openrouter.ai.evil.example/v1") is not None
    assert base_url_problem("http://10.1.2.3:8000/v1") is None
    assert base_url_problem("http://10.2.0.1/v1") is not None
    assert base_url_problem("https://models.example.org/v2") is None  # an entry written as a URL counts as its host
    assert base_url_problem("https://gateway.internal.example/other") is None  # a configured host
    assert base_url_problem("http://localhost:11434/v1") is not None  # the setting replaces the defaults


# --- Base URL allowlist: on save, and routes are for superusers ---------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest", "http://10.0.0.1:8080/v1", "https://user:pw@api.openai.com/v1"]
)
def test_admin_refuses_a_base_url_outside_the_allowlist(admin_client, url):
    response = admin_client.post("/admin/llm/modelroute/add/", route_form(base_url=url))
    assert response.status_code == 200  # the form again, with the error
    page = response.content.decode()
    assert "errorlist" in page
    assert "LLM_BASE_URL_ALLOWLIST" in page or "credentials" in page
    assert not ModelRoute.objects.exists()


def test_admin_saves_an_allowed_base_url(admin_client):
    response = admin_client.post("/admin/llm/modelroute/add/", route_form(base_url="https://api.anthropic.com"))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ModelRoute.objects.get(alias="fast").base_url == "https://api.anthropic.com"


@pytest.fixture
def route_staff(db):
    """Staff holding every model-route permission, but not a superuser."""
    staff = get_user_model().objects.create_user("routes-staff", password="pw", is_staff=True)
    for action in ("add", "change", "delete", "view"):
        staff.user_permissions.add(Permission.objects.get(codename=f"{action}_modelroute"))
    client = Client()
    client.force_login(staff)
    return client


def test_staff_without_superuser_can_view_routes_but_not_edit_them(route_staff):
    route = ModelRoute.objects.create(alias="fast", provider="openai", upstream_model="gpt-4o-mini", api_key=ROUTE_KEY)
    change_url = f"/admin/llm/modelroute/{route.pk}/change/"
    assert route_staff.get("/admin/llm/modelroute/").status_code == 200
    page = route_staff.get(change_url).content.decode()
    assert "gpt-4o-mini" in page and ROUTE_KEY not in page and 'name="base_url"' not in page
    assert route_staff.get("/admin/llm/modelroute/add/").status_code == 403
    assert route_staff.post("/admin/llm/modelroute/add/", route_form(alias="new")).status_code == 403
    response = route_staff.post(change_url, route_form(base_url="https://api.anthropic.com"))
    assert response.status_code == 403
    assert route_staff.post(f"/admin/llm/modelroute/{route.pk}/delete/", {"post": "yes"}).status_code == 403
    route.refresh_from_db()
    assert (route.base_url, route.api_key) == ("", ROUTE_KEY)
    assert list(ModelRoute.objects.values_list("alias", flat=True)) == ["fast"]


# --- A route key that cannot be decrypted -------------------------------------------------------------------------


def test_undecryptable_route_key_fails_that_route_only_and_keeps_the_ciphertext(
    client, fake_upstream, settings, admin_client
):
    old_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    ModelRoute.objects.create(
        alias="broken",
        provider="openai",
        upstream_model="gpt-4o",
        base_url=other_host_url(fake_upstream),
        api_key=ROUTE_KEY,
    )
    ModelRoute.objects.create(alias="fine", provider="openai", upstream_model="gpt-4o-mini")
    stored = raw_api_key("broken")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key was lost
    routing.routes_changed()

    response = chat(client, "broken")
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["code"] == "route_key_unreadable"
    assert "'broken'" in error["message"] and "FIELD_ENCRYPTION_KEYS" in error["message"]
    assert fake_upstream.requests == []
    # The other routes, the model list and the plain models keep working.
    assert chat(client, "fine").status_code == 200
    assert chat(client, "gpt-4o-mini").status_code == 200
    models = client.get("/v1/models")
    assert models.status_code == 200 and {"broken", "fine"} <= {m["id"] for m in models.json()["data"]}
    # The admin lists it and says what is wrong; saving another field keeps the stored ciphertext.
    assert (
        "cannot be decrypted with FIELD_ENCRYPTION_KEYS" in admin_client.get("/admin/llm/modelroute/").content.decode()
    )
    route = ModelRoute.objects.get(alias="broken")
    response = admin_client.post(
        f"/admin/llm/modelroute/{route.pk}/change/",
        route_form(alias="broken", upstream_model="gpt-4.1-mini", base_url=other_host_url(fake_upstream)),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert raw_api_key("broken") == stored
    # With the old key back (as a later key), the route works with its own key.
    settings.FIELD_ENCRYPTION_KEYS = [*settings.FIELD_ENCRYPTION_KEYS, old_key]
    routing.routes_changed()
    assert chat(client, "broken").status_code == 200
    assert fake_upstream.last_request.headers["authorization"] == f"Bearer {ROUTE_KEY}"
    assert fake_upstream.last_request.body["model"] == "gpt-4.1-mini"


def test_unreadable_secret_never_shows_its_ciphertext():
    secret = crypto.UnreadableSecret("gAAAAAciphertext", "FIELD_ENCRYPTION_KEYS")
    assert "gAAAA" not in repr(secret) and "gAAAA" not in str(secret)


# --- Upstream error text ------------------------------------------------------------------------------------------

MASKED = "sk-ab" + "*" * 36 + "wxyz"


def test_openai_401_body_with_the_masked_key_does_not_reach_the_caller(client, fake_upstream):
    message = (
        f"Incorrect API key provided: {MASKED}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    fake_upstream.fail_next("401", message=message)
    response = chat(client, "gpt-4o-mini")
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_auth_failed"
    assert error["type"] == "api_error"
    text = response.content.decode()
    for leaked in ("sk-ab", "wxyz", "****", OPENAI_KEY):
        assert leaked not in text
    assert "401" in error["message"] and "invalid_request_error" in error["message"]
    record = UsageRecord.objects.get()
    assert (record.status, record.error_code, record.cost_usd or 0) == ("upstream_error", "upstream_auth_failed", 0)


def test_anthropic_401_and_api_errors_are_reduced(client, fake_upstream):
    fake_upstream.fail_next("401", message=f"invalid x-api-key {ANTHROPIC_KEY} (Bearer abc.def djl_abcdef0123456789)")
    response = chat(client, "claude-haiku-4-5")
    assert response.status_code == 502
    text = response.content.decode()
    for leaked in (ANTHROPIC_KEY, "abc.def", "djl_abcdef"):
        assert leaked not in text
    assert "authentication_error" in response.json()["error"]["message"]


def test_api_error_shape_carries_upstream_status_and_type(token, gateway_settings, prices, fake_upstream):
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    fake_upstream.fail_next("401", message=f"Incorrect API key provided: {MASKED}")
    response = api.post("/api/v1/webhook", {"prompt": "hi"}, content_type="application/json")
    assert response.status_code == 502, response.content
    error = response.json()["error"]
    assert error["details"]["upstream_status"] == 401
    assert error["details"]["upstream_type"] == "invalid_request_error"
    assert "sk-ab" not in response.content.decode()


def test_long_upstream_400_body_is_truncated(client, fake_upstream):
    long_message = "Invalid 'messages[0].content': " + "this part of the upstream's answer goes on and on. " * 200
    fake_upstream.fail_next("400", message=long_message)
    response = chat(client, "gpt-4o-mini")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("openai answered 400 (invalid_request_error): Invalid 'messages[0].content'")
    assert len(message) <= MAX_UPSTREAM_MESSAGE + 100 and message.endswith("…")
    assert len(response.content) < 1000


@pytest.mark.django_db(transaction=True)
def test_stream_start_error_is_reduced_too(live_djllm, token, prices, fake_upstream):
    fake_upstream.fail_next("401", message=f"Incorrect API key provided: {MASKED}")
    sdk = openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=token[1], max_retries=0, timeout=10)
    with pytest.raises(openai.APIStatusError) as caught:
        stream = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        list(stream)
    assert caught.value.status_code == 502
    seen = caught.value.response.text
    assert "upstream_auth_failed" in seen
    for leaked in ("sk-ab", "wxyz", "****", OPENAI_KEY):
        assert leaked not in seen


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-AbCdEf0123456789AbCdEf0123456789",
        "sk-ant-api03-AbCd_ef-0123456789",
        "djl_AbC123_dEf456",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc",
        "0123456789abcdef0123456789abcdef",
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=",
        "api_key=hunter2hunter2",
    ],
)
def test_redact_removes_key_like_text(secret):
    text = redact(f"The upstream said: {secret} was refused")
    assert secret not in text and "[redacted]" in text
    assert text.startswith("The upstream said:")


def test_redact_keeps_ordinary_messages():
    message = "The model `gpt-4o-mini-2024-07-18` does not exist or you do not have access to it."
    assert redact(message) == message


@pytest.fixture
def cookie_setter():
    """An OpenAI-compatible server that sets a cookie on every answer and keeps the headers of what it was sent."""
    seen: list[dict[str, str]] = []

    class CookieSetter(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            seen.append({name.lower(): value for name, value in self.headers.items()})
            body = (
                b'{"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini", '
                b'"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}, '
                b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}'
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Set-Cookie", "upstream_session=first-callers-session; Path=/")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CookieSetter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_an_upstream_cookie_is_not_sent_back_on_later_requests(
    live_djllm, token, prices, cookie_setter, settings, transport
):
    # Over ASGI, as served: one event loop, so one SDK client per route for every request and every user.
    settings.LLM_HTTP_TRANSPORT = transport
    base_url, seen = cookie_setter
    ModelRoute.objects.create(
        alias="cookie-jar", provider="openai", upstream_model="gpt-4o-mini", base_url=base_url, api_key=ROUTE_KEY
    )
    sdk = openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=token[1], max_retries=0, timeout=10)
    answers = [
        sdk.chat.completions.create(model="cookie-jar", messages=[{"role": "user", "content": text}])
        for text in ("Hello", "Again")
    ]
    assert [answer.choices[0].message.content for answer in answers] == ["Hi.", "Hi."]
    assert len(seen) == 2
    assert "cookie" not in seen[1]  # the first answer's cookie did not travel with the next request
    # The SDK's own headers still go with every request: the route's key, its retry count, the JSON body.
    for headers in seen:
        assert headers["authorization"] == f"Bearer {ROUTE_KEY}"
        assert headers["x-stainless-retry-count"] == "0"
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("AsyncOpenAI/Python")
