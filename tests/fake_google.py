"""A fake Google on 127.0.0.1 for the calendar tests, speaking the real wire protocol of the subset djllm uses:

- the OAuth authorize page (a consent form with a checkbox per scope, Allow / Deny), PKCE S256 checked;
- the token endpoint (authorization_code and refresh_token grants; client auth by Basic or by body);
- the revoke endpoint;
- Calendar v3 events: list / insert / get / patch / delete under /calendar/v3/.

google-auth-oauthlib, google-auth and google-api-python-client run unmodified against it: the tests only point
`auth_uri`, `token_uri`, the revoke URL and the API client's `api_endpoint` here. Faults are switchable per test
(`fake.fail(...)`), and every request is logged (`fake.requests`).

Use it with `pytest_plugins = ["tests.fake_google"]` in a test module (and import nothing from it there, so
pytest can still rewrite its asserts): fixtures `fake_google` (the server), `google_settings` (djllm configured
against it, a fresh encryption key), `google_connect` (the consent flow without a browser) and `connected`
(the `user` fixture has connected).
"""

import base64
import hashlib
import html
import json
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from cryptography.fernet import Fernet

CLIENT_ID = "djllm-test-client.apps.googleusercontent.com"
CLIENT_SECRET = "fake-client-secret-123"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events"
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
BASE32HEX = set("0123456789abcdefghijklmnopqrstuv")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _google_error(status: int, message: str, reason: str, status_text: str = "") -> dict:
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status_text,
        }
    }


@dataclass
class Fault:
    status: int
    body: dict | str
    headers: dict
    method: str | None
    path_contains: str
    times: int
    after: int = 0  # matching requests let through before the fault applies


@dataclass
class Hang:
    """Matching requests wait until `release()` (a Google that stops answering). `arrived` is set by the first."""

    method: str | None
    path_contains: str
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    waiting: int = 0

    def matches(self, method: str, path: str) -> bool:
        return not self.released.is_set() and self.method in (None, method) and self.path_contains in path

    def release(self) -> None:
        self.released.set()


@dataclass
class Grant:
    email: str
    scopes: list[str]
    refresh_token: str | None = None
    revoked: bool = False
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at (epoch)


