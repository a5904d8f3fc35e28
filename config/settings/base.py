"""Settings shared by every environment. Every value comes from the environment through `config.env`."""

from datetime import timedelta

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import BASE_DIR, env, env_list
from config.version import VERSION

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="django-insecure-local-development-key-change-me")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# The public URL of this server (used where we must print absolute links, e.g. the Excel manifest).
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "monitoring.admin_apps.AdminConfig",  # django.contrib.admin with the dashboard (monitoring/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "axes",
    "common",
    "accounts",
    "llm",
    "calendars",
    "jobs",
    "monitoring",
]

MIDDLEWARE = [
    "common.middleware.RequestIDMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # outside the error layer: CORS headers on every API error too
    "common.middleware.APIErrorMiddleware",  # API paths: JSON errors for every status, even under DEBUG
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out login into accounts.login_throttle's 429
]

# The token-authenticated API paths are served under ASGI by a lean, fully async stack (see common/asgi.py).
API_MIDDLEWARE = [
    "common.middleware.RequestIDMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "common.middleware.APIErrorMiddleware",
    "common.middleware.APISecurityMiddleware",  # HSTS and the other security headers, where settings enable them
]
API_FAST_PATHS = ["/v1/", "/api/v1/webhook", "/api/v1/batch", "/api/v1/health"]
# Fast paths with a variable part, as regular expressions matched against the whole path.
API_FAST_PATH_PATTERNS = [r"/api/v1/conversations/[0-9]{1,18}/messages"]

# API paths answer a failed CSRF check (session requests) in their JSON error shape.
CSRF_FAILURE_VIEW = "common.exceptions.csrf_failure"

ROOT_URLCONF = "config.urls"
# Sent as `X-API-Version` on every response (common.middleware.RequestIDMiddleware); CHANGELOG.md says what changed.
API_VERSION = VERSION
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
# Default: a SQLite file in the project directory, in WAL mode so readers don't block the writer.
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env.int("CONN_MAX_AGE", default=0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool("DATABASE_POOL", default=False):
    # Django's psycopg connection pool; it replaces persistent connections.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=2),
        "max_size": env.int("DATABASE_POOL_MAX", default=10),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Seconds to wait for PostgreSQL to accept a connection: a database host that is gone without refusing then
    # answers 503 database_unavailable, instead of holding requests (and the hot path's database thread) for the
    # operating system's TCP timeout. A `connect_timeout` in DATABASE_URL wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Seconds to connect to Redis and to wait for an answer: an unreachable Redis (a host gone, not only a refused port)
# then fails fast into the limiters' RATE_LIMIT_FAIL_OPEN policy and the response cache's skip, instead of holding
# requests for the operating system's TCP timeouts.
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", default=2.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="djllm"),
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT},
        }
    }
else:
    # Per process and emptied by a restart: set REDIS_URL for a cache every worker shares and that survives restarts.
    # Room for a large spreadsheet's responses (Django's default keeps only 300 entries).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "djllm",
            "OPTIONS": {"MAX_ENTRIES": env.int("LOCAL_CACHE_MAX_ENTRIES", default=100_000)},
        }
    }

