import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

from common.asgi import build_application  # noqa: E402  (settings module must be chosen first)

application = build_application()
