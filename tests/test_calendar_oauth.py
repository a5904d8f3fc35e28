"""Google Calendar connection: configuration, the OAuth web flow (state, PKCE, scopes), credentials at rest,
key rotation, refresh and its persistence, invalid_grant -> reconnect, revoke, status, admin.

Every test runs the real google-auth-oauthlib / google-auth / google-api-python-client against the fake Google
in tests/fake_google.py; no test reaches the network (the fixture fails any non-loopback connection)."""

import base64
import hashlib
import json
from datetime import timedelta
from io import StringIO
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from calendars.config import CALENDAR_SCOPE, EMAIL_SCOPE
from calendars.models import GoogleCredential, OAuthState
from calendars.oauth import state_digest
from tests.factories import UserFactory

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.django_db


def _query(url: str) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(url).query).items()}


def _messages(response) -> list[str]:
    """The messages this response added (those of earlier, unfollowed redirects are not included)."""
    return [str(m) for m in response.wsgi_request._messages._queued_messages]


def _account_page(client) -> str:
    return client.get("/account/").content.decode()


def _stored_tokens(fake) -> list[str]:
    tokens = []
    for grant in fake.grants:
        tokens += [grant.refresh_token or "", *grant.access_tokens]
    return [t for t in tokens if t]


# --- Configuration ------------------------------------------------------------------------------------------


@pytest.fixture
def unconfigured(settings):
    settings.GOOGLE_CLIENT_SECRETS_FILE = ""
    settings.GOOGLE_CLIENT_ID = ""
    settings.GOOGLE_CLIENT_SECRET = ""
    settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = []
    return settings


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/calendar/auth"),
        ("get", "/api/v1/calendar/status"),
        ("get", "/api/v1/calendar/events"),
        ("post", "/api/v1/calendar/events"),
        ("get", "/api/v1/calendar/events/abc123"),
        ("patch", "/api/v1/calendar/events/abc123"),
        ("delete", "/api/v1/calendar/events/abc123"),
    ],
)
def test_unconfigured_endpoints_answer_503_naming_the_settings(unconfigured, auth_client, method, path):
    response = getattr(auth_client, method)(path, {}, format="json")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "calendar_not_configured"
    for name in (
        "GOOGLE_CLIENT_SECRETS_FILE",
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "GOOGLE_TOKEN_ENCRYPTION_KEYS",
    ):
        assert name in error["message"]
    assert error["details"]["missing"] == [
        "GOOGLE_CLIENT_SECRETS_FILE or GOOGLE_CLIENT_ID + GOOGLE_CLIENT_SECRET",
        "GOOGLE_TOKEN_ENCRYPTION_KEYS",
    ]


def test_missing_keys_alone_is_named(google_settings, auth_client):
    google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = []
    error = auth_client.get("/api/v1/calendar/status").json()["error"]
    assert error["code"] == "calendar_not_configured"
    assert error["details"]["missing"] == ["GOOGLE_TOKEN_ENCRYPTION_KEYS"]
    assert "GOOGLE_CLIENT_ID" not in error["message"]


def test_a_bad_fernet_key_is_a_503_and_a_system_check_error(google_settings, auth_client):
    google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), "not-a-key"]
    response = auth_client.get("/api/v1/calendar/status")
    assert response.status_code == 503
    assert "key #2 is not a Fernet key" in response.json()["error"]["message"]
    assert "not-a-key" not in response.content.decode()
    assert [e.id for e in run_checks() if e.id.startswith("calendars.")] == ["calendars.E001"]


def test_client_secrets_file_is_read(google_settings, fake_google, auth_client, tmp_path):
    secrets_file = tmp_path / "client_secret_web.json"
    secrets_file.write_text(
        json.dumps(
            {
                "web": {
                    "client_id": "from-file.apps.googleusercontent.com",
                    "client_secret": "s3cret",
                    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                    "token_uri": "https://oauth2.googleapis.com/token",
                }
            }
        )
    )
    google_settings.GOOGLE_CLIENT_SECRETS_FILE = str(secrets_file)
    google_settings.GOOGLE_CLIENT_ID = google_settings.GOOGLE_CLIENT_SECRET = ""
    google_settings.GOOGLE_OAUTH_AUTH_URI = ""  # the file's value then
    url = auth_client.get("/api/v1/calendar/auth").json()["authorization_url"]
    assert url.startswith("https://accounts.google.com/o/oauth2/auth?")
    assert _query(url)["client_id"] == "from-file.apps.googleusercontent.com"

    secrets_file.write_text('{"installed": {"client_id": "x"}}')
    error = auth_client.get("/api/v1/calendar/auth").json()["error"]
    assert error["code"] == "calendar_not_configured" and "Web application" in error["message"]


