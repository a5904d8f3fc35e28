"""`manage.py rotate_encryption_keys` over every encrypted value in the project, as an operator upgrading, rotating,
or holding a wrong key would run it."""

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from common import crypto
from llm import routing
from llm.models import ModelRoute

pytestmark = pytest.mark.django_db

ROUTE_KEY = "sk-route-own-key-0123456789"


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def chat(client, model):
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
    return client.post("/v1/chat/completions", body, content_type="application/json")


def raw(alias: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM llm_modelroute WHERE alias = %s", [alias])
        return cursor.fetchone()[0]


def route_elsewhere(fake, alias: str, key: str = ROUTE_KEY) -> ModelRoute:
    url = fake.url.replace("127.0.0.1", "localhost") + "/v1"  # not the configured base URL: the route's own key
    return ModelRoute.objects.create(alias=alias, provider="openai", upstream_model="gpt-4o", base_url=url, api_key=key)


def rotate(capsys) -> str:
    call_command("rotate_encryption_keys", "--no-progress")
    return capsys.readouterr().out


def test_install_without_field_encryption_keys_upgrades_without_losing_route_keys(
    client, fake_upstream, settings, capsys
):
    settings.FIELD_ENCRYPTION_KEYS = []  # as every install before: the key derived from SECRET_KEY
    route_elsewhere(fake_upstream, "mine")
    stored = raw("mine")
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # production now requires it
    routing.routes_changed()
    refused = chat(client, "mine")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "route_key_unreadable"
    assert raw("mine") == stored  # refusing never touched it

    out = rotate(capsys)
    assert "FIELD_ENCRYPTION_KEYS: re-encrypted 1 value(s) under the first key." in out
    assert "GOOGLE_TOKEN_ENCRYPTION_KEYS:" in out  # one command for every encrypted store
    assert MultiFernet([Fernet(new_key)]).decrypt(raw("mine").encode()).decode() == ROUTE_KEY
    routing.routes_changed()
    assert chat(client, "mine").status_code == 200
    assert fake_upstream.last_request.headers["authorization"] == f"Bearer {ROUTE_KEY}"


def test_rotation_to_a_new_key_then_the_old_key_can_go(client, fake_upstream, settings, capsys):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    route_elsewhere(fake_upstream, "mine")
    ModelRoute.objects.create(alias="keyless", provider="openai", upstream_model="gpt-4o-mini")
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert "re-encrypted 1 value(s)" in rotate(capsys)  # the blank key is no value to rotate
    with pytest.raises(InvalidToken):
        Fernet(old_key).decrypt(raw("mine").encode())
    assert "re-encrypted 1 value(s)" in rotate(capsys)  # twice is harmless
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    routing.routes_changed()
    assert chat(client, "mine").status_code == 200
    assert fake_upstream.last_request.headers["authorization"] == f"Bearer {ROUTE_KEY}"


def test_a_value_no_key_opens_is_reported_and_left_as_it_is(fake_upstream, settings, capsys):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    route_elsewhere(fake_upstream, "good")
    stranger = Fernet(Fernet.generate_key()).encrypt(b"sk-someone-elses-key").decode()
    lost = route_elsewhere(fake_upstream, "lost", key="placeholder")
    ModelRoute.objects.filter(pk=lost.pk).update(api_key=crypto.UnreadableSecret(stranger, "FIELD_ENCRYPTION_KEYS"))
    assert raw("lost") == stranger
    before_good = raw("good")
    with pytest.raises(CommandError) as caught:
        call_command("rotate_encryption_keys", "--no-progress")
    message = str(caught.value)
    assert f"llm.modelroute:{lost.pk} api_key" in message and "FIELD_ENCRYPTION_KEYS" in message
    assert "left as they are" in message
    assert "sk-someone" not in message and stranger not in message
    assert raw("lost") == stranger  # never deleted, never rewritten
    assert raw("good") != before_good and ModelRoute.objects.get(alias="good").api_key == ROUTE_KEY
    assert "FIELD_ENCRYPTION_KEYS: re-encrypted 1 value(s)" in capsys.readouterr().out


def test_malformed_keys_stop_the_command_before_anything_is_written(fake_upstream, settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    route_elsewhere(fake_upstream, "mine")
    stored = raw("mine")
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(CommandError, match="FIELD_ENCRYPTION_KEYS: key #1 is not a Fernet key"):
        call_command("rotate_encryption_keys", "--no-progress")
    assert raw("mine") == stored


def test_runtime_never_reads_with_the_derived_key_once_keys_are_set(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    token = crypto.encrypt("secret")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(token)
    assert crypto.rotate(token)  # the rotation alone accepts it as an old key
