"""Production: secure defaults, JSON logs, and a refusal to start without a real secret key.

Every value here can still be switched by env; this module only changes the defaults.
"""

from django.core.exceptions import ImproperlyConfigured

from config.env import env

from .base import *  # noqa: F403
from .base import LOGGING

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production (a long random string).")
# No silent fallback to a key derived from SECRET_KEY here: the stored provider keys would hang on the secret key.
if not FIELD_ENCRYPTION_KEYS:  # noqa: F405
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEYS must be set in production (Fernet keys, comma-separated; the first encrypts). "
        'Generate one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())". '
        "An install that ran without it: set it, then run `manage.py rotate_encryption_keys` to move the stored secrets "
        "under the new key."
    )

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING["handlers"]["console"]["formatter"] = "json" if LOG_FORMAT == "json" else "text"