# --- Auth, i18n, static ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "accounts.login_throttle.LoginAttemptsBackend",  # first: refuses a locked-out login before the password check
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes) on /admin/login/ and /account/login/: after LOGIN_FAILURE_LIMIT failed logins for one
# user name from one address, that pair is refused with 429 for LOGIN_LOCKOUT_MINUTES (counted in the database).
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.login_throttle.lockout_response"
AXES_VERBOSE = False
LOGIN_URL = "/account/login/"
LOGIN_REDIRECT_URL = "/account/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
DEFAULT_TIMEZONE = env.str("DEFAULT_TIMEZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps (no collectstatic needed) unless told otherwise.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# --- API ------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.APITokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["common.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "common.pagination.NewestFirstCursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "common.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Per token (or per logged-in user): every DRF endpoint, and a tighter rate where a view names a scope.
    "DEFAULT_THROTTLE_CLASSES": [
        "accounts.throttling.TokenRateThrottle",
        "accounts.throttling.TokenScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        # Blank: no limit. The LLM endpoints (/v1/*, the webhook, the batch) have RATE_LIMIT instead.
        "api": env.str("API_THROTTLE_RATE", default="300/m") or None,
        # The calendar endpoints spend the Google API quota shared by every user of this server.
        "calendar": env.str("API_THROTTLE_RATE_CALENDAR", default="60/m") or None,
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "djllm API",
    "DESCRIPTION": (
        "Self-hosted LLM API. Authenticate with `Authorization: Bearer <token>`, `X-API-Token: <token>` or "
        "`x-api-key: <token>`; "
        "create tokens with `python manage.py createtoken USERNAME` or in the admin."
    ),
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    "OAS_VERSION": "3.1.0",
    # Choice sets whose field name other components use for other choices (`status`), or that several fields share
    # (a job's `type` and its alias `template`; a provider): named here, not by a hash or by one of the fields.
    "ENUM_NAME_OVERRIDES": {
        "APITokenStatusEnum": "accounts.selectors.TOKEN_STATUSES",
        "ProviderEnum": "llm.providers.registry.provider_choices",
        "TextTypeEnum": "llm.webhook_calls.TYPES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.operations.add_registered_operations",  # the plain views (`@openapi_operation`)
        "common.openapi.add_error_responses",  # last: sees every operation the hooks above added
    ],
}

# --- API tokens -----------------------------------------------------------------------------------
# How long one worker may trust a token it has looked up before it asks again (revocation latency).
API_TOKEN_LOCAL_CACHE_SECONDS = env.float("API_TOKEN_LOCAL_CACHE_SECONDS", default=0.5)
# `POST /api/v1/tokens/{id}/rotate`: how long the old token keeps working when the request names no grace_minutes.
TOKEN_ROTATION_GRACE_MINUTES = env.int("TOKEN_ROTATION_GRACE_MINUTES", default=60)

# --- CORS: open (`*`, no credentials) on the API only; Office Scripts need `*`. ---------------------
_allowed_origins = env_list("ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/(api|v1)/.*$"
CORS_ALLOW_ALL_ORIGINS = not _allowed_origins or _allowed_origins == ["*"]
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else _allowed_origins
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = [
    "authorization",
    "x-api-token",
    "x-api-key",
    "anthropic-version",
    "content-type",
    "idempotency-key",
    "x-request-id",
    "cache-control",
]
CORS_EXPOSE_HEADERS = [
    "Retry-After",
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Location",  # 202 job answers point at the job
    "Idempotent-Replayed",
    "X-API-Version",
]

# --- Security (secure defaults are switched on in production by env) ------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health"]

# Fernet keys (comma list, first encrypts) for secrets in the database, e.g. provider keys on model routes.
# Blank: a key derived from DJANGO_SECRET_KEY (fine for development; set real keys in production).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")

# --- Google Calendar (see docs/google-calendar.md) -------------------------------------------------
# The OAuth client: a downloaded "Web application" client secrets file, or its id and secret.
GOOGLE_CLIENT_SECRETS_FILE = env.str("GOOGLE_CLIENT_SECRETS_FILE", default="")
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="")
# Fernet keys (comma list; the first encrypts, all decrypt) for the stored Google tokens. Not derived from SECRET_KEY.
GOOGLE_TOKEN_ENCRYPTION_KEYS = env_list("GOOGLE_TOKEN_ENCRYPTION_KEYS")
# Blank: PUBLIC_URL + /api/v1/calendar/oauth2callback. Must be registered on the OAuth client.
GOOGLE_OAUTH_REDIRECT_URI = env.str("GOOGLE_OAUTH_REDIRECT_URI", default="")
# Unused, unexpired consent links one user may hold (each is a stored row; they expire after 10 minutes). More: 429.
GOOGLE_OAUTH_MAX_PENDING_STATES = env.int("GOOGLE_OAUTH_MAX_PENDING_STATES", default=5)
# Google's endpoints. Blank: the client secrets file's value, else Google's. Tests point them at a fake Google.
GOOGLE_OAUTH_AUTH_URI = env.str("GOOGLE_OAUTH_AUTH_URI", default="")
GOOGLE_OAUTH_TOKEN_URI = env.str("GOOGLE_OAUTH_TOKEN_URI", default="")
GOOGLE_OAUTH_REVOKE_URI = env.str("GOOGLE_OAUTH_REVOKE_URI", default="https://oauth2.googleapis.com/revoke")
GOOGLE_CALENDAR_API_ENDPOINT = env.str("GOOGLE_CALENDAR_API_ENDPOINT", default="")  # blank: the library's default
GOOGLE_API_TIMEOUT = env.float("GOOGLE_API_TIMEOUT", default=30.0)
# Google rate limits (429, 403 rateLimitExceeded): this many retries with exponential backoff, then 429.
GOOGLE_API_MAX_RETRIES = env.int("GOOGLE_API_MAX_RETRIES", default=2)
GOOGLE_API_RETRY_BACKOFF_SECONDS = env.float("GOOGLE_API_RETRY_BACKOFF_SECONDS", default=1.0)
GOOGLE_API_RETRY_MAX_SECONDS = env.float("GOOGLE_API_RETRY_MAX_SECONDS", default=10.0)

# --- Flask-era settings kept under their old names ------------------------------------------------
LLM_PROVIDER = env.str("LLM_PROVIDER", default="openai")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4o-mini")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="") or None
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_MODEL = env.str("ANTHROPIC_MODEL", default="claude-3-5-haiku-latest")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="") or None
LOCAL_LLM_BASE_URL = env.str("LOCAL_LLM_BASE_URL", default="http://127.0.0.1:11434/v1")
LOCAL_LLM_API_KEY = env.str("LOCAL_LLM_API_KEY", default="")
# Hosts a model route's own base URL may point at (names, `*.suffix`, IPs, CIDR networks). Blank: the providers' public
# hosts and loopback (llm/upstream_urls.py). The hosts of the three base URLs above are always allowed.
LLM_BASE_URL_ALLOWLIST = env_list("LLM_BASE_URL_ALLOWLIST")
REQUEST_TIMEOUT = env.float("REQUEST_TIMEOUT", default=60.0)
MAX_PROMPT_LENGTH = env.int("MAX_PROMPT_LENGTH", default=100_000)
# Conversations (llm/context.py): a model's context window in tokens by model name prefix (the longest prefix wins),
# else the default; and the tokens kept free for the answer when a message sets no max_tokens.
LLM_CONTEXT_WINDOWS = env.json(
    "LLM_CONTEXT_WINDOWS", default={"gpt-4o": 128_000, "gpt-4.1": 1_047_576, "claude": 200_000}
)
LLM_CONTEXT_WINDOW_DEFAULT = env.int("LLM_CONTEXT_WINDOW_DEFAULT", default=128_000)
CONVERSATION_REPLY_TOKENS = env.int("CONVERSATION_REPLY_TOKENS", default=4_096)
# A conversation with `summarize_dropped`: the longest summary of its trimmed messages (the summary call's max_tokens).
CONVERSATION_SUMMARY_TOKENS = env.int("CONVERSATION_SUMMARY_TOKENS", default=512)
RATE_LIMIT_ENABLED = env.bool("RATE_LIMIT_ENABLED", default=True)
RATE_LIMIT = env.str("RATE_LIMIT", default="60/m")
# When the cache the limiters count in (Redis) cannot be reached: true lets requests through unlimited (logged once a
# minute, counted in readiness); false refuses them with 503 rate_limiter_unavailable. Applies to every cache-based
# limiter (common/limiter.py). Budgets live in the database and are not affected.
RATE_LIMIT_FAIL_OPEN = env.bool("RATE_LIMIT_FAIL_OPEN", default=True)
# Counted over all of a user's tokens on top of each token's own rate (a user's own setting in the admin overrides
# it). Blank: no per-user limit.
RATE_LIMIT_PER_USER = env.str("RATE_LIMIT_PER_USER", default="")

