# djllm image: one image for the web server (what `make serve` runs) and the jobs worker (`make worker`'s Celery
# command); compose.yaml runs both.
# Secrets come from the environment at run time (DJANGO_SECRET_KEY, FIELD_ENCRYPTION_KEYS), never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 djllm
WORKDIR /app

# The virtualenv the Makefile's targets use (.venv), built from the pinned requirements alone, so the layer is reused
# until they change.
COPY Makefile requirements.txt ./
RUN make deps PYTHON=python3.11

COPY --chown=djllm:djllm . .
# The stamp newer than the requirements copied again above: `make prepare` finds the venv up to date and installs nothing.
RUN mkdir -p var staticfiles && chown djllm:djllm var staticfiles && touch .venv/.deps

USER djllm
# Production settings unless the environment says otherwise (`make prepare` reads SERVE_SETTINGS).
ENV DJANGO_SETTINGS_MODULE=config.settings.production \
    SERVE_SETTINGS=config.settings.production
EXPOSE 8000

# Exit 0 only when the health endpoint answers 200 (it is exempt from the HTTPS redirect).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD [".venv/bin/python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4).status != 200)"]

# compose.yaml's `web` command: `make prepare`, then gunicorn exec'ed, so that SIGTERM reaches it and it drains.
CMD ["sh", "-c", "make prepare && exec .venv/bin/gunicorn config.asgi:application -c config/gunicorn.py --workers ${WEB_CONCURRENCY:-2} --bind 0.0.0.0:8000 --access-logfile -"]