def test_account_page_says_when_not_configured(unconfigured, client, user):
    user.save(update_fields=["password"])
    client.force_login(user)
    page = _account_page(client)
    assert "Google Calendar" in page and "not configured for Google Calendar" in page
    assert "GOOGLE_TOKEN_ENCRYPTION_KEYS" in page and 'id="calendar-connect"' not in page


# --- Starting the flow --------------------------------------------------------------------------------------


def test_auth_with_a_token_returns_the_url_and_stores_the_state(google_settings, fake_google, auth_client, user):
    response = auth_client.get("/api/v1/calendar/auth")
    assert response.status_code == 200
    url = response.json()["authorization_url"]
    assert url.startswith(fake_google.auth_uri + "?")
    q = _query(url)
    assert q["client_id"] == fake_google.client_id and q["response_type"] == "code"
    assert q["redirect_uri"] == "http://testserver/api/v1/calendar/oauth2callback"
    assert CALENDAR_SCOPE in q["scope"].split()
    assert (q["access_type"], q["include_granted_scopes"], q["prompt"]) == ("offline", "true", "consent")
    assert q["code_challenge_method"] == "S256" and len(q["state"]) >= 40

    row = OAuthState.objects.get()
    assert row.user == user and row.used_at is None
    assert row.state_digest == state_digest(q["state"])  # only a digest of the state is stored
    assert row.expires_at - row.created_at == timedelta(minutes=10)
    assert q["state"] not in json.dumps(list(OAuthState.objects.values()), default=str)
    verifier = row.code_verifier  # stored encrypted, with the state
    assert verifier not in row.code_verifier_encrypted
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert challenge == q["code_challenge"]

    second = auth_client.get("/api/v1/calendar/auth").json()["authorization_url"]
    assert _query(second)["state"] != q["state"]  # random per request


def test_auth_needs_the_calendar_scope_or_a_session(google_settings, make_token, user, api_client):
    _, llm_only = make_token(user=user, scopes=["llm"])
    response = APIClient().get("/api/v1/calendar/auth", HTTP_AUTHORIZATION=f"Bearer {llm_only}")
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
    response = api_client.get("/api/v1/calendar/auth")
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_missing"


def test_account_page_button_redirects_to_google(google_settings, fake_google, client, user):
    user.save(update_fields=["password"])
    client.force_login(user)
    page = _account_page(client)
    assert "Not connected" in page and 'href="/api/v1/calendar/auth" id="calendar-connect"' in page
    response = client.get("/api/v1/calendar/auth")
    assert response.status_code == 302 and response["Location"].startswith(fake_google.auth_uri + "?")


# --- The callback -------------------------------------------------------------------------------------------


def test_full_flow_stores_the_credentials(google_connect, fake_google, client, user, auth_client):
    response = google_connect(client, user)
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert _messages(response) == [f"Google Calendar connected as {fake_google.account_email}."]

    credential = GoogleCredential.objects.get(user=user)
    assert credential.status == "connected" and credential.email == fake_google.account_email
    assert CALENDAR_SCOPE in credential.scopes and EMAIL_SCOPE in credential.scopes
    grant = fake_google.grants[-1]
    assert credential.refresh_token == grant.refresh_token
    assert credential.access_token in grant.access_tokens
    assert credential.expiry > timezone.now() + timedelta(minutes=50)

    # The callback rebuilt the Flow with the verifier stored at the start (the fake checks it against the
    # challenge; without it Google says "invalid_grant: Missing code verifier").
    exchange = fake_google.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["code_verifier"] == OAuthState.objects.get().code_verifier

    status = auth_client.get("/api/v1/calendar/status").json()
    assert status["connected"] is True and status["status"] == "connected" and status["needs_reconnect"] is False
    assert status["email"] == fake_google.account_email and CALENDAR_SCOPE in status["scopes"]
    assert grant.refresh_token not in json.dumps(status)
    page = _account_page(client)
    assert f"Connected as <strong>{fake_google.account_email}</strong>" in page


