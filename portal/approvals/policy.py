"""The default approval policies, as data (the migration seeds these rows; an empty policy
table means these, so a flushed test database behaves like a fresh install)."""
from dataclasses import dataclass

# (name, operation pattern, role pattern, scope pattern, approvers, priority)
DEFAULTS = [
    ("Administrator at / needs two approvers", "*", "Managed HSM Administrator", "/", 2, 10),
    ("Policy Administrator at / needs two approvers", "*", "Managed HSM Policy Administrator",
     "/", 2, 10),
    ("Crypto Officer at / needs two approvers", "*", "Managed HSM Crypto Officer", "/", 2, 10),
    ("Everything else needs one approver", "*", "*", "*", 1, 1000),
]
DEFAULT_LIFETIME_HOURS = 24


@dataclass(frozen=True)
class Rule:
    """What a request needs: this many distinct approvers, within this many hours."""

    name: str
    required_approvers: int
    lifetime_hours: int


def policy_for(*, operation: str, context: dict) -> Rule:
    """The rule of the first matching policy by priority (the defaults if the table is empty)."""
    from portal.approvals.models import ApprovalPolicy

    policies = list(ApprovalPolicy.objects.order_by("priority", "id"))
    if not policies:
        policies = [ApprovalPolicy(name=name, operation_pattern=op, role_pattern=role,
                                   scope_pattern=scope, required_approvers=approvers,
                                   lifetime_hours=DEFAULT_LIFETIME_HOURS, priority=priority)
                    for name, op, role, scope, approvers, priority in DEFAULTS]
    for policy in policies:
        if policy.matches(operation, context):
            return Rule(policy.name, policy.required_approvers, policy.lifetime_hours)
    return Rule("Built-in default", 1, DEFAULT_LIFETIME_HOURS)
