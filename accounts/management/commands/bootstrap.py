import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts import services
from accounts.models import ALL_SCOPES
from common.audit import COMMAND


class Command(BaseCommand):
    help = "First-run setup for `make run`: an admin user with a generated password and one API token."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the server will listen.")

    def handle(self, *args, username, url, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin user exists already; skipping (use `manage.py createtoken` for tokens).")
            return
        password = secrets.token_urlsafe(12)
        user = services.user_create(username=username, password=password, is_superuser=True)
        _, plaintext = services.api_token_create(user=user, name="make run", scopes=list(ALL_SCOPES), by=COMMAND)
        self.stdout.write(self.style.SUCCESS("Created the admin user. Keep these; they are shown only now:"))
        self.stdout.write(f"  admin login:  {url.rstrip('/')}/admin/   user {username}   password {password}")
        self.stdout.write(f"  API token:    {plaintext}")