# --- Logging --------------------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text")  # "text" (readable) or "json" (one object a line)
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "common.logging.RequestIDFilter"},
        "redact": {"()": "common.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "common.logging.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Replace Django's own console handler so each line is written once, filtered and formatted as above.
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},  # one line per upstream call is noise; djllm logs what matters itself
        "httpcore": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # a line per login otherwise; failures and lockouts are still logged
    },
}

# --- LLM gateway ----------------------------------------------------------------------------------
# Usage records and budget reads run on one long-lived thread per process with a kept connection (common/db_thread).
DB_THREAD_ENABLED = env.bool("DB_THREAD_ENABLED", default=True)
# How the provider SDKs talk HTTP: "aiohttp" (their DefaultAioHttpClient; faster under concurrency) or "httpx".
LLM_HTTP_TRANSPORT = env.str("LLM_HTTP_TRANSPORT", default="aiohttp")
ANTHROPIC_DEFAULT_MAX_TOKENS = env.int("ANTHROPIC_DEFAULT_MAX_TOKENS", default=4096)  # Anthropic requires one
# A model with no ModelPrice row is charged at these prices (USD per 1M tokens) when both are set; blank (the
# default): such requests have no cost (`priced` false on their record) and are refused wherever a budget applies.
UNPRICED_INPUT_PER_MTOK = env.str("UNPRICED_INPUT_PER_MTOK", default="").strip()
UNPRICED_OUTPUT_PER_MTOK = env.str("UNPRICED_OUTPUT_PER_MTOK", default="").strip()
RESPONSE_CACHE_ENABLED = env.bool("RESPONSE_CACHE_ENABLED", default=True)
RESPONSE_CACHE_TTL = env.int("RESPONSE_CACHE_TTL", default=30 * 24 * 3600)  # seconds; 30 days
# "user": a cached answer serves only the user who caused it (no one learns what others asked); "global": any user.
RESPONSE_CACHE_SCOPE = env.str("RESPONSE_CACHE_SCOPE", default="user").strip().lower()
if RESPONSE_CACHE_SCOPE not in ("user", "global"):
    raise ImproperlyConfigured(f"RESPONSE_CACHE_SCOPE must be 'user' or 'global', not {RESPONSE_CACHE_SCOPE!r}.")
