"""manage.py sign_in_throttle_clear [--user NAME] [--address IP]: forget failed sign-ins (audited)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.accounts.throttle import sign_in_throttle_clear
from portal.errors import BadInput


class Command(BaseCommand):
    help = ("Forget the failed sign-ins counted for an account and/or a client address, so "
            "a slowed user can try again at once. Audited as auth.throttle_clear.")

    def add_arguments(self, parser):
        parser.add_argument("--user", default="", help="The account's username.")
        parser.add_argument("--address", default="", help="A client IP address.")

    def handle(self, *args, user, address, **options):
        account = None
        if user:
            account = get_user_model().objects.filter(username=user).first()
            if account is None:
                raise CommandError(f"No user named {user}.")
        try:
            count = sign_in_throttle_clear(user=account, address=address)
        except BadInput as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Cleared {count} sign-in throttle row{'s' if count != 1 else ''}.")
