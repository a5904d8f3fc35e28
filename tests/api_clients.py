"""One way to call the resource API from a test, two transports: DRF's `APIClient` in-process (`drf`) and the `httpx`
client over real HTTP against djllm served by uvicorn (`http`, see tests/live.py). A test that takes the `call`
fixture runs once with each."""

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from rest_framework.test import APIClient


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any
    text: str


class Caller:
    def __init__(self, transport: str, base_url: str = "") -> None:
        self.transport = transport
        self.base_url = base_url

    def __call__(self, method: str, path: str, plaintext: str | None = None, body: Any = None) -> Answer:
        """`path` may be a whole URL, as in a `next` link."""
        headers = {"Authorization": f"Bearer {plaintext}"} if plaintext else {}
        if self.transport == "http":
            url = path if path.startswith("http") else self.base_url + path
            response = httpx.request(method, url, headers=headers, json=body, timeout=30)
            return Answer(response.status_code, _json(response.text), response.headers, response.text)
        parts = urlsplit(path)
        relative = parts.path + (f"?{parts.query}" if parts.query else "")
        client = APIClient()
        if plaintext:
            client.credentials(HTTP_AUTHORIZATION=headers["Authorization"])
        response = getattr(client, method.lower())(relative, data=body, format="json" if body is not None else None)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        text = content.decode()
        return Answer(response.status_code, _json(text), response.headers, text)


def with_query(path: str, params: dict[str, Any]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# Over HTTP the server's threads read the test's rows: they must be committed.
@pytest.fixture(params=["drf", pytest.param("http", marks=pytest.mark.django_db(transaction=True))])
def call(request) -> Caller:
    if request.param == "http":
        return Caller("http", request.getfixturevalue("live_djllm").url)
    return Caller("drf")


@pytest.fixture
def http_call(live_djllm) -> Caller:
    """Over real HTTP only (for a test that needs the server's own process, its caches)."""
    return Caller("http", live_djllm.url)