LLM_RETRY_ATTEMPTS = env.int("LLM_RETRY_ATTEMPTS", default=3)  # attempts per route, before its fallback
LLM_RETRY_BASE_DELAY = env.float("LLM_RETRY_BASE_DELAY", default=0.5)  # seconds, doubled each attempt, jittered
LLM_RETRY_MAX_DELAY = env.float("LLM_RETRY_MAX_DELAY", default=20.0)  # cap, also on a Retry-After

# --- Batch API and background jobs (docs/jobs.md) ---------------------------------------------------
BATCH_MAX_ITEMS = env.int("BATCH_MAX_ITEMS", default=200)
# Items in flight per token per process, shared by that token's concurrent batches. 32 keeps 1,000 rows at 1 s
# upstream latency (10 requests of 100, 4 at a time, as the Office Script sends them) under a minute.
BATCH_CONCURRENCY = env.int("BATCH_CONCURRENCY", default=32)
# After the pipeline's own retries, an item the upstream still rate-limits waits Retry-After and tries again.
BATCH_RATE_LIMIT_RETRIES = env.int("BATCH_RATE_LIMIT_RETRIES", default=4)
BATCH_RATE_LIMIT_MAX_WAIT = env.float("BATCH_RATE_LIMIT_MAX_WAIT", default=30.0)  # seconds, per wait
IDEMPOTENCY_KEY_TTL = env.int("IDEMPOTENCY_KEY_TTL", default=24 * 3600)  # seconds a stored answer is replayed
JOB_MAX_ITEMS = env.int("JOB_MAX_ITEMS", default=50_000)
JOB_CONCURRENCY = env.int("JOB_CONCURRENCY", default=32)  # items in flight per running job
JOB_UPLOAD_MAX_BYTES = env.int("JOB_UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)  # also batch/job JSON bodies
# What an uploaded .xlsx may decompress to (counted while decompressing, plus the text taken out of its column):
# a zip bomb is a 413, and reading any workbook stays within tens of MB of memory.
JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES = env.int("JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES", default=50 * 1024 * 1024)
# A claimed item belongs to its worker while the lease is renewed (every third of it); a killed worker's items
# are claimed again once their lease runs out.
JOB_ITEM_LEASE_SECONDS = env.float("JOB_ITEM_LEASE_SECONDS", default=60.0)
JOB_SWEEP_SECONDS = env.float("JOB_SWEEP_SECONDS", default=30.0)  # how often a worker looks for stalled jobs
JOB_RETRY_AFTER_SECONDS = env.int("JOB_RETRY_AFTER_SECONDS", default=5)  # the polling hint on 202 answers
# The Excel add-in's EACH, CLASSIFY and EXTRACT run a range with more distinct texts than this as a background
# job (the cells fill in as rows finish) instead of batches; the add-in reads it from /excel/settings.json.
EXCEL_JOB_THRESHOLD = env.int("EXCEL_JOB_THRESHOLD", default=1000)

# --- File processing: POST /api/v1/files/process (docs/files.md) -------------------------------------------
FILE_UPLOAD_MAX_BYTES = env.int("FILE_UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)  # the uploaded file: 413 above
# What a .docx or .xlsx may decompress to, counted while decompressing (a zip bomb is a 413); it also bounds the
# memory python-docx's tree of the document takes.
FILE_MAX_UNCOMPRESSED_BYTES = env.int("FILE_MAX_UNCOMPRESSED_BYTES", default=20 * 1024 * 1024)
FILE_MAX_PAGES = env.int("FILE_MAX_PAGES", default=500)  # a PDF's pages: 400 above
FILE_MAX_CHARS = env.int("FILE_MAX_CHARS", default=1_000_000)  # text taken out of a document: 413 above
# The largest chunk one call gets, in characters (about a quarter as many tokens in English); keep it well under
# MAX_PROMPT_LENGTH and the smallest context window of the models used.
FILE_CHUNK_MAX_CHARS = env.int("FILE_CHUNK_MAX_CHARS", default=12_000)
# Up to this many chunks the answer comes at once (200); more run as a background job (202, like /api/v1/jobs).
FILE_SYNC_MAX_CHUNKS = env.int("FILE_SYNC_MAX_CHUNKS", default=8)
FILE_KEEP_UPLOADS = env.bool("FILE_KEEP_UPLOADS", default=False)  # keep uploaded documents in FILE_UPLOAD_DIR
FILE_UPLOAD_DIR = env.str("FILE_UPLOAD_DIR", default="") or str(BASE_DIR / "var" / "uploads")

# Celery: Redis when REDIS_URL is set; otherwise kombu's SQLAlchemy transport on a SQLite file (no server).
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default=REDIS_URL or f"sqla+sqlite:///{BASE_DIR / 'var' / 'celery-broker.sqlite3'}"
)
CELERY_TASK_IGNORE_RESULT = True  # job state lives in the database, not in a result backend
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep Django's LOGGING (request ids, redaction)

# --- Metrics and alerts (docs/metrics.md) --------------------------------------------------------------
# Client addresses or networks (comma list) that may read /metrics without a token. Empty: a token only.
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")
# Who `mail_admins` writes to (comma list of addresses), and how mail leaves.
ADMINS = [(address, address) for address in env_list("DJANGO_ADMINS")]
SERVER_EMAIL = env.str("SERVER_EMAIL", default="djllm@localhost")
EMAIL_SUBJECT_PREFIX = env.str("EMAIL_SUBJECT_PREFIX", default="[djllm] ")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
# Alerts go to ADMINS by mail and, when set, as `{"text": ...}` to this URL (a Slack incoming webhook or alike).
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERTS_ENABLED = env.bool("ALERTS_ENABLED", default=True)
# The checks run every ALERT_CHECK_SECONDS (Celery beat); each condition alerts at most once per ALERT_WINDOW_SECONDS.
ALERT_CHECK_SECONDS = env.int("ALERT_CHECK_SECONDS", default=60)
ALERT_WINDOW_SECONDS = env.int("ALERT_WINDOW_SECONDS", default=3600)
# Upstream errors over requests sent upstream in the last window; no alert below ALERT_UPSTREAM_MIN_REQUESTS.
ALERT_UPSTREAM_ERROR_RATE = env.float("ALERT_UPSTREAM_ERROR_RATE", default=0.2)
ALERT_UPSTREAM_MIN_REQUESTS = env.int("ALERT_UPSTREAM_MIN_REQUESTS", default=20)
# A queued or running job with no sign of life from a worker for this long.
ALERT_JOB_STUCK_SECONDS = env.int("ALERT_JOB_STUCK_SECONDS", default=900)
CELERY_BEAT_SCHEDULE = {
    "alerts-evaluate": {"task": "monitoring.alerts_evaluate", "schedule": float(ALERT_CHECK_SECONDS)},
}