def test_state_is_single_use(connected, fake_google, client):
    unknown = client.get("/api/v1/calendar/oauth2callback", {"state": "made-up", "code": "4/0x"})
    assert _messages(unknown) == ["This sign-in link is unknown. Start again with “Connect Google Calendar”."]
    callback_url = fake_google.consent(client.get("/api/v1/calendar/auth")["Location"])
    assert _messages(client.get(callback_url))[0].startswith("Google Calendar connected")
    stored = GoogleCredential.objects.values().get()
    again = client.get(callback_url)  # the same state and code once more
    assert again["Location"] == "/account/"
    assert _messages(again) == ["This sign-in link was already used. Start again with “Connect Google Calendar”."]
    assert GoogleCredential.objects.values().get() == stored


def test_reused_state_stores_nothing(google_settings, fake_google, client, user):
    user.save(update_fields=["password"])
    client.force_login(user)
    callback_url = fake_google.consent(client.get("/api/v1/calendar/auth")["Location"])
    OAuthState.objects.update(used_at=timezone.now())  # as if a first callback had used it
    response = client.get(callback_url)
    assert _messages(response) == ["This sign-in link was already used. Start again with “Connect Google Calendar”."]
    assert not GoogleCredential.objects.exists()
    assert not any(r["grant_type"] == "authorization_code" for r in fake_google.token_requests)


def test_expired_state_stores_nothing(google_settings, fake_google, client, user):
    user.save(update_fields=["password"])
    client.force_login(user)
    callback_url = fake_google.consent(client.get("/api/v1/calendar/auth")["Location"])
    OAuthState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # its 10 minutes are over
    response = client.get(callback_url)
    assert _messages(response) == [
        "This sign-in link expired (10 minutes). Start again with “Connect Google Calendar”."
    ]
    assert not GoogleCredential.objects.exists()
    assert fake_google.token_requests == []


def test_another_users_state_is_refused(google_settings, fake_google, client, user):
    user.save(update_fields=["password"])
    client.force_login(user)
    callback_url = fake_google.consent(client.get("/api/v1/calendar/auth")["Location"])

    mallory = UserFactory(username="mallory")
    mallory.save(update_fields=["password"])
    other = type(client)()
    other.force_login(mallory)
    response = other.get(callback_url)
    assert _messages(response) == [
        "This sign-in link was started by another djllm user. Start again from your account."
    ]
    assert not GoogleCredential.objects.exists() and fake_google.token_requests == []
    assert OAuthState.objects.get().used_at is None  # still usable by its owner

    assert client.get(callback_url)["Location"] == "/account/"
    assert GoogleCredential.objects.get().user == user


def test_denied_consent_stores_nothing(google_connect, fake_google, client, user):
    response = google_connect(client, user, deny=True)
    assert response["Location"] == "/account/"
    assert _messages(response) == ["You declined access; Google Calendar was not connected."]
    assert not GoogleCredential.objects.exists() and fake_google.token_requests == []


def test_unticked_calendar_scope_stores_nothing(google_connect, client, user):
    response = google_connect(client, user, granted=["openid", EMAIL_SCOPE])
    assert response["Location"] == "/account/"
    assert "access to your calendar events was not granted" in _messages(response)[0]
    assert not GoogleCredential.objects.exists()


def test_callback_without_a_session_goes_to_login_first(google_settings, fake_google, client, auth_client):
    url = auth_client.get("/api/v1/calendar/auth").json()["authorization_url"]
    callback_url = fake_google.consent(url)
    response = client.get(callback_url)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/login/?next=/api/v1/calendar/oauth2callback%3F")
    assert not GoogleCredential.objects.exists()


def test_bad_code_from_google_is_a_clear_message(google_settings, fake_google, client, user):
    user.save(update_fields=["password"])
    client.force_login(user)
    callback_url = fake_google.consent(client.get("/api/v1/calendar/auth")["Location"])
    fake_google.codes.clear()  # the code is no longer valid at Google
    response = client.get(callback_url)
    assert _messages(response) == ["Google refused the authorization code (invalid_grant). Start the connection again."]
    assert not GoogleCredential.objects.exists()


def test_reconnect_keeps_the_refresh_token_and_skips_forced_consent(connected, fake_google, client, auth_client):
    url = auth_client.get("/api/v1/calendar/auth").json()["authorization_url"]
    q = _query(url)
    assert "prompt" not in q and q["login_hint"] == fake_google.account_email
    response = client.get(fake_google.consent(url))
    assert _messages(response)[0].startswith("Google Calendar connected")
    credential = GoogleCredential.objects.get()
    assert credential.refresh_token == connected.refresh_token  # Google sent none this time; the old one stays
    assert credential.access_token != connected.access_token


# --- Credentials at rest ------------------------------------------------------------------------------------