class FakeGoogle:
    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET

    def __init__(self):
        self.account_email = "alice.calendar@gmail.example"
        self.access_token_lifetime = 3600
        self.redirect_uris: set[str] | None = None  # None: any redirect URI is accepted
        self.grants: list[Grant] = []
        self.codes: dict[str, dict] = {}
        self.calendars: dict[str, dict[str, dict]] = {}
        self.faults: list[Fault] = []
        self.hangs: list[Hang] = []
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.token_requests: list[dict] = []
        self.revoked: list[str] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> "FakeGoogle":
        self._thread.start()
        return self

    def stop(self) -> None:
        for hang in self.hangs:
            hang.release()
        self._server.shutdown()
        self._server.server_close()

    @property
    def auth_uri(self) -> str:
        return f"{self.url}/o/oauth2/auth"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def revoke_uri(self) -> str:
        return f"{self.url}/revoke"

    @property
    def api_endpoint(self) -> str:
        return f"{self.url}/calendar/v3/"

    # --- test controls -------------------------------------------------------------------------------------
    def fail(self, status, body=None, *, method=None, path_contains="", headers=None, times=1, after=0) -> None:
        """After `after` matching requests, the next `times` ones answer `status` with `body` (JSON if a dict)."""
        with self.lock:
            self.faults.append(
                Fault(status, body if body is not None else {}, headers or {}, method, path_contains, times, after)
            )

    def hang(self, *, method=None, path_contains="") -> Hang:
        """Matching requests get no answer until the returned `Hang` is released (then they are served)."""
        hang = Hang(method, path_contains)
        with self.lock:
            self.hangs.append(hang)
        return hang

    def events(self, calendar_id: str = "primary") -> dict[str, dict]:
        return self.calendars.setdefault(calendar_id, {})

    def live_events(self, calendar_id: str = "primary") -> list[dict]:
        return [e for e in self.events(calendar_id).values() if e.get("status") != "cancelled"]

    def revoke_all(self) -> None:
        """As if the user removed djllm's access in their Google account (refresh -> invalid_grant)."""
        with self.lock:
            for grant in self.grants:
                grant.revoked = True

    def expire_access_tokens(self) -> None:
        with self.lock:
            for grant in self.grants:
                for token in grant.access_tokens:
                    grant.access_tokens[token] = 0

    def count(self, method: str, path_contains: str) -> int:
        return sum(1 for m, p in self.requests if m == method and path_contains in p)

    def consent(self, authorization_url: str, *, granted=None, deny=False) -> str:
        """What a person does on the consent page, without a browser: returns the redirect (callback) URL."""
        import requests

        page = requests.get(authorization_url, timeout=10)
        assert page.status_code == 200, page.text
        query = parse_qs(urlparse(authorization_url).query)
        form = {k: v[0] for k, v in query.items()}
        form["decision"] = "deny" if deny else "allow"
        requested = form["scope"].split()
        form["granted"] = requested if granted is None else granted
        answer = requests.post(f"{self.url}/o/oauth2/approve", data=form, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text
        return answer.headers["Location"]

    # --- the protocol --------------------------------------------------------------------------------------
    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, body, headers=None, content_type="application/json; charset=UTF-8"):
                if isinstance(body, dict | list):
                    payload = json.dumps(body).encode()
                elif isinstance(body, str):
                    payload = body.encode()
                else:
                    payload = body or b""
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload) if status != 204 else 0))
                self.end_headers()
                if status != 204:
                    self.wfile.write(payload)

            def _dispatch(self, method: str):
                body = self._body()
                fake.requests.append((method, self.path))
                for hang in list(fake.hangs):
                    if hang.matches(method, self.path):
                        hang.waiting += 1
                        hang.arrived.set()
                        hang.released.wait(timeout=120)
                with fake.lock:
                    for fault in fake.faults:
                        if fault.times > 0 and (fault.method in (None, method)) and fault.path_contains in self.path:
                            if fault.after > 0:
                                fault.after -= 1
                                continue
                            fault.times -= 1
                            return self._send(fault.status, fault.body, fault.headers)
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                try:
                    if url.path == "/o/oauth2/auth" and method == "GET":
                        return fake._authorize_page(self, query)
                    if url.path == "/o/oauth2/approve" and method == "POST":
                        return fake._approve(self, parse_qs(body.decode()))
                    if url.path == "/token" and method == "POST":
                        return fake._token(self, {k: v[-1] for k, v in parse_qs(body.decode()).items()})
                    if url.path == "/revoke" and method == "POST":
                        params = {**query, **{k: v[-1] for k, v in parse_qs(body.decode()).items()}}
                        return fake._revoke(self, params)
                    if url.path.startswith("/calendar/v3/calendars/"):
                        return fake._calendar(self, method, url.path, query, body)
                except Exception as exc:  # a bug in the fake must show up as a 500, not a hang
                    return self._send(500, _google_error(500, f"fake google error: {exc!r}", "backendError"))
                return self._send(404, _google_error(404, "Not Found", "notFound"))

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

            def do_PATCH(self):
                self._dispatch("PATCH")

            def do_DELETE(self):
                self._dispatch("DELETE")

        return Handler

    # OAuth ------------------------------------------------------------------------------------------------
    def _authorize_page(self, handler, q: dict):
        problems = []
        if q.get("client_id") != CLIENT_ID:
            problems.append("invalid_client")
        if q.get("response_type") != "code":
            problems.append("unsupported_response_type")
        if self.redirect_uris is not None and q.get("redirect_uri") not in self.redirect_uris:
            problems.append("redirect_uri_mismatch")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problems.append("invalid_request: code_challenge")
        if problems:
            return handler._send(
                400, f"<h1>Error 400: {html.escape(', '.join(problems))}</h1>", content_type="text/html"
            )
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in q.items()
        )
        boxes = "".join(
            f'<label><input type="checkbox" name="granted" value="{html.escape(s)}" checked> {html.escape(s)}</label><br>'
            for s in q.get("scope", "").split()
        )
        page = (
            "<!doctype html><html><head><title>Sign in - Google Accounts (fake)</title></head><body>"
            f"<h1>djllm wants to access your Google Account</h1><p id='account'>{html.escape(self.account_email)}</p>"
            f"<form method='post' action='/o/oauth2/approve'>{hidden}{boxes}"
            "<button type='submit' name='decision' value='deny' id='deny'>Cancel</button>"
            "<button type='submit' name='decision' value='allow' id='allow'>Allow</button>"
            "</form></body></html>"
        )
        return handler._send(200, page, content_type="text/html; charset=utf-8")

    def _approve(self, handler, form: dict):
        q = {k: v[-1] for k, v in form.items() if k != "granted"}
        redirect_uri, state = q["redirect_uri"], q.get("state", "")
        if q.get("decision") != "allow":
            target = f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}"
            return handler._send(302, "", {"Location": target})
        granted = form.get("granted", [])
        if q.get("include_granted_scopes") == "true":
            for grant in self.grants:
                if not grant.revoked:
                    granted = sorted(set(granted) | set(grant.scopes))
        code = "4/0" + secrets.token_urlsafe(24)
        self.codes[code] = {
            "redirect_uri": redirect_uri,
            "scopes": granted,
            "challenge": q.get("code_challenge"),
            "offline": q.get("access_type") == "offline",
            "consent": q.get("prompt") == "consent",
            "issued": time.time(),
        }
        params = {"state": state, "code": code, "scope": " ".join(granted), "prompt": "consent"}
        return handler._send(302, "", {"Location": f"{redirect_uri}?{urlencode(params)}"})

    def _client_ok(self, handler, params: dict) -> bool:
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        else:
            client_id, secret = params.get("client_id"), params.get("client_secret")
        return client_id == CLIENT_ID and secret == CLIENT_SECRET

    def _id_token(self, email: str) -> str:
        header = _b64url(json.dumps({"alg": "RS256", "kid": "fake", "typ": "JWT"}).encode())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": CLIENT_ID,
            "sub": "1234567890",
            "email": email,
            "email_verified": True,
            "iat": int(time.time()),
            "exp": int(time.time()) + 3600,
        }
        return f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(b'not-a-real-signature')}"

    def _issue(self, grant: Grant) -> dict:
        access = "ya29.fake-" + secrets.token_urlsafe(24)
        grant.access_tokens[access] = time.time() + self.access_token_lifetime
        return {
            "access_token": access,
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(grant.scopes),
            "token_type": "Bearer",
        }

    def _token(self, handler, params: dict):
        self.token_requests.append({k: v for k, v in params.items() if k != "client_secret"})
        if not self._client_ok(handler, params):
            return handler._send(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            entry = self.codes.pop(params.get("code", ""), None)
            if entry is None:
                return handler._send(400, {"error": "invalid_grant", "error_description": "Malformed auth code."})
            if entry["redirect_uri"] != params.get("redirect_uri"):
                return handler._send(400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"})
            verifier = params.get("code_verifier")
            if not verifier:
                return handler._send(400, {"error": "invalid_grant", "error_description": "Missing code verifier."})
            if _b64url(hashlib.sha256(verifier.encode()).digest()) != entry["challenge"]:
                return handler._send(400, {"error": "invalid_grant", "error_description": "Invalid code verifier."})
            with self.lock:
                grant = Grant(email=self.account_email, scopes=entry["scopes"])
                first = not any(g.refresh_token and not g.revoked for g in self.grants)
                if entry["offline"] and (entry["consent"] or first):
                    grant.refresh_token = "1//fake-" + secrets.token_urlsafe(32)
                self.grants.append(grant)
                answer = self._issue(grant)
            if grant.refresh_token:
                answer["refresh_token"] = grant.refresh_token
            if "openid" in grant.scopes:
                answer["id_token"] = self._id_token(grant.email)
            return handler._send(200, answer)
        if grant_type == "refresh_token":
            with self.lock:
                grant = next((g for g in self.grants if g.refresh_token == params.get("refresh_token")), None)
                if grant is None or grant.revoked:
                    return handler._send(
                        400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                    )
                answer = self._issue(grant)
            return handler._send(200, answer)
        return handler._send(400, {"error": "unsupported_grant_type"})

    def _revoke(self, handler, params: dict):
        token = params.get("token", "")
        with self.lock:
            for grant in self.grants:
                if token == grant.refresh_token or token in grant.access_tokens:
                    grant.revoked = True
                    self.revoked.append(token)
                    return handler._send(200, {})
        return handler._send(400, {"error": "invalid_token", "error_description": "Token expired or revoked"})

    # Calendar ---------------------------------------------------------------------------------------------
    def _authorized(self, handler) -> tuple[Grant | None, dict | None]:
        auth = handler.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self.lock:
            for grant in self.grants:
                expires = grant.access_tokens.get(token)
                if expires is not None and not grant.revoked and expires > time.time():
                    if CALENDAR_SCOPE not in grant.scopes:
                        return None, _google_error(
                            403,
                            "Request had insufficient authentication scopes.",
                            "insufficientPermissions",
                            "PERMISSION_DENIED",
                        )
                    return grant, None
        return None, _google_error(
            401, "Request had invalid authentication credentials.", "authError", "UNAUTHENTICATED"
        )

    @staticmethod
    def _instant(when: dict) -> datetime:
        if "dateTime" in when and when["dateTime"]:
            return datetime.fromisoformat(when["dateTime"].replace("Z", "+00:00")).astimezone(UTC)
        return datetime.combine(date.fromisoformat(when["date"]), datetime.min.time(), tzinfo=UTC)

    def _calendar(self, handler, method: str, path: str, query: dict, body: bytes):
        grant, error = self._authorized(handler)
        if error:
            return handler._send(error["error"]["code"], error)
        parts = path[len("/calendar/v3/calendars/") :].split("/")
        calendar_id = parts[0]
        if len(parts) < 2 or parts[1] != "events":
            return handler._send(404, _google_error(404, "Not Found", "notFound"))
        events = self.events(calendar_id)
        event_id = parts[2] if len(parts) > 2 else None
        if event_id is None and method == "GET":
            if query.get("pageToken") and not query["pageToken"].isdigit():
                # Google answers a page token it did not issue with 400 invalid.
                return handler._send(400, _google_error(400, "Invalid page token value.", "invalid"))
            return handler._send(200, self._list(events, query))
        if event_id is None and method == "POST":
            data = json.loads(body or b"{}")
            new_id = data.get("id") or "".join(secrets.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(26))
            if not (5 <= len(new_id) <= 1024) or set(new_id) - BASE32HEX:
                return handler._send(400, _google_error(400, "Invalid resource id value.", "invalid"))
            if "start" not in data or "end" not in data:
                return handler._send(400, _google_error(400, "Missing end time.", "required"))
            if self._instant(data["end"]) <= self._instant(data["start"]):
                return handler._send(400, _google_error(400, "The specified time range is empty.", "timeRangeEmpty"))
            with self.lock:
                if new_id in events:
                    return handler._send(
                        409, _google_error(409, "The requested identifier already exists.", "duplicate")
                    )
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                event = {
                    **data,
                    "kind": "calendar#event",
                    "etag": f'"{uuid.uuid4().int % 10**16}"',
                    "id": new_id,
                    "status": "confirmed",
                    "htmlLink": f"https://www.google.com/calendar/event?eid={new_id}",
                    "created": now,
                    "updated": now,
                    "creator": {"email": grant.email, "self": True},
                    "organizer": {"email": grant.email, "self": True},
                }
                if "attendees" in data:
                    event["attendees"] = [{**a, "responseStatus": "needsAction"} for a in data["attendees"]]
                events[new_id] = event
            return handler._send(200, event)
        event = events.get(event_id)
        if event is None:
            return handler._send(404, _google_error(404, "Not Found", "notFound"))
        if method == "GET":
            return handler._send(200, event)
        if method == "PATCH":
            if event.get("status") == "cancelled":
                return handler._send(410, _google_error(410, "Resource has been deleted", "deleted"))
            for key, value in json.loads(body or b"{}").items():
                if isinstance(value, dict) and isinstance(event.get(key), dict):
                    merged = {**event[key], **value}
                    event[key] = {k: v for k, v in merged.items() if v is not None}
                else:
                    event[key] = value
            event["updated"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            return handler._send(200, event)
        if method == "DELETE":
            if event.get("status") == "cancelled":
                return handler._send(410, _google_error(410, "Resource has been deleted", "deleted"))
            event["status"] = "cancelled"
            return handler._send(204, b"")
        return handler._send(405, _google_error(405, "Method not allowed", "methodNotAllowed"))

    def _list(self, events: dict, query: dict) -> dict:
        items = [e for e in events.values() if e.get("status") != "cancelled" or query.get("showDeleted") == "true"]
        if query.get("timeMin"):
            low = datetime.fromisoformat(query["timeMin"].replace("Z", "+00:00"))
            items = [e for e in items if self._instant(e["end"]) > low]
        if query.get("timeMax"):
            high = datetime.fromisoformat(query["timeMax"].replace("Z", "+00:00"))
            items = [e for e in items if self._instant(e["start"]) < high]
        if query.get("q"):
            needle = query["q"].lower()
            items = [
                e
                for e in items
                if any(needle in str(e.get(k, "")).lower() for k in ("summary", "description", "location"))
            ]
        if query.get("orderBy") == "startTime":
            items.sort(key=lambda e: self._instant(e["start"]))
        offset = int(query.get("pageToken") or 0)
        size = int(query.get("maxResults") or 250)
        page = items[offset : offset + size]
        answer = {"kind": "calendar#events", "summary": "primary", "timeZone": "Europe/Berlin", "items": page}
        if offset + size < len(items):
            answer["nextPageToken"] = str(offset + size)
        return answer


def _guard_network(monkeypatch):
    """Fail any connection that leaves the machine: the suite must never reach the real Google."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and not (host.startswith("127.") or host in ("::1", "localhost"))
            and sock.family in (socket.AF_INET, socket.AF_INET6)
        ):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost") and not str(host).startswith("127.") and host != "::1":
            raise AssertionError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def fake_google(monkeypatch):
    _guard_network(monkeypatch)
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


@pytest.fixture
def google_settings(settings, fake_google, monkeypatch):
    """djllm configured against the fake Google, with a fresh encryption key and no retry sleeps."""
    # The fake speaks plain HTTP on loopback; oauthlib refuses non-HTTPS endpoints unless told this.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    settings.GOOGLE_CLIENT_SECRETS_FILE = ""
    settings.GOOGLE_CLIENT_ID = CLIENT_ID
    settings.GOOGLE_CLIENT_SECRET = CLIENT_SECRET
    settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.GOOGLE_OAUTH_AUTH_URI = fake_google.auth_uri
    settings.GOOGLE_OAUTH_TOKEN_URI = fake_google.token_uri
    settings.GOOGLE_OAUTH_REVOKE_URI = fake_google.revoke_uri
    settings.GOOGLE_CALENDAR_API_ENDPOINT = fake_google.api_endpoint
    settings.GOOGLE_OAUTH_REDIRECT_URI = "http://testserver/api/v1/calendar/oauth2callback"
    settings.GOOGLE_API_RETRY_BACKOFF_SECONDS = 0
    settings.GOOGLE_API_MAX_RETRIES = 2
    settings.GOOGLE_API_TIMEOUT = 10
    return settings


def connect_via_browserless_flow(client, fake, user, *, granted=None, deny=False):
    """Log `user` in with a session and go through /auth -> consent -> callback. Returns the callback response."""
    # tests.factories.UserFactory sets the password after saving and skips the second save: store it, or the
    # session's auth hash would not match the row and the login would not stick.
    user.save(update_fields=["password"])
    client.force_login(user)
    start = client.get("/api/v1/calendar/auth")
    assert start.status_code == 302, start.content
    callback_url = fake.consent(start["Location"], granted=granted, deny=deny)
    return client.get(callback_url)


@pytest.fixture
def google_connect(google_settings, fake_google):
    """`google_connect(client, user, granted=None, deny=False)` -> the callback's response."""

    def _connect(client, user, **kwargs):
        return connect_via_browserless_flow(client, fake_google, user, **kwargs)

    return _connect


@pytest.fixture
def connected(google_settings, fake_google, user, client):
    """`user` has connected Google Calendar through the real flow. Returns the stored GoogleCredential."""
    from calendars.models import GoogleCredential

    response = connect_via_browserless_flow(client, fake_google, user)
    assert response.status_code == 302 and response["Location"] == "/account/", response
    return GoogleCredential.objects.get(user=user)
