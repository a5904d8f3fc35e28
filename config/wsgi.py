"""The WSGI entry point (e.g. PythonAnywhere). Deployed entry points default to the production settings: DEBUG off,
a real DJANGO_SECRET_KEY required. Development servers name `config.settings.local` themselves (manage.py, make run)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

from django.core.wsgi import get_wsgi_application  # noqa: E402  (settings module must be chosen first)

application = get_wsgi_application()
