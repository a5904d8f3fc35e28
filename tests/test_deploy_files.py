"""The deployment files do what their docs say, as far as this machine can show it: the PythonAnywhere WSGI file
(taken from docs/deploy-pythonanywhere.md) serves the API under a real WSGI server (gunicorn's sync worker) on the
production settings; compose.yaml and the Dockerfile name real settings and make targets; the nginx sample passes
`nginx -t` and lets through what djllm accepts; the systemd units pass `systemd-analyze verify`."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from django.conf import settings
from django.urls import reverse

from config.version import VERSION
from tests.processes import ManagedProcess, free_port

BASE_DIR = Path(__file__).resolve().parent.parent
SETTINGS_NAMES = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.M))
FERNET_KEY = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="  # base64 of 32 bytes


def _scrubbed_env(**extra: str) -> dict[str, str]:
    """This process's environment without the test settings: what a fresh deployed process would see."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PYTEST", "SECURE_", "DEBUG", "FIELD_ENCRYPTION", "DATABASE_", "REDIS_"))
    }
    env.update(extra)
    return env


# --- The PythonAnywhere WSGI file, under gunicorn ----------------------------------------------------------------


def _documented_wsgi_file() -> str:
    doc = (BASE_DIR / "docs" / "deploy-pythonanywhere.md").read_text()
    match = re.search(r"<!-- wsgi-file:.*?-->\n```python\n(.*?)```", doc, re.S)
    assert match, "docs/deploy-pythonanywhere.md has lost its WSGI file block"
    return match.group(1)


def test_the_documented_wsgi_file_serves_the_api_under_gunicorn(tmp_path):
    source = _documented_wsgi_file()
    assert 'PROJECT = "/home/alice/djllm"' in source
    (tmp_path / "pa_wsgi.py").write_text(source.replace("/home/alice/djllm", str(BASE_DIR)))
    port = free_port()
    env = _scrubbed_env(
        DJANGO_SECRET_KEY="s" * 50,
        FIELD_ENCRYPTION_KEYS=FERNET_KEY,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        USE_X_FORWARDED_PROTO="true",
    )
    command = [sys.executable, "-m", "gunicorn", "pa_wsgi:application", "--chdir", str(tmp_path)]
    command += ["--worker-class", "sync", "--workers", "1", "--bind", f"127.0.0.1:{port}", "--log-level", "info"]
    server = ManagedProcess("gunicorn-wsgi", command, env, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/api/v1/health", timeout=5)
                break
            except httpx.TransportError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not serve:\n{server.log()}")
                time.sleep(0.2)
        assert health.status_code == 200, server.log()
        assert health.json() == {"status": "ok"}
        assert health.headers["X-API-Version"] == VERSION
        assert "Booting worker" in server.log() and "sync" in server.log()  # gunicorn's sync (WSGI) worker
        # Production settings: HSTS on the health answer once it arrives over HTTPS (the proxy says so) ...
        secure = httpx.get(f"{base}/api/v1/health", headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        # ... the rest of the site redirected to HTTPS, the API answering in its error shape over HTTPS.
        assert httpx.get(f"{base}/api/v1/me", timeout=5).status_code == 301
        me = httpx.get(f"{base}/api/v1/me", headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert me.status_code == 401
        assert me.json()["error"]["code"] == "token_missing"
        assert me.headers["X-API-Version"] == VERSION
        # The database the settings name is reachable from the WSGI worker.
        ready = httpx.get(f"{base}/api/v1/health/ready", headers={"X-Forwarded-Proto": "https"}, timeout=10)
        assert ready.status_code == 200, ready.text
    finally:
        server.stop()


# --- compose.yaml and the Dockerfile -----------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((BASE_DIR / "compose.yaml").read_text())


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (BASE_DIR / "Makefile").read_text(), re.M))


def _make_dry_run(*args: str) -> list[str]:
    """The shell commands `make -n` would run, one a line (continuation lines joined, blanks squeezed)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # Run from `make test`, the tests inherit MAKELEVEL and MAKEFLAGS: a make started from them would act as a sub-make
    # (and print "Entering directory" lines). This one starts afresh, as a deployment's make does.
    env = {k: v for k, v in _scrubbed_env().items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    result = subprocess.run(
        [make, "--no-print-directory", "-n", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [" ".join(line.split()) for line in result.stdout.replace("\\\n", " ").splitlines() if line.strip()]


def _shell_command(command) -> str:
    """What a container's `sh -c` command runs, with the defaults of its `${VAR:-default}` filled in."""
    assert command[:2] == ["sh", "-c"], command
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", command[2].replace("$$", "$"))


def test_compose_runs_web_worker_postgres_and_redis_with_real_settings():
    compose = _compose()
    services = compose["services"]
    assert set(services) >= {"web", "worker", "postgres", "redis"}
    makefile = (BASE_DIR / "Makefile").read_text()
    knobs = set(re.findall(r"^([A-Z][A-Z_]*) \?=", makefile, re.M))  # the Makefile's own variables
    assert {"WEB_CONCURRENCY", "WORKER_CONCURRENCY"} <= knobs
    for name in ("web", "worker"):
        assert services[name]["init"] is True  # an init that passes SIGTERM on and reaps
        env = services[name]["environment"]
        module = env["DJANGO_SETTINGS_MODULE"]
        assert module == "config.settings.production"
        assert (BASE_DIR / (module.replace(".", "/") + ".py")).is_file()
        unknown = {key for key in env if key not in SETTINGS_NAMES | knobs | {"DJANGO_SETTINGS_MODULE"}}
        assert not unknown, f"{name} sets variables neither a setting nor the Makefile reads: {unknown}"
        assert "@postgres:5432/" in env["DATABASE_URL"] and env["REDIS_URL"].startswith("redis://redis:6379/")
        # The secrets come from the operator's .env, never from the file.
        for secret in ("DJANGO_SECRET_KEY", "FIELD_ENCRYPTION_KEYS"):
            assert env[secret].startswith("${" + secret + ":?")
    # Variables the compose file reads from the operator: djllm settings, the Makefile's, or the database password.
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (BASE_DIR / "compose.yaml").read_text()))
    assert read - SETTINGS_NAMES - knobs == {"POSTGRES_PASSWORD"}


