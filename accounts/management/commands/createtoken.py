from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import services
from accounts.models import ALL_SCOPES, DEFAULT_SCOPES
from common.audit import COMMAND
from common.errors import AppError


class Command(BaseCommand):
    help = "Create an API token for USERNAME. The token is printed alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--create-user", action="store_true", help="Create the user if it does not exist.")
        parser.add_argument("--name", default="", help="A label for the token.")
        parser.add_argument(
            "--scopes",
            default=",".join(DEFAULT_SCOPES),
            help=f"Comma list of {', '.join(ALL_SCOPES)} (default: {','.join(DEFAULT_SCOPES)}; "
            "`account` lets the token change the account).",
        )
        parser.add_argument("--expires-days", type=int, default=None, help="Days until the token expires.")

    def handle(self, *args, username, create_user, name, scopes, expires_days, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"No user {username!r}; pass --create-user to create one.")
            user = services.user_create(username=username)
            self.stdout.write(f"Created user {username}.")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
        try:
            token, plaintext = services.api_token_create(
                user=user,
                name=name,
                scopes=scope_list,
                expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None,
                by=COMMAND,
            )
        except AppError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"Token {token.display_prefix}… for {username}, scopes: {', '.join(token.scopes)}.")
        self.stdout.write(plaintext)
