#!/usr/bin/env python
import os
import sys


def main() -> None:
    # Development settings for commands run by hand; the deployed entry points (WSGI, ASGI, Celery) default to
    # production, and `make serve` runs its manage.py steps with production settings too.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
