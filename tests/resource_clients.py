"""One way to call a resource endpoint in a test, two transports: DRF's APIClient (in process) and httpx against
djllm served over real HTTP (tests/live.py). A test that takes the `api` fixture runs once with each."""

import json as jsonlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from rest_framework.test import APIClient


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]  # lower-case names
    content: bytes

    def json(self):
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")


class _DRFTransport:
    name = "drf"

    def call(self, method: str, path: str, plaintext: str, params=None, json=None) -> Answer:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        if method == "GET":
            response = client.get(path, params or {})
        else:
            response = client.generic(method, path, data=_json_text(json), content_type="application/json")
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, body)


class _HTTPTransport:
    name = "http"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, plaintext: str, params=None, json=None) -> Answer:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            response = client.request(
                method, path, params=params, json=json, headers={"Authorization": f"Bearer {plaintext}"}
            )
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)


def _json_text(data) -> str | None:
    return None if data is None else jsonlib.dumps(data)


class Api:
    """`api.get(path, token=plaintext, params=...)`; `api.follow(url, ...)` calls a `next` link as it is given."""

    def __init__(self, transport) -> None:
        self.transport = transport

    def get(self, path: str, *, token: str, params=None) -> Answer:
        return self.transport.call("GET", path, token, params=params)

    def post(self, path: str, *, token: str, json=None) -> Answer:
        return self.transport.call("POST", path, token, json=json)

    def follow(self, url: str, *, token: str) -> Answer:
        parts = urlsplit(url)
        return self.get(f"{parts.path}?{parts.query}", token=token)


@pytest.fixture(
    params=[
        pytest.param("drf", marks=pytest.mark.django_db),
        pytest.param("http", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def api(request) -> Api:
    if request.param == "drf":
        return Api(_DRFTransport())
    return Api(_HTTPTransport(request.getfixturevalue("live_djllm").url))
