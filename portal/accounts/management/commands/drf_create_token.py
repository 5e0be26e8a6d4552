"""manage.py drf_create_token <user> [-r]: print a new API token once (stored hashed only)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.accounts.services import api_token_issue


class Command(BaseCommand):
    help = "Create an API token for a user and print it once; -r replaces an existing one."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("-r", "--reset", action="store_true",
                            help="Replace the user's existing token.")

    def handle(self, *args, username, reset, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username}.")
        raw = api_token_issue(user=user, reset=reset)
        if raw is None:
            raise CommandError(f"{username} already has a token, which is stored only as a "
                               f"hash and cannot be shown again; use -r to replace it.")
        self.stdout.write(f"Generated token {raw} for user {username}")