def test_raw_database_holds_no_token(connected, fake_google):
    tokens = _stored_tokens(fake_google)
    assert len(tokens) == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM calendars_googlecredential")
        rows = cursor.fetchall()
        cursor.execute("SELECT * FROM calendars_oauthstate")
        rows += cursor.fetchall()
    dump = repr(rows)
    assert all(token not in dump for token in tokens)
    out = StringIO()
    call_command("dumpdata", "calendars", stdout=out)
    assert all(token not in out.getvalue() for token in tokens)
    # ... and the ciphertext opens with the configured key.
    row = GoogleCredential.objects.values("refresh_token_encrypted").get()
    key = Fernet(connected_key(connected))
    assert key.decrypt(row["refresh_token_encrypted"].encode()).decode() == fake_google.grants[-1].refresh_token


def connected_key(_credential) -> str:
    from django.conf import settings

    return settings.GOOGLE_TOKEN_ENCRYPTION_KEYS[0]


def test_rotate_encryption_keys(connected, fake_google, google_settings, auth_client, capsys):
    old_key = google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    refresh_token = fake_google.grants[-1].refresh_token
    before = GoogleCredential.objects.values("refresh_token_encrypted", "access_token_encrypted").get()

    google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys")
    captured = capsys.readouterr()
    # the credential and the used state
    assert "GOOGLE_TOKEN_ENCRYPTION_KEYS: re-encrypted 2 value(s) under the first key." in captured.out
    assert "Re-encrypting" in captured.err and "100%" in captured.err  # tqdm's bar

    after = GoogleCredential.objects.values("refresh_token_encrypted", "access_token_encrypted").get()
    assert after["refresh_token_encrypted"] != before["refresh_token_encrypted"]
    only_new = MultiFernet([Fernet(new_key)])
    assert only_new.decrypt(after["refresh_token_encrypted"].encode()).decode() == refresh_token

    call_command("rotate_encryption_keys", "--no-progress")  # twice is fine
    assert "GOOGLE_TOKEN_ENCRYPTION_KEYS: re-encrypted 2 value(s)" in capsys.readouterr().out
    google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = [new_key]  # the old key can go now
    assert auth_client.get("/api/v1/calendar/events").status_code == 200
    assert GoogleCredential.objects.get().refresh_token == refresh_token


def test_rotate_reports_rows_no_key_opens(connected, google_settings, capsys):
    stranger = Fernet(Fernet.generate_key())
    GoogleCredential.objects.update(access_token_encrypted=stranger.encrypt(b"x").decode())
    with pytest.raises(CommandError, match=r"1 value\(s\) could not be decrypted"):
        call_command("rotate_encryption_keys", "--no-progress")
    google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = ["bad"]
    with pytest.raises(CommandError, match="not a Fernet key"):
        call_command("rotate_encryption_keys")


def test_admin_shows_status_and_email_never_tokens(connected, fake_google, client):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    admin.save()
    client.force_login(admin)
    changelist = client.get("/admin/calendars/googlecredential/").content.decode()
    change = client.get(f"/admin/calendars/googlecredential/{connected.pk}/change/").content.decode()
    for page in (changelist, change):
        assert fake_google.account_email in page and "Connected" in page
        assert all(token not in page for token in _stored_tokens(fake_google))
        assert connected.refresh_token_encrypted[:20] not in page
    assert client.get("/admin/calendars/googlecredential/add/").status_code == 403


# --- Refresh ------------------------------------------------------------------------------------------------


def _refreshes(fake) -> int:
    return sum(1 for r in fake.token_requests if r["grant_type"] == "refresh_token")


def test_expired_token_is_refreshed_before_use_and_stored(connected, fake_google, auth_client):
    old_access = connected.access_token
    GoogleCredential.objects.update(expiry=timezone.now() - timedelta(minutes=1))
    assert auth_client.get("/api/v1/calendar/events").status_code == 200
    assert _refreshes(fake_google) == 1
    stored = GoogleCredential.objects.get()
    assert stored.access_token != old_access and stored.access_token in fake_google.grants[-1].access_tokens
    assert stored.expiry > timezone.now() + timedelta(minutes=50) and stored.refreshed_at is not None
    # The API call itself used the new token (the old one is still valid at the fake, so check the header).
    assert auth_client.get("/api/v1/calendar/events").status_code == 200
    assert _refreshes(fake_google) == 1  # stored, so not refreshed again


