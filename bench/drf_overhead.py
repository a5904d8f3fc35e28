"""What a DRF view would cost on the fast path: `python -m bench.drf_overhead [--requests N] [--concurrency C]`.

The same webhook body is answered by two views behind the same lean ASGI handler and middleware the fast path runs
on (`common.asgi.APIHandler`, API_MIDDLEWARE), in this one process, with no socket, no token and no upstream, so
only the view layer differs:
  - plain: an async Django view, `parse_json` + the pydantic `WebhookIn` (what the webhook does);
  - drf:   a DRF `APIView` (sync: Django runs it in a worker thread) with an equivalent `StrictInputSerializer`,
           DRF's parsers, content negotiation and renderer, no authentication, permission or throttle classes.
Prints the mean time per request one at a time, and the requests per second with C requests in flight.
No network, no database; uses config.settings.test unless DJANGO_SETTINGS_MODULE says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
django.setup()

from django.conf import settings  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework import serializers  # noqa: E402
from rest_framework.permissions import AllowAny  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from common import asgi  # noqa: E402
from common.request_input import parse_json, validate  # noqa: E402
from common.serializers import StrictInputSerializer  # noqa: E402
from llm.webhook_calls import SOURCES, TYPES, WebhookIn  # noqa: E402

BODY = json.dumps(
    {"prompt": "Summarise the meeting notes of Tuesday.", "type": "summary", "source": "excel", "temperature": 0.2}
).encode()


async def plain(request):
    body = validate(WebhookIn, parse_json(request))
    return JsonResponse({"type": body.type, "chars": len(body.prompt)})


class WebhookSerializer(StrictInputSerializer):
    prompt = serializers.CharField(min_length=1, trim_whitespace=False)
    type = serializers.ChoiceField(choices=TYPES, default="custom")
    source = serializers.ChoiceField(choices=SOURCES, default="other")
    language = serializers.CharField(max_length=50, required=False, allow_null=True)
    provider = serializers.ChoiceField(choices=["openai", "anthropic", "local"], required=False, allow_null=True)
    model = serializers.CharField(max_length=200, required=False, allow_null=True)
    system = serializers.CharField(required=False, allow_null=True)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    max_tokens = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    stop = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    stream = serializers.BooleanField(default=False)
    cache = serializers.BooleanField(required=False, allow_null=True)


class DRFWebhook(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def post(self, request):
        serializer = WebhookSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return Response({"type": data["type"], "chars": len(data["prompt"])})


urlpatterns = [path("plain", plain), path("drf", DRFWebhook.as_view())]


def _scope(route: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/{route}",
        "raw_path": f"/{route}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _one(app, route: str) -> None:
    sent = False
    status = []

    async def receive():
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect while the response is written
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(route), receive, send)
    if status != [200]:
        raise RuntimeError(f"/{route} answered {status}")


async def _run(app, route: str, requests: int, concurrency: int) -> float:
    """Seconds for `requests` requests with `concurrency` in flight."""
    started = time.perf_counter()
    remaining = requests

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _one(app, route)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def main(requests: int, concurrency: int) -> dict:
    settings.ROOT_URLCONF = __name__
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    asgi.set_authenticator(None)  # no token: only the view layer is measured
    app = asgi.APIHandler()
    app.load_middleware(is_async=True)
    for route in ("plain", "drf"):  # warm up (imports, caches, the worker thread)
        await _run(app, route, 200, 4)
    figures = {}
    for route in ("plain", "drf"):
        one_at_a_time = await _run(app, route, requests, 1)
        in_flight = await _run(app, route, requests, concurrency)
        figures[route] = {
            "mean_us_c1": round(one_at_a_time / requests * 1e6, 1),
            f"req_per_s_c{concurrency}": round(requests / in_flight, 1),
        }
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    figures = asyncio.run(main(args.requests, args.concurrency))
    for route, values in figures.items():
        print(route.ljust(6), "  ".join(f"{name}={value}" for name, value in values.items()))
    plain_us, drf_us = figures["plain"]["mean_us_c1"], figures["drf"]["mean_us_c1"]
    print(f"drf - plain: {drf_us - plain_us:.1f} us per request one at a time ({drf_us / plain_us:.2f}x)")