def test_the_web_container_runs_what_make_serve_runs_with_gunicorn_exec_ed():
    web = _shell_command(_compose()["services"]["web"]["command"])
    prepare, server = web.split(" && exec ")
    assert prepare == "make prepare"
    serve = _make_dry_run("serve", "WEB_CONCURRENCY=2", "PORT=8000")
    # `make serve` is `make prepare`'s commands, then gunicorn: the container runs the same, gunicorn on 0.0.0.0.
    assert serve[:-1][-2:] == _make_dry_run("prepare")[-2:]
    assert "manage.py migrate" in serve[-3] and "manage.py collectstatic" in serve[-2]
    expected = serve[-1].removeprefix("DJANGO_SETTINGS_MODULE=config.settings.production ")
    assert server == expected.replace("${HOST:-127.0.0.1}", "0.0.0.0")
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd and _shell_command(json.loads(cmd.group(1))) == web


def test_the_worker_container_runs_make_worker_s_celery_command():
    worker = _shell_command(_compose()["services"]["worker"]["command"])
    expected = _make_dry_run("worker", "WORKER_CONCURRENCY=2")[-1]
    assert worker == "exec " + expected.removeprefix("DJANGO_SETTINGS_MODULE=config.settings.production ")


def test_the_beat_container_runs_make_beat_s_celery_command_and_the_unit_the_same():
    beat = _shell_command(_compose()["services"]["beat"]["command"])
    make_beat = _make_dry_run("beat")
    assert make_beat[-2] == "mkdir -p var"
    expected = make_beat[-1].removeprefix("DJANGO_SETTINGS_MODULE=config.settings.production ")
    assert beat == "mkdir -p var && exec " + expected
    assert "celery -A config beat" in expected
    unit = (BASE_DIR / "deploy/systemd/djllm-beat.service").read_text()
    [exec_start] = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    assert exec_start == expected.replace(".venv/", "/srv/djllm/.venv/").replace("var/", "/srv/djllm/var/")
    # What beat sends is the alert check: without a beat, no alert would ever go out.
    assert "monitoring.alerts_evaluate" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


