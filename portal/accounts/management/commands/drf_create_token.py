"""manage.py drf_create_token <user> [-r] [--days N]: print a new API token once (stored hashed)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import ApiToken
from portal.accounts.services import api_token_issue
from portal.errors import BadInput


class Command(BaseCommand):
    help = ("Create an API token for a user and print it once, with its expiry; -r replaces "
            "an existing one.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("-r", "--reset", action="store_true",
                            help="Replace the user's existing token.")
        parser.add_argument("--days", type=int, default=None,
                            help="Days until the token expires (1-365; default "
                                 "PORTAL_API_TOKEN_DAYS, 90).")

    def handle(self, *args, username, reset, days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username}.")
        try:
            raw = api_token_issue(user=user, reset=reset, days=days)
        except BadInput as exc:
            raise CommandError(exc.message) from exc
        if raw is None:
            raise CommandError(f"{username} already has a token, which is stored only as a "
                               f"hash and cannot be shown again; use -r to replace it.")
        token = ApiToken.objects.get(user=user)
        self.stdout.write(f"Generated token {raw} for user {username}; it expires "
                          f"{token.expires:%Y-%m-%d %H:%M} UTC.")
