"""Portal roles and what each may do, and how pages and API views declare who may use them.

Roles are Django groups; each role holds Django permissions. Domain apps add what their
roles hold with `role_grant` in their AppConfig.ready (portal never imports them).
`sync_roles()` (run after every migrate) makes the groups match this table.
"""
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.mixins import AccessMixin
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

ADMIN, APPROVER, AUDITOR = "admin", "approver", "auditor"
ROLES = (ADMIN, APPROVER, AUDITOR)

ROLE_PERMISSIONS: dict[str, set[str]] = {
    ADMIN: {
        "audit.view_auditevent", "audit.export_auditevent",
        "jobs.view_job", "jobs.add_job",
        "gateway.view_hsminstance", "gateway.add_hsminstance", "gateway.delete_hsminstance",
    },
    APPROVER: {"gateway.view_hsminstance"},
    AUDITOR: {
        "audit.view_auditevent", "audit.export_auditevent",
        "jobs.view_job", "gateway.view_hsminstance",
    },
}

# Signed in, whatever the role: the dashboard and the API schema.
SIGNED_IN = "signed_in"


def role_grant(role: str, *perms: str) -> None:
    """Give a role more permissions (domain apps call this from AppConfig.ready)."""
    ROLE_PERMISSIONS[role].update(perms)


def user_role(user) -> str:
    """The user's portal role name ('' for none); a user holds at most one in practice."""
    if not getattr(user, "is_authenticated", False):
        return ""
    names = getattr(user, "_portal_roles", None)
    if names is None:
        names = sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._portal_roles = names
    return ",".join(names)


class RoleBackend(ModelBackend):
    """Sign-in as ModelBackend; permissions are the user's roles' ROLE_PERMISSIONS.

    The role table in code is the one source (sync_roles copies it into the groups), so a
    permission check costs the one query that user_role makes, cached on the user, instead
    of ModelBackend's two permission queries. No user holds permissions outside a role.
    """

    def get_user_permissions(self, user_obj, obj=None) -> set:
        return set()

    def get_group_permissions(self, user_obj, obj=None) -> set:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        roles = [name for name in user_role(user_obj).split(",") if name]
        return set().union(*(ROLE_PERMISSIONS[name] for name in roles))


def user_may(user, permission: str | None) -> bool:
    """Whether the user may use something that declares this permission."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if permission == SIGNED_IN:
        return True
    if not permission:
        return False  # nothing declared: nobody gets in
    return user.has_perm(permission)


def sync_roles(**_kwargs) -> None:
    """Create the role groups and set their permissions to exactly ROLE_PERMISSIONS."""
    from django.contrib.auth.models import Group, Permission

    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".", 1)
            wanted.extend(Permission.objects.filter(content_type__app_label=app_label,
                                                    codename=codename))
        group.permissions.set(wanted)


def declared_permission(view, method: str) -> str | None:
    """A view's `required_permission`: one string, or a dict of HTTP method -> permission.

    HEAD and OPTIONS read what GET reads, unless the dict names them.
    """
    declared = getattr(view, "required_permission", None)
    if isinstance(declared, dict):
        method = method.upper()
        if method not in declared and method in ("HEAD", "OPTIONS"):
            method = "GET"
        return declared.get(method)
    return declared


def view_serves(view, method: str) -> bool:
    """Whether the view has a handler for the method (if not, dispatch answers 405)."""
    method = method.lower()
    return method in view.http_method_names and hasattr(view, method)


class PortalPermissionMixin(AccessMixin):
    """HTML views declare `required_permission`; anonymous users go to sign-in, others get 403."""

    required_permission: str | dict | None = None

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not view_serves(self, request.method):
            return self.http_method_not_allowed(request, *args, **kwargs)  # 405 with Allow
        if not user_may(request.user, declared_permission(self, request.method)):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)


class HasRequiredPermission(BasePermission):
    """DRF views declare `required_permission`; anonymous callers get 401, others 403."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # DRF turns this into 401 with the authenticator's header
        if not view_serves(view, request.method):
            return True  # no handler: dispatch answers 405 with an Allow header
        return user_may(request.user, declared_permission(view, request.method))