def test_the_dockerfile_builds_the_venv_the_make_targets_use():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    assert "RUN make deps" in dockerfile and "deps" in _make_targets()
    assert "ENV DJANGO_SETTINGS_MODULE=config.settings.production" in dockerfile
    assert re.search(r"^USER djllm$", dockerfile, re.M)  # not root
    ignored = (BASE_DIR / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)  # no secrets, no host venv in the image


def test_docker_compose_config_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed: compose.yaml was checked by the PyYAML tests only")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("docker has no compose plugin here: compose.yaml was checked by the PyYAML tests only")
    env = _scrubbed_env(DJANGO_SECRET_KEY="s" * 50, FIELD_ENCRYPTION_KEYS=FERNET_KEY, POSTGRES_PASSWORD="pw")
    result = subprocess.run(
        [docker, "compose", "-f", str(BASE_DIR / "compose.yaml"), "config", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- nginx ---------------------------------------------------------------------------------------------------------

NGINX_CONF = BASE_DIR / "deploy" / "nginx" / "djllm.conf"


def _parse_size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)


def test_nginx_lets_through_the_largest_upload_djllm_accepts_and_little_more():
    [value] = re.findall(r"^\s*client_max_body_size\s+(\S+);", NGINX_CONF.read_text(), re.M)
    limit = _parse_size(value)
    largest = max(settings.JOB_UPLOAD_MAX_BYTES, settings.FILE_UPLOAD_MAX_BYTES)
    assert largest < limit <= largest + 2 * 1024**2  # room for the multipart framing, djllm answers past its own


def test_nginx_does_not_buffer_any_streaming_endpoint():
    config = NGINX_CONF.read_text()
    block = re.search(r"location ~ (\S+) \{(.*?)\}", config, re.S)
    assert block, "no regex location for the streams"
    pattern, body = block.groups()
    assert "proxy_buffering off;" in body
    # Every endpoint that can answer text/event-stream, as the URLconf spells it.
    for name in ("chat-completions", "messages", "webhook"):
        path = reverse(name)
        assert re.search(pattern, path), f"{path} is buffered by nginx"
    assert not re.search(pattern, "/api/v1/usage")


def test_nginx_accepts_the_sample_config(tmp_path):
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if nginx is None:
        pytest.skip("nginx is not installed (`make nginx` installs Debian's as root; `make test` does)")
    # The sample names Let's Encrypt's paths for its certificate: a self-signed one stands in for it here.
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llm.example.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "privkey.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    site = NGINX_CONF.read_text().replace("/etc/letsencrypt/live/llm.example.com", str(tmp_path))
    assert str(tmp_path) in site
    (tmp_path / "djllm.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/djllm.conf;\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr, result.stderr


# --- systemd -------------------------------------------------------------------------------------------------------

UNITS = sorted((BASE_DIR / "deploy" / "systemd").glob("*.service"))


def test_the_units_run_the_commands_the_makefile_runs():
    assert [u.name for u in UNITS] == ["djllm-beat.service", "djllm-web.service", "djllm-worker.service"]
    makefile = (BASE_DIR / "Makefile").read_text()
    web = (BASE_DIR / "deploy/systemd/djllm-web.service").read_text()
    worker = (BASE_DIR / "deploy/systemd/djllm-worker.service").read_text()
    assert "gunicorn config.asgi:application -c config/gunicorn.py" in web
    assert "gunicorn config.asgi:application -c config/gunicorn.py" in makefile
    celery = re.search(r"^CELERY_WORKER = \$\(BIN\)/(.*?)\$\(WORKER_CONCURRENCY\)(.*)$", makefile, re.M)
    assert celery and f"/.venv/bin/{celery.group(1)}2{celery.group(2)}" in worker
    # gunicorn's graceful timeout (REQUEST_TIMEOUT + 15 s) ends before systemd kills.
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", web, re.M).group(1))
    assert stop > settings.REQUEST_TIMEOUT + 15


def test_systemd_analyze_verifies_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The units name /srv/djllm; here the same units point at a copy of that layout whose binaries exist.
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for binary in ("gunicorn", "celery"):
        (venv_bin / binary).symlink_to(Path(sys.executable).parent / binary)
    copies = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/srv/djllm", str(tmp_path)))
        copies.append(str(copy))
    result = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "Failed to" in result.stderr and "bus" in result.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # an unknown key is only a warning there: none allowed