def test_token_rejected_by_the_api_is_refreshed_and_stored(connected, fake_google, auth_client):
    fake_google.expire_access_tokens()  # Google says 401 although djllm thinks the token is still valid
    old_access = connected.access_token
    assert auth_client.get("/api/v1/calendar/events").status_code == 200
    assert _refreshes(fake_google) == 1
    assert GoogleCredential.objects.get().access_token not in ("", old_access)


def test_invalid_grant_marks_reconnect_and_answers_409_with_a_url(connected, fake_google, auth_client, client):
    fake_google.revoke_all()  # the user removed djllm's access in their Google account
    GoogleCredential.objects.update(expiry=timezone.now() - timedelta(minutes=1))
    response = auth_client.get("/api/v1/calendar/events")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "calendar_reconnect_required"
    q = _query(error["details"]["authorization_url"])
    assert q["prompt"] == "consent" and OAuthState.objects.filter(state_digest=state_digest(q["state"])).exists()
    assert _refreshes(fake_google) == 1  # no retry loop

    stored = GoogleCredential.objects.get()
    assert stored.status == "needs_reconnect" and not stored.has_refresh_token and stored.access_token == ""
    status = auth_client.get("/api/v1/calendar/status").json()
    assert status["needs_reconnect"] is True and status["connected"] is False
    assert auth_client.get("/api/v1/calendar/events").json()["error"]["code"] == "calendar_reconnect_required"
    assert _refreshes(fake_google) == 1
    assert "Reconnect needed" in _account_page(client)

    # Reconnecting through the same flow makes it work again.
    response = client.get(fake_google.consent(client.get("/api/v1/calendar/auth")["Location"]))
    assert _messages(response)[0].startswith("Google Calendar connected")
    assert GoogleCredential.objects.get().status == "connected"
    assert auth_client.get("/api/v1/calendar/events").status_code == 200


def test_undecryptable_tokens_are_a_clear_error_and_are_never_deleted(connected, google_settings, auth_client):
    old_key = google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS[0]
    columns = ("refresh_token_encrypted", "access_token_encrypted", "status", "expiry")
    before = GoogleCredential.objects.values(*columns).get()
    # A wrong but well-formed key (the old one was dropped by mistake).
    google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    for _ in range(2):
        response = auth_client.get("/api/v1/calendar/events")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "calendar_credentials_unreadable"
        assert "GOOGLE_TOKEN_ENCRYPTION_KEYS" in error["message"] and "nothing was deleted" in error["message"]
        assert error["details"]["authorization_url"].startswith("http")
    assert GoogleCredential.objects.values(*columns).get() == before  # the ciphertext is still there
    # With the key back, the same stored tokens work again.
    google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    assert auth_client.get("/api/v1/calendar/events").status_code == 200


# --- Revoke -------------------------------------------------------------------------------------------------


def test_revoke_calls_google_then_deletes(connected, fake_google, auth_client):
    refresh_token = fake_google.grants[-1].refresh_token
    response = auth_client.post("/api/v1/calendar/revoke")
    assert response.status_code == 200
    assert response.json() == {"deleted": True, "google_revoked": True, "google_error": None}
    assert fake_google.revoked == [refresh_token]
    assert not GoogleCredential.objects.exists()
    assert auth_client.get("/api/v1/calendar/status").json()["status"] == "not_connected"
    assert auth_client.post("/api/v1/calendar/revoke").json()["deleted"] is False


def test_revoke_deletes_locally_when_google_fails(connected, fake_google, auth_client):
    fake_google.fail(503, {"error": "backend"}, path_contains="/revoke")
    body = auth_client.post("/api/v1/calendar/revoke").json()
    assert body["deleted"] is True and body["google_revoked"] is False
    assert body["google_error"] == "Google answered 503 (backend)."
    assert not GoogleCredential.objects.exists()


def test_disconnect_button_on_the_account_page(connected, fake_google, client):
    client.cookies.pop("csrftoken", None)
    csrf_client = type(client)(enforce_csrf_checks=True)
    csrf_client.force_login(connected.user)
    page = csrf_client.get("/account/").content.decode()
    assert 'action="/api/v1/calendar/revoke"' in page
    token = csrf_client.cookies["csrftoken"].value
    assert csrf_client.post("/api/v1/calendar/revoke").status_code == 403  # CSRF is enforced for sessions
    assert GoogleCredential.objects.exists()
    response = csrf_client.post("/api/v1/calendar/revoke", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert _messages(response) == ["Google Calendar disconnected."]
    assert not GoogleCredential.objects.exists()
