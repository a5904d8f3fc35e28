# djllm — see README.md. Every target bootstraps what it needs, so a fresh clone only needs `make run` / `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WEB_CONCURRENCY ?= 2
# Development settings for `make run` (the WSGI/ASGI/Celery entry points alone default to production; `make serve` and
# `make worker` name the production ones).
export DJANGO_SETTINGS_MODULE ?= config.settings.local

.PHONY: run prepare serve worker beat test lint schema-check bench bench-peers bench-litellm bench-portkey soak deps dev-deps browser nginx migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.deps

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

# Headless Chromium for the page tests (Debian's package; the tests never download a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

# nginx for the test of the sample config (deploy/nginx/djllm.conf, `nginx -t` only: no server is started by it).
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null; \
	  else echo "nginx is missing: sudo apt-get install nginx (its config test is skipped without it)" >&2; fi; }

migrate: deps
	$(BIN)/python manage.py migrate --noinput -v 0

# Fresh machine -> venv, install, migrate, admin user + token printed (first run only), server on 127.0.0.1:8000,
# and a jobs worker beside it (RUN_WORKER=0: none). Without REDIS_URL the worker's queue is a SQLite file under var/.
RUN_WORKER ?= 1
WORKER_CONCURRENCY ?= 2
CELERY_WORKER = $(BIN)/celery -A config worker --pool threads --concurrency $(WORKER_CONCURRENCY) --loglevel INFO
run: migrate
	$(BIN)/python manage.py bootstrap --url http://127.0.0.1:$(PORT)
	@if [ "$(RUN_WORKER)" = "1" ]; then $(CELERY_WORKER) & trap "kill $$! 2>/dev/null" EXIT INT TERM; fi; \
	$(BIN)/uvicorn config.asgi:application --host 127.0.0.1 --port $(PORT)

# A background-jobs worker for production (docs/jobs.md), on the same settings as `make serve` (SERVE_SETTINGS);
# start as many as you like, on any machine sharing the database and broker. `make run` starts its own for development.
worker: deps
	DJANGO_SETTINGS_MODULE=$(SERVE_SETTINGS) $(BIN)/python manage.py migrate --noinput -v 0
	DJANGO_SETTINGS_MODULE=$(SERVE_SETTINGS) $(CELERY_WORKER)

# Celery beat: sends the periodic tasks of CELERY_BEAT_SCHEDULE (the alert checks, every ALERT_CHECK_SECONDS) to the
# workers. Run exactly one, on one machine (two send every task twice); its schedule state lives under var/.
CELERY_BEAT = $(BIN)/celery -A config beat --loglevel INFO --schedule var/celerybeat-schedule
beat: deps
	@mkdir -p var
	DJANGO_SETTINGS_MODULE=$(SERVE_SETTINGS) $(CELERY_BEAT)

# Production ASGI server: gunicorn with uvicorn workers, on production settings (DJANGO_SECRET_KEY and
# FIELD_ENCRYPTION_KEYS required) unless SERVE_SETTINGS names others. Static files are collected so WhiteNoise serves
# them compressed. On SIGTERM a worker finishes its calls in flight and writes their usage records; the graceful
# timeout is REQUEST_TIMEOUT + 15 s (GRACEFUL_TIMEOUT overrides it; config/gunicorn.py).
# `make prepare` alone is that first part (migrations, static files): a container runs it, then execs gunicorn itself,
# since make passes no SIGTERM on to the server it started (compose.yaml).
SERVE_SETTINGS ?= config.settings.production
prepare: deps
	DJANGO_SETTINGS_MODULE=$(SERVE_SETTINGS) $(BIN)/python manage.py migrate --noinput -v 0
	DJANGO_SETTINGS_MODULE=$(SERVE_SETTINGS) $(BIN)/python manage.py collectstatic --noinput -v 0

serve: prepare
	DJANGO_SETTINGS_MODULE=$(SERVE_SETTINGS) \
	$(BIN)/gunicorn config.asgi:application -c config/gunicorn.py \
	  --workers $(WEB_CONCURRENCY) --bind $${HOST:-127.0.0.1}:$(PORT) --access-logfile -

# npm packages of the Excel clients (TypeScript for the Office Script), from the lockfile. Without npm the Node-based
# tests skip (they say why); with it they run.
clients/node_modules/.installed: clients/package.json clients/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix clients --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm is missing: the Excel client tests will be skipped" >&2; fi

test: dev-deps browser nginx clients/node_modules/.installed
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/pytest

# Ruff, the import contracts in pyproject.toml ([tool.importlinter]: which app may import which), and pylint's
# duplicate-code check alone over the app packages ([tool.pylint]: no block of 6+ lines repeated; migrations aside).
APP_PACKAGES = accounts calendars common config excel jobs llm monitoring
lint: dev-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/pylint $(APP_PACKAGES)

schema-check: dev-deps
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

# Then the peak memory of reading hostile workbooks (bench/workbook.py, no network; BENCH_WORKBOOKS=0 skips it).
BENCH_WORKBOOKS ?= 1
# Then the usage pages at 1M and 10M usage records on PostgreSQL (bench/scale.py; BENCH_SCALE=0 skips it;
# BENCH_SCALE_ROWS sets the sizes, BENCH_DATABASE_URL the server and the database names' stem).
BENCH_SCALE ?= 1
# The gateways measured beside djllm in the same run (bench/gateways.py): litellm, portkey, or none. The bench installs
# each one with its target below (reused when present) and reports one that cannot be installed as missing.
BENCH_PEERS ?= litellm,portkey
# Load tool: Debian's wrk (installed here when missing, as root). Options: make bench BENCH_ARGS="--only plain".
bench: dev-deps
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null; \
	  else echo "wrk is missing: sudo apt-get install wrk" >&2; exit 1; fi; }
	$(BIN)/python -m bench --peers "$(BENCH_PEERS)" $(BENCH_ARGS)
	@if [ "$(BENCH_WORKBOOKS)" = "1" ]; then $(BIN)/python -m bench.workbook; fi
	@BENCH_SCALE=$(BENCH_SCALE) $(BIN)/python -m bench.scale

# The peers, pinned: the LiteLLM proxy from PyPI in its own venv (Python 3.11; bench/peers/litellm-requirements.txt),
# Portkey's gateway from npm (bench/peers/package-lock.json; the machine's node). Installing takes minutes once.
LITELLM_PYTHON ?= $(shell command -v python3.11 || command -v python3)
LITELLM_VENV := bench/.venv-litellm
$(LITELLM_VENV)/.installed: bench/peers/litellm-requirements.txt
	rm -rf $(LITELLM_VENV)
	$(LITELLM_PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install -q --disable-pip-version-check -r bench/peers/litellm-requirements.txt
	touch $@
bench-litellm: $(LITELLM_VENV)/.installed

bench/peers/node_modules/.installed: bench/peers/package.json bench/peers/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing (Debian: apt-get install npm)" >&2; exit 1; }
	npm ci --prefix bench/peers --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@
bench-portkey: bench/peers/node_modules/.installed

bench-peers: bench-litellm bench-portkey

# Soak test (bench/soak.py): SOAK_SECONDS of mixed traffic with upstream faults against `make serve` (2 workers) on
# PostgreSQL and Redis, then requests vs usage rows, recorded vs billed cost, unmapped 5xx and worker RSS; fails on a
# mismatch. DATABASE_URL names the PostgreSQL server (the soak creates its own database, SOAK_DATABASE).
SOAK_SECONDS ?= 180
soak: deps
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache clients/node_modules clients/build $(LITELLM_VENV) bench/peers/node_modules
