"""manage.py approval_policy: list, set or delete the approval policies (data), audited.

  approval_policy list
  approval_policy set "Key purges need two" --operation key.purge --approvers 2 --hours 8 \
      --priority 5 --as alice
  approval_policy delete "Key purges need two" --as alice
"""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.approvals.models import ApprovalPolicy
from portal.approvals.services import approval_policy_delete, approval_policy_set
from portal.errors import PortalError
from portal.permissions import ADMIN


class Command(BaseCommand):
    help = "List, set or delete approval policies (admins only; audited)."

    def add_arguments(self, parser):
        parser.add_argument("verb", choices=["list", "set", "delete"])
        parser.add_argument("name", nargs="?", default="")
        parser.add_argument("--operation", default="*", help="operation pattern, e.g. key.*")
        parser.add_argument("--role", default="*", help="role pattern (access requests)")
        parser.add_argument("--scope", default="*", help="scope pattern, e.g. / or /keys/*")
        parser.add_argument("--approvers", type=int, default=1, help="distinct approvers (1-10)")
        parser.add_argument("--hours", type=int, default=24, help="request lifetime (1-720)")
        parser.add_argument("--priority", type=int, default=100, help="lower wins")
        parser.add_argument("--as", dest="username", default="", help="the admin making it")

    def handle(self, *args, **options):
        if options["verb"] == "list":
            for p in ApprovalPolicy.objects.order_by("priority", "id"):
                self.stdout.write(f"{p.priority:>6}  {p.required_approvers} approver(s), "
                                  f"{p.lifetime_hours} h  operation={p.operation_pattern} "
                                  f"role={p.role_pattern} scope={p.scope_pattern}  {p.name}")
            return
        if not options["name"]:
            raise CommandError("Name the policy.")
        user = get_user_model().objects.filter(username=options["username"], is_active=True,
                                               groups__name=ADMIN).first()
        if user is None:
            raise CommandError("--as must name an active admin (policy changes are audited "
                               "as theirs).")
        try:
            if options["verb"] == "delete":
                approval_policy_delete(name=options["name"], actor=user)
                self.stdout.write(f"Deleted policy {options['name']!r}.")
                return
            policy = approval_policy_set(
                name=options["name"], actor=user, operation_pattern=options["operation"],
                role_pattern=options["role"], scope_pattern=options["scope"],
                required_approvers=options["approvers"], lifetime_hours=options["hours"],
                priority=options["priority"])
        except PortalError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Policy {policy.name!r}: {policy.required_approvers} approver(s), "
                          f"{policy.lifetime_hours} h.")
