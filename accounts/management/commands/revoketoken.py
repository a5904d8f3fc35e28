from django.core.management.base import BaseCommand, CommandError

from accounts import selectors, services
from common.audit import COMMAND


class Command(BaseCommand):
    help = "Revoke an API token, given the whole token, djl_<prefix>, or the prefix."

    def add_arguments(self, parser):
        parser.add_argument("token_or_prefix")

    def handle(self, *args, token_or_prefix, **options):
        token = selectors.api_token_by_plaintext_or_prefix(value=token_or_prefix.strip())
        if token is None:
            raise CommandError("No token matches that value.")
        if token.is_revoked:
            raise CommandError(
                f"Token {token.display_prefix}… was already revoked at {token.revoked_at:%Y-%m-%d %H:%M}."
            )
        services.api_token_revoke(token=token, by=COMMAND)
        self.stdout.write(f"Revoked {token.display_prefix}… ({token.name or 'unnamed'}) of {token.user}.")
