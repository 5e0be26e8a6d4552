"""manage.py approval_decide: approve or deny a request from a shell, as a named user.

The same service as the pages and the API: the user must be an approver or administrator,
and never the requester (compared by object id, whatever the username). Audited, with the
door recorded as "command".
"""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.approvals.services import approval_decide
from portal.errors import PortalError


class Command(BaseCommand):
    help = "Approve or deny an approval request as --as USER (never the requester)."

    def add_arguments(self, parser):
        parser.add_argument("approval_id", type=int)
        parser.add_argument("decision", choices=["approve", "deny"])
        parser.add_argument("--as", dest="username", required=True,
                            help="username of the approver deciding")
        parser.add_argument("--comment", default="")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["username"],
                                               is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {options['username']!r}.")
        try:
            req = approval_decide(approval_id=options["approval_id"], actor=user,
                                  decision=options["decision"], comment=options["comment"],
                                  request_id="", door="command")
        except PortalError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Request #{req.pk} is {req.status} "
                          f"({req.approvals_given} of {req.required_approvals} approvals).")
