"""Fake OpenAI + Anthropic upstream for djllm's tests and benchmark.

One asyncio server (httptools parser on raw transports: true resets, mid-stream cuts, HTTP/1.1 keep-alive)
speaks both wire protocols on one port:

    POST /v1/chat/completions   OpenAI: JSON, or SSE with `data: [DONE]`; `stream_options.include_usage` adds
                                the final `choices: []` + usage chunk (every other chunk then has `usage: null`)
    POST /v1/responses          OpenAI's Responses API: JSON, or SSE `event:` + `data:` response.created,
                                response.in_progress, [a reasoning item: output_item.added,
                                reasoning_summary_part.added, reasoning_summary_text.delta..., the `.done` events,
                                output_item.done,] output_item.added, content_part.added (text),
                                output_text.delta / function_call_arguments.delta..., the `.done` events,
                                response.completed (or response.incomplete), each with its sequence_number;
                                usage in its own fields (input_tokens with input_tokens_details.cached_tokens)
    POST /v1/messages           Anthropic: JSON, or SSE message_start, content_block_start, ping,
                                content_block_delta..., content_block_stop, message_delta, message_stop
    GET  /v1/models             OpenAI's list (Anthropic's shape when an `anthropic-version` header is sent)

In-process (tests; tests/fake_upstream_fixtures.py starts one per session, `fake_upstream` resets it per test)::

    fake = FakeUpstream().start()   # 127.0.0.1, port 0, its own thread and event loop
    fake.url                        # "http://127.0.0.1:PORT"
    fake.openai_base_url            # url + "/v1"  -> openai.AsyncOpenAI(base_url=..., max_retries=0)
    fake.anthropic_base_url         # url          -> anthropic.AsyncAnthropic(base_url=..., max_retries=0)
    fake.stop()

Controller (thread-safe; each call applies to the next request):

    fake.configure(**fields)   sets FakeConfig fields:
      reply="text" | callable(body) -> str   default "Echo: <last user message text>" (first 200 chars)
      usage=Usage(...) | dict                default derived from text lengths (chars // 4, at least 1)
          Usage(input_tokens, output_tokens, cached_tokens=0, cache_write_tokens=0, reasoning_tokens=0) is sent
          verbatim in each provider's own fields, never converted:
            OpenAI     prompt_tokens=input_tokens (OpenAI's prompt count INCLUDES the cached tokens),
                       prompt_tokens_details.cached_tokens=cached_tokens, completion_tokens=output_tokens,
                       completion_tokens_details.reasoning_tokens=reasoning_tokens (cache_write_tokens unused)
            Anthropic  input_tokens=input_tokens (EXCLUDES cache reads/writes), cache_read_input_tokens=
                       cached_tokens, cache_creation_input_tokens=cache_write_tokens, output_tokens=output_tokens
      structured=<JSON value>   OpenAI: message content for response_format json_schema/json_object, and the
                                arguments of a forced tool call (tool_choice {"type":"function",...} or
                                "required"); Anthropic: the input of a forced tool_use (tool_choice
                                {"type":"tool","name":...} or {"type":"any"}). default {"echo": <last user text>};
                                or a function of the request body
      latency_ms=0              delay before the response headers (a loop timer: never blocks)
      chunks=4                  content deltas per stream (the text or JSON is split evenly)
      chunk_delay_ms=0          pause before each content delta (0: the whole stream leaves in one write)
      finish_reason="stop"      or "length" (Anthropic end_turn / max_tokens); tool replies give
                                tool_calls / tool_use
      response_model=None       model named in responses; None echoes the requested model
      api_key=None              expected key (OpenAI `Authorization: Bearer`, Anthropic `x-api-key`); None
                                accepts any. Wrong or missing -> 401 in the provider's error shape
      anthropic_delta_usage="output"  message_delta usage is {"output_tokens": N} (the documented form);
                                "full" also repeats the cumulative input/cache counts (a gateway must not add)
      models=(...)              ids listed by GET /v1/models
      reasoning_summary=None    Responses API: a `reasoning` output item with this summary text comes first (in
                                the JSON output; streamed as reasoning_summary_text deltas, `chunks` of them)
      refusal=None              OpenAI: the model declines with this text (`message.refusal`, streamed as
                                `delta.refusal` pieces; content null)
      fault_mix={}              random faults for requests no queued fault matched: {kind: probability}, e.g.
                                {"429": 0.03, "500": 0.02, "timeout": 0.01, "reset": 0.01, "stream_cut": 0.03};
                                kinds as fail_next's, plus "stream_stall" (a stream stalls after one delta; a
                                plain request is held like "timeout"). 429s carry `retry-after: 0`
      fault_hold_s=30.0         how long a random "timeout"/"stream_stall" holds
      fault_seed=None           seeds the random faults (set it to replay a mix)
    fake.config                 the current FakeConfig (frozen dataclass)
    fake.fail_next(kind, times=1, *, provider=None, model=None, retry_after=0, hold_s=30.0,
                   after_chunks=None, message=None)
        queues a fault for the next `times` completion requests that match (times=None: until cleared);
        provider="openai"|"anthropic" and model="..." narrow it (e.g. fail the primary, not the fallback).
        "429"          error JSON + `retry-after: <retry_after>` (retry_after=None omits the header)
        "500", "529"   error JSON (Anthropic 529 is overloaded_error); any other status code works too
                       ("400", "401", "503", ...); retry_after given explicitly adds the header to these
        "timeout"      hold the request hold_s seconds (the client times out first), then answer normally;
                       on a stream with after_chunks=k: send k content deltas, then stall hold_s
        "reset"        TCP RST (SO_LINGER 0) right after the request is read; no response bytes
        "disconnect"   plain close (FIN) without any response bytes
        "malformed"    200 with a broken JSON body; streams: one broken `data:` line after the first delta
        "stream_cut"   streams: headers, preamble and after_chunks deltas (default half), then close without
                       the final events or the terminating chunk; plain requests: half the body, then close
        "stream_failed" Responses streams: `response.failed` (status failed, its `error`) after after_chunks
                       deltas, then the end; other streams and plain requests as "stream_error"
        "stream_error" streams: the provider's in-band error event after after_chunks deltas (OpenAI
                       `data: {"error": ...}`, Anthropic `event: error` overloaded_error); plain: a 500
    fake.clear_faults(); fake.pending_faults
    fake.reset()                config back to the constructor's, faults and recorded requests cleared
    fake.requests               list[RecordedRequest] snapshot, oldest first: method, path, query, headers
                                (lower-case names), body (parsed JSON or None), raw_body, provider, model,
                                stream, fault (kind applied or None), status (None: no response sent),
                                response_id, disconnected (the client went away before the response was
                                complete), received_at
    fake.last_request; fake.requests_for(provider=None, path=None)
    fake.wait_for_requests(n, timeout=5.0) -> list    blocks until n requests were recorded
    fake.wait_until(predicate, timeout=5.0)  polls, e.g. `lambda: fake.last_request.disconnected` (a client's
                                close reaches the server a moment after the client call returns)
    fake.ledger                 with FakeUpstream(ledger=True): every completion request, compactly (n, tag,
                                provider, model, stream, fault, status, usage it reported, completed); see
                                `ledger_json()`. `tag` is the `[ledger:ID]` marker found in the request body (the
                                soak puts one in each prompt), so attempts and billed usage can be told per request
    fake.stats                  {"total" requests, "connections" accepted (pooling shows as few),
                                "in_flight", "max_in_flight"}; reset() zeroes all but in_flight

Checks like the real APIs (400 invalid_request_error): Anthropic needs `anthropic-version`, `model`,
`max_tokens`, `messages` and rejects role "system" inside messages; OpenAI needs `model` and non-empty `messages`.

Standalone (benchmark)::

    python -m bench.fake_upstream --host 127.0.0.1 --port 9100 --latency-ms 0 [--chunks 4]
        [--chunk-delay-ms 0] [--api-key KEY] [--record N] [--ledger]
    prints "fake upstream listening on http://127.0.0.1:9100" (flushed). uvloop when installed. HTTP control,
    never recorded: POST /_fake/config {fields}, POST /_fake/fail_next {kind, times, ...}, POST /_fake/reset,
    GET /_fake/stats, GET /_fake/ledger (with --ledger: {"entries": [...]}, see `ledger_json()`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httptools

__all__ = ["FakeConfig", "FakeUpstream", "Fault", "RecordedRequest", "Usage"]

OPENAI = "openai"
COMPLETION_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
ANTHROPIC = "anthropic"
DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "o3-mini", "claude-sonnet-4-5", "claude-haiku-4-5")
FAULT_KINDS = frozenset({"timeout", "reset", "disconnect", "malformed", "stream_cut", "stream_error", "stream_failed"})
MIX_ONLY_KINDS = frozenset({"stream_stall"})
LEDGER_TAG = re.compile(rb"\[ledger:([A-Za-z0-9._:-]{1,128})\]")


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class FakeConfig:
    reply: str | Callable[[dict], str] | None = None
    usage: Usage | None = None
    structured: Any = None
    latency_ms: float = 0
    chunks: int = 4
    chunk_delay_ms: float = 0
    finish_reason: str = "stop"
    response_model: str | None = None
    api_key: str | None = None
    anthropic_delta_usage: str = "output"
    models: tuple[str, ...] = DEFAULT_MODELS
    refusal: str | None = None
    reasoning_summary: str | None = None
    fault_mix: tuple[tuple[str, float], ...] = ()
    fault_hold_s: float = 30.0
    fault_seed: int | None = None


@dataclass
class Fault:
    kind: str
    times: int | None = 1
    provider: str | None = None
    model: str | None = None
    retry_after: float | None = 0
    hold_s: float = 30.0
    after_chunks: int | None = None
    message: str | None = None
    retry_after_explicit: bool = False


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw_body: bytes
    body: Any
    provider: str | None
    model: str | None
    stream: bool
    received_at: float
    fault: str | None = None
    status: int | None = None
    response_id: str | None = None
    disconnected: bool = False
    n: int = 0
    tag: str | None = None
    usage: Usage | None = None  # the usage this response reports (in full) when it is delivered
    completed: bool = False  # every byte of the response was handed to a connection still open


# --------------------------------------------------------------------------------------------- HTTP plumbing

_WRITE, _SLEEP, _CLOSE, _RESET = 0, 1, 2, 3
_LAST_CHUNK = b"0\r\n\r\n"
_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
_LINGER_RST = struct.pack("ii", 1, 0)
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _Ops(list):
    """What to do for one response: writes, timer pauses, and how the connection ends (default: kept)."""

    def write(self, data: bytes) -> None:
        if self and self[-1][0] == _WRITE:
            self[-1] = (_WRITE, self[-1][1] + data)
        else:
            self.append((_WRITE, data))

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.append((_SLEEP, seconds))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else "Error"


def _status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {_phrase(status)}\r\n"


def _head(status: int, content_type: str, headers: list[tuple[str, str]], length: int | None, keep_alive: bool):
    parts = [_status_line(status), "content-type: ", content_type, "\r\n"]
    if length is None:
        parts.append("transfer-encoding: chunked\r\ncache-control: no-cache\r\n")
    else:
        parts.append(f"content-length: {length}\r\n")
    if not keep_alive:
        parts.append("connection: close\r\n")
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


_dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class _Req:
    __slots__ = ("method", "url", "headers", "body", "keep_alive")

    def __init__(self, method: str, url: bytes, headers: dict[str, str], body: bytes, keep_alive: bool):
        self.method, self.url, self.headers, self.body, self.keep_alive = method, url, headers, body, keep_alive


class _Conn(asyncio.Protocol):
    """One client connection: parses requests with httptools and runs their response plans in order."""

    def __init__(self, fake: FakeUpstream):
        self.fake = fake
        self.loop = fake._loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Req] = deque()
        self.busy = False
        self.closed = False
        self.keep_alive = True
        self.timer: asyncio.TimerHandle | None = None
        self.current: RecordedRequest | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    # asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport
        self.fake._conns.add(self)
        self.fake._connections += 1

    def connection_lost(self, exc):
        self.closed = True
        self.fake._conns.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.busy:
            if self.current is not None:
                self.current.disconnected = True
            self._finish()
        self.queue.clear()

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            if not self.busy:
                self.transport.write(_BAD_REQUEST)
            self.transport.close()
            return
        if not self.busy:
            self._next()

    # httptools callbacks
    def on_message_begin(self):
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url):
        self._url += url

    def on_header(self, name, value):
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body):
        self._body.append(body)

    def on_message_complete(self):
        method = self.parser.get_method().decode("ascii")
        keep_alive = self.parser.should_keep_alive()
        self.queue.append(_Req(method, self._url, self._headers, b"".join(self._body), keep_alive))

    # running response plans
    def _next(self):
        fake = self.fake
        while self.queue and not self.closed:
            req = self.queue.popleft()
            ops, rec = fake._handle(req)
            self.busy = True
            self.current = rec
            self.keep_alive = req.keep_alive
            fake._in_flight += 1
            if fake._in_flight > fake._max_in_flight:
                fake._max_in_flight = fake._in_flight
            if not self._run(ops, 0):
                return

    def _run(self, ops: list, i: int) -> bool:
        """Execute ops from index i; False when paused on a timer or the connection is gone."""
        transport = self.transport
        n = len(ops)
        while i < n:
            code, arg = ops[i]
            i += 1
            if code == _WRITE:
                if transport.is_closing():
                    return False
                transport.write(arg)
            elif code == _SLEEP:
                self.timer = self.loop.call_later(arg, self._resume, ops, i)
                return False
            elif code == _CLOSE:
                self._finish()
                transport.close()
                return False
            else:  # _RESET
                self._finish()
                _reset(transport)
                return False
        if self.current is not None:
            self.current.completed = True
        self._finish()
        if not self.keep_alive:
            transport.close()
            return False
        return True

    def _resume(self, ops, i):
        self.timer = None
        if not self.closed and self._run(ops, i):
            self._next()

    def _finish(self):
        self.busy = False
        self.current = None
        self.fake._in_flight -= 1


def _reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        except OSError:
            pass
    transport.abort()


# --------------------------------------------------------------------------------------------- protocol content


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _input_chars(body: dict) -> int:
    total = len(_text_of(body.get("system")))
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            total += len(_text_of(message.get("content")))
    return total


def _split(text: str, n: int) -> list[str]:
    if n <= 1 or len(text) <= 1:
        return [text]
    n = min(n, len(text))
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _openai_usage(u: Usage) -> dict:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _anthropic_usage(u: Usage, output_tokens: int) -> dict:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_denied", None, "You are not allowed to access this resource."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    529: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


class _Exchange:
    """Builds the response plan for one completion request (runs on the server's loop, CPU only)."""

    def __init__(
        self, fake: FakeUpstream, cfg: FakeConfig, provider: str, body: dict, req: _Req, n: int, responses=False
    ):
        self.fake, self.cfg, self.provider, self.body, self.req = fake, cfg, provider, body, req
        self.responses = responses  # OpenAI's Responses API (`/v1/responses`), not chat completions
        self.keep_alive = req.keep_alive
        self.model = cfg.response_model or body.get("model")
        self.created = int(time.time())
        self.n = n
        self.rid = f"chatcmpl-fake{n:08d}" if provider == OPENAI else f"msg_fake{n:08d}"
        if responses:
            self.rid = f"resp_fake{n:08d}"
        self.req_header = (
            ("x-request-id", f"req_fake{n:08d}") if provider == OPENAI else ("request-id", f"req_fake{n:08d}")
        )
        messages = _responses_messages(body) if responses else body.get("messages") or []
        self.user_text = _last_user_text(messages)
        self.tool_name: str | None = None
        self.json_mode = False
        if responses:
            self._responses_mode()
        elif provider == OPENAI:
            self._openai_mode()
        else:
            self._anthropic_mode()
        if self.tool_name is not None or self.json_mode:
            structured = cfg.structured if cfg.structured is not None else {"echo": self.user_text}
            if callable(structured):  # a function of the request body, like `reply`
                structured = structured(self.body)
            self.text = structured if isinstance(structured, str) else _dumps(structured)
        elif callable(cfg.reply):
            self.text = str(cfg.reply(body))
        elif cfg.reply is not None:
            self.text = cfg.reply
        else:
            self.text = "Echo: " + self.user_text[:200]
        self.usage = cfg.usage or Usage(
            input_tokens=max(1, _input_chars({"messages": messages, "system": body.get("system")}) // 4),
            output_tokens=max(1, len(self.text) // 4),
        )

    def _openai_mode(self):
        choice = self.body.get("tool_choice")
        tools = self.body.get("tools") or []
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            self.tool_name = choice["function"].get("name")
        elif choice == "required" and tools and isinstance(tools[0], dict):
            self.tool_name = (tools[0].get("function") or {}).get("name")
        fmt = self.body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
            self.json_mode = True

    def _responses_mode(self):
        choice = self.body.get("tool_choice")
        tools = self.body.get("tools") or []
        if isinstance(choice, dict) and choice.get("type") == "function":
            self.tool_name = choice.get("name")
        elif choice == "required" and tools and isinstance(tools[0], dict):
            self.tool_name = tools[0].get("name")
        fmt = (self.body.get("text") or {}).get("format") if isinstance(self.body.get("text"), dict) else None
        if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
            self.json_mode = True

    def _anthropic_mode(self):
        choice = self.body.get("tool_choice")
        tools = self.body.get("tools") or []
        if isinstance(choice, dict):
            if choice.get("type") == "tool":
                self.tool_name = choice.get("name")
            elif choice.get("type") == "any" and tools and isinstance(tools[0], dict):
                self.tool_name = tools[0].get("name")

    # finish reasons
    def _openai_finish(self) -> str:
        if self.tool_name is not None:
            return "tool_calls"
        return self.cfg.finish_reason

    def _anthropic_stop(self) -> str:
        if self.tool_name is not None:
            return "tool_use"
        return {"stop": "end_turn", "length": "max_tokens"}.get(self.cfg.finish_reason, self.cfg.finish_reason)

    # plain bodies
    def _responses_item(self, status: str) -> dict:
        if self.tool_name is not None:
            return {
                "type": "function_call",
                "id": f"fc_fake{self.n:08d}",
                "call_id": f"call_fake{self.n:08d}",
                "name": self.tool_name,
                "arguments": self.text if status == "completed" else "",
                "status": status,
            }
        content = [{"type": "output_text", "text": self.text, "annotations": []}] if status == "completed" else []
        return {
            "type": "message",
            "id": f"msg_fake{self.n:08d}",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _reasoning_items(self) -> list[dict]:
        summary = self.cfg.reasoning_summary
        if summary is None:
            return []
        return [
            {"type": "reasoning", "id": f"rs_fake{self.n:08d}", "summary": [{"type": "summary_text", "text": summary}]}
        ]

    def _responses_object(self, status: str) -> dict:
        done = status != "in_progress"
        incomplete = done and self.tool_name is None and self.cfg.finish_reason == "length"
        u = self.usage
        return {
            "id": self.rid,
            "object": "response",
            "created_at": self.created,
            "status": "incomplete" if incomplete else status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "model": self.model,
            "output": [*self._reasoning_items(), self._responses_item("completed")] if done else [],
            "store": self.body.get("store", True),
            "tools": self.body.get("tools") or [],  # as OpenAI's response object does: the tools it was given
            "usage": {
                "input_tokens": u.input_tokens,
                "input_tokens_details": {"cached_tokens": u.cached_tokens},
                "output_tokens": u.output_tokens,
                "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                "total_tokens": u.input_tokens + u.output_tokens,
            }
            if done
            else None,
        }

    def plain_body(self) -> bytes:
        if self.responses:
            return _dumps(self._responses_object("completed")).encode()
        if self.provider == OPENAI:
            if self.tool_name is not None:
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_fake{self.n:08d}",
                            "type": "function",
                            "function": {"name": self.tool_name, "arguments": self.text},
                        }
                    ],
                    "refusal": None,
                    "annotations": [],
                }
            elif self.cfg.refusal is not None:
                message = {"role": "assistant", "content": None, "refusal": self.cfg.refusal, "annotations": []}
            else:
                message = {"role": "assistant", "content": self.text, "refusal": None, "annotations": []}
            obj = {
                "id": self.rid,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self._openai_finish()}],
                "usage": _openai_usage(self.usage),
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            }
        else:
            if self.tool_name is not None:
                block = {
                    "type": "tool_use",
                    "id": f"toolu_fake{self.n:08d}",
                    "name": self.tool_name,
                    "input": json.loads(self.text),
                }
            else:
                block = {"type": "text", "text": self.text}
            obj = {
                "id": self.rid,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [block],
                "stop_reason": self._anthropic_stop(),
                "stop_sequence": None,
                "usage": _anthropic_usage(self.usage, self.usage.output_tokens),
            }
        return _dumps(obj).encode()

    # streams: (preamble events, content delta events, trailer events), each a complete SSE event
    def stream_events(self) -> tuple[list[bytes], list[bytes], list[bytes]]:
        parts = _split(self.text, self.cfg.chunks)
        if self.responses:
            return self._responses_events(parts)
        if self.provider == OPENAI:
            return self._openai_events(parts)
        return self._anthropic_events(parts)

    def _openai_events(self, parts):
        include_usage = bool((self.body.get("stream_options") or {}).get("include_usage"))
        head = (
            f'{{"id":"{self.rid}","object":"chat.completion.chunk","created":{self.created},'
            f'"model":{_dumps(self.model)},"service_tier":"default","system_fingerprint":"fp_fake","choices":'
        )
        tail = ',"usage":null}\n\n' if include_usage else "}\n\n"

        def event(choice: dict) -> bytes:
            return ("data: " + head + "[" + _dumps(choice) + "]" + tail).encode()

        if self.tool_name is not None:
            first = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": f"call_fake{self.n:08d}",
                        "type": "function",
                        "function": {"name": self.tool_name, "arguments": ""},
                    }
                ],
                "refusal": None,
            }
            deltas = [
                event(
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                )
                for p in parts
            ]
        elif self.cfg.refusal is not None:
            first = {"role": "assistant", "content": None, "refusal": ""}
            deltas = [
                event({"index": 0, "delta": {"refusal": p}, "logprobs": None, "finish_reason": None})
                for p in _split(self.cfg.refusal, self.cfg.chunks)
            ]
        else:
            first = {"role": "assistant", "content": "", "refusal": None}
            deltas = [
                event({"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}) for p in parts
            ]
        pre = [event({"index": 0, "delta": first, "logprobs": None, "finish_reason": None})]
        trailer = [event({"index": 0, "delta": {}, "logprobs": None, "finish_reason": self._openai_finish()})]
        if include_usage:
            trailer.append(
                ("data: " + head + "[]" + ',"usage":' + _dumps(_openai_usage(self.usage)) + "}\n\n").encode()
            )
        trailer.append(b"data: [DONE]\n\n")
        return pre, deltas, trailer

    def _responses_events(self, parts):
        sequence = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            # Numbered as built: pre, deltas, trailer (a fault that cuts the deltas leaves a gap, as a real cut would).
            return f"event: {kind}\ndata: {_dumps({'type': kind, 'sequence_number': next(sequence), **fields})}\n\n".encode()

        item = self._responses_item("in_progress")
        final = self._responses_object("completed")
        index = len(final["output"]) - 1  # after the reasoning item, when there is one
        where = {"item_id": item["id"], "output_index": index}
        pre = [
            event("response.created", response=self._responses_object("in_progress")),
            event("response.in_progress", response=self._responses_object("in_progress")),
        ]
        for reasoning in self._reasoning_items():
            summary = reasoning["summary"][0]["text"]
            at = {"item_id": reasoning["id"], "output_index": 0, "summary_index": 0}
            empty = {"type": "summary_text", "text": ""}
            pre.append(event("response.output_item.added", output_index=0, item={**reasoning, "summary": []}))
            pre.append(event("response.reasoning_summary_part.added", part=empty, **at))
            pre.extend(
                event("response.reasoning_summary_text.delta", delta=p, **at) for p in _split(summary, self.cfg.chunks)
            )
            pre.append(event("response.reasoning_summary_text.done", text=summary, **at))
            pre.append(event("response.reasoning_summary_part.done", part={**empty, "text": summary}, **at))
            pre.append(event("response.output_item.done", output_index=0, item=reasoning))
        pre.append(event("response.output_item.added", output_index=index, item=item))
        if self.tool_name is not None:
            deltas = [event("response.function_call_arguments.delta", delta=p, **where) for p in parts]
            trailer = [event("response.function_call_arguments.done", arguments=self.text, **where)]
        else:
            part = {"type": "output_text", "text": "", "annotations": []}
            pre.append(event("response.content_part.added", content_index=0, part=part, **where))
            deltas = [
                event("response.output_text.delta", content_index=0, delta=p, logprobs=[], **where) for p in parts
            ]
            trailer = [
                event("response.output_text.done", content_index=0, text=self.text, logprobs=[], **where),
                event("response.content_part.done", content_index=0, part={**part, "text": self.text}, **where),
            ]
        trailer.append(event("response.output_item.done", output_index=index, item=final["output"][index]))
        last = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        trailer.append(event(last, response=final))
        return pre, deltas, trailer

    def _anthropic_events(self, parts):
        def event(kind: str, obj: dict) -> bytes:
            return f"event: {kind}\ndata: {_dumps(obj)}\n\n".encode()

        u = self.usage
        message = {
            "id": self.rid,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(u, 1),
        }
        if self.tool_name is not None:
            block = {"type": "tool_use", "id": f"toolu_fake{self.n:08d}", "name": self.tool_name, "input": {}}
            deltas = [
                event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": p},
                    },
                )
                for p in ["", *parts]
            ]
        else:
            block = {"type": "text", "text": ""}
            deltas = [
                event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                )
                for p in parts
            ]
        pre = [
            event("message_start", {"type": "message_start", "message": message}),
            event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            event("ping", {"type": "ping"}),
        ]
        delta_usage: dict[str, Any] = {"output_tokens": u.output_tokens}
        if self.cfg.anthropic_delta_usage == "full":
            delta_usage = {
                "input_tokens": u.input_tokens,
                "cache_creation_input_tokens": u.cache_write_tokens,
                "cache_read_input_tokens": u.cached_tokens,
                "output_tokens": u.output_tokens,
            }
        trailer = [
            event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._anthropic_stop(), "stop_sequence": None},
                    "usage": delta_usage,
                },
            ),
            event("message_stop", {"type": "message_stop"}),
        ]
        return pre, deltas, trailer

    # plans
    def ok_ops(self, fault: Fault | None, rec: RecordedRequest) -> _Ops:
        cfg = self.cfg
        ops = _Ops()
        kind = fault.kind if fault is not None else None
        hold = fault.hold_s if fault is not None else 0
        stream = bool(self.body.get("stream"))
        if kind == "timeout" and not (stream and fault.after_chunks is not None):
            ops.sleep(hold)
        else:
            ops.sleep(cfg.latency_ms / 1000)
        rec.status = 200
        rec.response_id = self.rid
        headers = [self.req_header]
        if kind in (None, "timeout"):  # answered in full (a held request answers once its hold ends)
            include_usage = bool((self.body.get("stream_options") or {}).get("include_usage"))
            if not stream or self.provider == ANTHROPIC or include_usage or self.responses:
                rec.usage = self.usage
        if not stream:
            if kind in ("stream_error", "stream_failed"):
                rec.status = 500
                return self.error_ops(500, fault)
            body = self.plain_body()
            if kind == "malformed":
                body = body[: max(1, len(body) // 2)] + b'"broken'
            ops.write(_head(200, _JSON, headers, len(body), self.keep_alive))
            if kind == "stream_cut":
                ops.write(body[: len(body) // 2])
                ops.append((_CLOSE, None))
            else:
                ops.write(body)
            return ops
        pre, deltas, trailer = self.stream_events()
        delay = cfg.chunk_delay_ms / 1000
        ops.write(_head(200, _SSE, headers, None, self.keep_alive))
        for ev in pre:
            ops.write(_chunk(ev))
        k = len(deltas)
        if kind in ("stream_cut", "stream_error", "stream_failed", "timeout"):
            k = fault.after_chunks if fault.after_chunks is not None else max(1, len(deltas) // 2)
            k = max(0, min(k, len(deltas)))
        elif kind == "malformed":
            k = 1
        for ev in deltas[:k]:
            ops.sleep(delay)
            ops.write(_chunk(ev))
        if kind == "stream_cut":
            ops.append((_CLOSE, None))
            return ops
        if kind in ("stream_error", "stream_failed"):
            ops.write(_chunk(self._stream_error_event(fault, failed=kind == "stream_failed", sent=len(pre) + k)))
            ops.write(_LAST_CHUNK)
            return ops
        if kind == "malformed":
            broken = (
                b'data: {"id":"broken",\n\n'
                if self.provider == OPENAI and not self.responses
                else (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{\n\n')
            )
            ops.write(_chunk(broken))
        if kind == "timeout":
            ops.sleep(hold)
        for ev in deltas[k:]:
            ops.sleep(delay)
            ops.write(_chunk(ev))
        for ev in trailer:
            ops.write(_chunk(ev))
        ops.write(_LAST_CHUNK)
        return ops

    def _stream_error_event(self, fault: Fault, failed: bool = False, sent: int = 0) -> bytes:
        """The in-band failure; a Responses event is numbered after the `sent` events before it."""
        if self.responses and failed:
            error = {"code": "server_error", "message": fault.message or _OPENAI_ERRORS[500][2]}
            response = {**self._responses_object("in_progress"), "status": "failed", "error": error}
            event = {"type": "response.failed", "sequence_number": sent, "response": response}
            return f"event: response.failed\ndata: {_dumps(event)}\n\n".encode()
        if self.responses:
            message = fault.message or _OPENAI_ERRORS[500][2]
            err = {"type": "error", "sequence_number": sent, "code": "server_error", "message": message, "param": None}
            return f"event: error\ndata: {_dumps(err)}\n\n".encode()
        if self.provider == OPENAI:
            err = {
                "error": {
                    "message": fault.message or _OPENAI_ERRORS[500][2],
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            return f"data: {_dumps(err)}\n\n".encode()
        err = {"type": "error", "error": {"type": "overloaded_error", "message": fault.message or "Overloaded"}}
        return f"event: error\ndata: {_dumps(err)}\n\n".encode()

    def error_ops(self, status: int, fault: Fault | None, message: str | None = None) -> _Ops:
        return _error_ops(self.provider, status, self.keep_alive, self.n, fault, message)


def _error_ops(provider: str, status: int, keep_alive: bool, n: int, fault: Fault | None, message: str | None) -> _Ops:
    headers: list[tuple[str, str]] = []
    if fault is not None:
        message = message or fault.message
        if fault.retry_after is not None and (status == 429 or fault.retry_after_explicit):
            ra = fault.retry_after
            headers.append(("retry-after", str(int(ra)) if float(ra).is_integer() else str(ra)))
    if provider == ANTHROPIC:
        etype, default = _ANTHROPIC_ERRORS.get(status, ("api_error", "Internal server error"))
        obj = {
            "type": "error",
            "error": {"type": etype, "message": message or default},
            "request_id": f"req_fake{n:08d}",
        }
        headers.append(("request-id", f"req_fake{n:08d}"))
        if fault is not None:
            headers.append(("x-should-retry", "true" if status in (408, 409, 429) or status >= 500 else "false"))
    else:
        fallback = ("server_error" if status >= 500 else "invalid_request_error", None, _phrase(status))
        etype, code, default = _OPENAI_ERRORS.get(status, fallback)
        obj = {"error": {"message": message or default, "type": etype, "param": None, "code": code}}
        headers.append(("x-request-id", f"req_fake{n:08d}"))
    body = _dumps(obj).encode()
    ops = _Ops()
    ops.write(_head(status, _JSON, headers, len(body), keep_alive))
    ops.write(body)
    return ops


def _plain_ops(status: int, obj: Any, keep_alive: bool) -> _Ops:
    body = _dumps(obj).encode()
    ops = _Ops()
    ops.write(_head(status, _JSON, [], len(body), keep_alive))
    ops.write(body)
    return ops


def _responses_messages(body: dict) -> list:
    """A Responses request's input as messages (what the echo and the default usage read)."""
    items = body.get("input")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    return [item for item in items or () if isinstance(item, dict) and "role" in item]


def _validate(provider: str, body: dict, headers: dict[str, str], responses: bool = False) -> str | None:
    model = body.get("model")
    if responses:
        if not isinstance(model, str) or not model:
            return "Missing required parameter: 'model'."
        if not isinstance(body.get("input"), str | list):
            return "Missing required parameter: 'input'."
        if body.get("previous_response_id") is not None:
            return f"Previous response with id '{body['previous_response_id']}' not found."
        return None
    messages = body.get("messages")
    if provider == OPENAI:
        if not isinstance(model, str) or not model:
            return "you must provide a model parameter"
        if not isinstance(messages, list) or not messages:
            return (
                "[] is too short - 'messages'"
                if isinstance(messages, list)
                else "Missing required parameter: 'messages'."
            )
        return None
    if "anthropic-version" not in headers:
        return "anthropic-version: header is required"
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            return (
                'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                'not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        names = {t.get("name") for t in body.get("tools") or () if isinstance(t, dict)}
        if choice.get("name") not in names:
            return f"tool_choice.name: Tool '{choice.get('name')}' not found in tools"
    return None


# --------------------------------------------------------------------------------------------- the controller


class FakeUpstream:
    """The fake server and its controller (see the module docstring)."""

    def __init__(self, *, record_limit: int = 10_000, ledger: bool = False, **config: Any):
        self._initial = _make_config(FakeConfig(), config)
        self._config = self._initial
        self._ledger_on = ledger
        self._ledger: list[RecordedRequest] = []
        self._rng = random.Random(self._initial.fault_seed)
        self._lock = threading.Lock()
        self._recorded_cv = threading.Condition(self._lock)
        self._faults: deque[Fault] = deque()
        self._records: deque[RecordedRequest] = deque(maxlen=record_limit or None)
        self._record_limit = record_limit
        self._counter = itertools.count(1)
        self._total = 0
        self._connections = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeUpstream:
        """Serve on a background thread with its own event loop; returns once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen(host, port))
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close(), loop)
        try:
            future.result(5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _listen(self, host: str, port: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _Conn(self), host, port, backlog=4096)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.abort()
        await asyncio.sleep(0)

    # configuration
    @property
    def config(self) -> FakeConfig:
        return self._config

    def configure(self, **fields: Any) -> FakeConfig:
        with self._lock:
            self._config = _make_config(self._config, fields)
            if "fault_seed" in fields:
                self._rng = random.Random(self._config.fault_seed)
            return self._config

    def fail_next(
        self,
        kind: str | int,
        times: int | None = 1,
        *,
        provider: str | None = None,
        model: str | None = None,
        retry_after: float | None = 0,
        hold_s: float = 30.0,
        after_chunks: int | None = None,
        message: str | None = None,
        **_unexpected: Any,
    ) -> Fault:
        if _unexpected:
            raise TypeError(f"unknown fail_next arguments: {sorted(_unexpected)}")
        kind = str(kind)
        if kind not in FAULT_KINDS and not (kind.isdigit() and 400 <= int(kind) <= 599):
            raise ValueError(f"unknown fault {kind!r}: use a status code 400-599 or one of {sorted(FAULT_KINDS)}")
        if provider not in (None, OPENAI, ANTHROPIC):
            raise ValueError(f"provider must be None, {OPENAI!r} or {ANTHROPIC!r}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None: until cleared)")
        fault = Fault(
            kind=kind,
            times=times,
            provider=provider,
            model=model,
            retry_after=retry_after,
            hold_s=hold_s,
            after_chunks=after_chunks,
            message=message,
            retry_after_explicit=retry_after not in (0, None),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return [dataclasses.replace(f) for f in self._faults]

    def reset(self) -> None:
        with self._lock:
            self._config = self._initial
            self._faults.clear()
            self._records.clear()
            self._ledger.clear()
            self._rng = random.Random(self._initial.fault_seed)
            self._total = 0
            self._connections = 0
            self._max_in_flight = self._in_flight

    # recorded requests
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._records[-1] if self._records else None

    def requests_for(self, provider: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (provider is None or r.provider == provider) and (path is None or r.path == path)
        ]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        with self._recorded_cv:
            if not self._recorded_cv.wait_for(lambda: len(self._records) >= n, timeout):
                raise TimeoutError(f"expected {n} upstream requests within {timeout}s, got {len(self._records)}")
            return list(self._records)

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> None:
        """Poll `predicate` (e.g. `lambda: fake.last_request.disconnected`) until true; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(0.01)

    @property
    def ledger(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._ledger)

    def ledger_json(self) -> list[dict[str, Any]]:
        """The ledger as JSON-ready dicts: what was asked (tag, provider, model, stream), what the fake did (fault,
        status) and what it billed: `usage` (the counts its response reported, in the provider's own fields) when
        `completed` (the whole response left on an open connection), else null."""
        return [
            {
                "n": r.n,
                "tag": r.tag,
                "provider": r.provider,
                "model": r.model,
                "stream": r.stream,
                "fault": r.fault,
                "status": r.status,
                "completed": r.completed,
                "disconnected": r.disconnected,
                "usage": dataclasses.asdict(r.usage) if r.usage is not None and r.completed else None,
            }
            for r in self.ledger
        ]

    @property
    def stats(self) -> dict[str, int]:
        return {
            "total": self._total,
            "connections": self._connections,
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
        }

    # request handling (server loop)
    def _take_fault(self, provider: str, model: str | None, cfg: FakeConfig) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.provider is None or fault.provider == provider) and (
                    fault.model is None or fault.model == model
                ):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
            if cfg.fault_mix:
                draw = self._rng.random()
                for kind, probability in cfg.fault_mix:
                    draw -= probability
                    if draw < 0:
                        return _mix_fault(kind, cfg)
        return None

    def _handle(self, req: _Req) -> tuple[list, RecordedRequest | None]:
        url = req.url.decode("latin-1")
        path, _, query = url.partition("?")
        if path.startswith("/_fake/"):
            return self._control(req, path), None
        cfg = self._config
        n = next(self._counter)
        self._total += 1
        if path in ("/v1/chat/completions", "/v1/responses"):
            provider: str | None = OPENAI
        elif path == "/v1/messages":
            provider = ANTHROPIC
        else:
            provider = ANTHROPIC if "anthropic-version" in req.headers else OPENAI
        body: Any = None
        if req.body:
            try:
                body = json.loads(req.body)
            except ValueError:
                body = None
        is_dict = isinstance(body, dict)
        model = body.get("model") if is_dict and isinstance(body.get("model"), str) else None
        tag = None
        if self._ledger_on:
            found = LEDGER_TAG.search(req.body)
            tag = found.group(1).decode("ascii") if found else None
        rec = RecordedRequest(
            n=n,
            tag=tag,
            method=req.method,
            path=path,
            query=query,
            headers=req.headers,
            raw_body=req.body,
            body=body,
            provider=provider,
            model=model,
            stream=bool(body.get("stream")) if is_dict else False,
            received_at=time.time(),
        )
        ops = self._respond(req, rec, cfg, path, provider, body, n)
        if self._ledger_on and path in COMPLETION_PATHS:
            with self._lock:
                self._ledger.append(rec)
        if self._record_limit:
            with self._recorded_cv:
                self._records.append(rec)
                self._recorded_cv.notify_all()
        elif self._ledger_on:  # the ledger alone keeps only what it reports (no bodies: a long soak stays small)
            rec.raw_body, rec.body, rec.headers = b"", None, {}
        return ops, rec

    def _respond(self, req, rec, cfg, path, provider, body, n) -> list:
        keep_alive = req.keep_alive
        completion = path in COMPLETION_PATHS
        if not completion and path != "/v1/models":
            rec.status = 404
            return _error_ops(provider, 404, keep_alive, n, None, f"Unknown request URL: {req.method} {path}.")
        expected = "POST" if completion else "GET"
        if req.method != expected:
            rec.status = 405
            return _error_ops(provider, 405, keep_alive, n, None, f"Method {req.method} not allowed for {path}.")
        if cfg.api_key is not None:
            if provider == OPENAI:
                got = req.headers.get("authorization")
                if got != f"Bearer {cfg.api_key}":
                    rec.status = 401
                    msg = "Incorrect API key provided." if got else "You didn't provide an API key."
                    return _error_ops(provider, 401, keep_alive, n, None, msg)
            elif req.headers.get("x-api-key") != cfg.api_key:
                rec.status = 401
                msg = "invalid x-api-key" if "x-api-key" in req.headers else "x-api-key header is required"
                return _error_ops(provider, 401, keep_alive, n, None, msg)
        if not completion:
            rec.status = 200
            return _plain_ops(200, self._models(cfg, provider), keep_alive)
        if not isinstance(body, dict):
            rec.status = 400
            return _error_ops(provider, 400, keep_alive, n, None, "The request body is not valid JSON.")
        problem = _validate(provider, body, req.headers, responses=path == "/v1/responses")
        if problem is not None:
            rec.status = 400
            return _error_ops(provider, 400, keep_alive, n, None, problem)
        fault = self._take_fault(provider, rec.model, cfg)
        exchange = _Exchange(self, cfg, provider, body, req, n, responses=path == "/v1/responses")
        if fault is None:
            return exchange.ok_ops(None, rec)
        rec.fault = fault.kind
        kind = fault.kind
        if kind.isdigit():
            rec.status = int(kind)
            return exchange.error_ops(int(kind), fault)
        if kind == "reset":
            return [(_RESET, None)]
        if kind == "disconnect":
            return [(_CLOSE, None)]
        return exchange.ok_ops(fault, rec)

    @staticmethod
    def _models(cfg: FakeConfig, provider: str) -> dict:
        if provider == ANTHROPIC:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in cfg.models
            ]
            return {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        owner = {True: "anthropic", False: "openai"}
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": owner[m.startswith("claude")]}
                for m in cfg.models
            ],
        }

    def _control(self, req: _Req, path: str) -> list:
        try:
            args = json.loads(req.body) if req.body else {}
            if not isinstance(args, dict):
                raise ValueError("the body must be a JSON object")
            if path == "/_fake/config" and req.method == "POST":
                self.configure(**args)
            elif path == "/_fake/fail_next" and req.method == "POST":
                self.fail_next(**args)
            elif path == "/_fake/reset" and req.method == "POST":
                self.reset()
            elif path == "/_fake/ledger" and req.method == "GET":
                return _plain_ops(200, {"entries": self.ledger_json()}, req.keep_alive)
            elif path != "/_fake/stats":
                return _plain_ops(404, {"error": f"unknown control {req.method} {path}"}, req.keep_alive)
        except (TypeError, ValueError) as exc:
            return _plain_ops(400, {"error": str(exc)}, req.keep_alive)
        return _plain_ops(200, {**self.stats, "recorded": len(self._records)}, req.keep_alive)


def _make_config(base: FakeConfig, fields: dict[str, Any]) -> FakeConfig:
    known = {f.name for f in dataclasses.fields(FakeConfig)}
    unknown = set(fields) - known
    if unknown:
        raise TypeError(f"unknown FakeConfig fields: {sorted(unknown)}")
    fields = dict(fields)
    if isinstance(fields.get("usage"), dict):
        fields["usage"] = Usage(**fields["usage"])
    if "models" in fields:
        fields["models"] = tuple(fields["models"])
    if "chunks" in fields and int(fields["chunks"]) < 1:
        raise ValueError("chunks must be at least 1")
    if fields.get("anthropic_delta_usage", "output") not in ("output", "full"):
        raise ValueError("anthropic_delta_usage must be 'output' or 'full'")
    if "fault_mix" in fields:
        fields["fault_mix"] = _fault_mix(fields["fault_mix"])
    return dataclasses.replace(base, **fields)


def _fault_mix(mix: Any) -> tuple[tuple[str, float], ...]:
    items = mix.items() if isinstance(mix, dict) else mix
    out = []
    for kind, probability in items:
        kind, probability = str(kind), float(probability)
        known = kind in FAULT_KINDS or kind in MIX_ONLY_KINDS or (kind.isdigit() and 400 <= int(kind) <= 599)
        if not known:
            raise ValueError(f"unknown fault {kind!r} in fault_mix")
        if probability < 0:
            raise ValueError("fault_mix probabilities must not be negative")
        out.append((kind, probability))
    if sum(p for _, p in out) > 1:
        raise ValueError("fault_mix probabilities add up to more than 1")
    return tuple(out)


def _mix_fault(kind: str, cfg: FakeConfig) -> Fault:
    if kind == "stream_stall":
        return Fault(kind="timeout", times=None, hold_s=cfg.fault_hold_s, after_chunks=1)
    return Fault(kind=kind, times=None, hold_s=cfg.fault_hold_s, retry_after=0)


# --------------------------------------------------------------------------------------------- standalone


async def _serve(fake: FakeUpstream, host: str, port: int) -> None:
    await fake._listen(host, port)
    print(f"fake upstream listening on {fake.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake._close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--chunk-delay-ms", type=float, default=0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--record", type=int, default=0, help="keep the last N requests (0: none)")
    parser.add_argument("--ledger", action="store_true", help="keep the ledger (GET /_fake/ledger)")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    fake = FakeUpstream(
        record_limit=args.record,
        ledger=args.ledger,
        latency_ms=args.latency_ms,
        chunks=args.chunks,
        chunk_delay_ms=args.chunk_delay_ms,
        api_key=args.api_key,
    )
    loop_factory = None
    if not args.no_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(fake, args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
