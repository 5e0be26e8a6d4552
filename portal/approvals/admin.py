"""Django admin registrations: read-only, so the admin is never a door around maker-checker.

The portal does not install django.contrib.admin; should it ever be installed, requests,
decisions and policies can be looked at there but not added, changed or deleted (decisions
and status change only through portal.approvals.services, where the requester is refused).
Below the ORM, the database refuses a decision by the requester's principal and any change
to a decision, and voids a request whose payload changes (migration 0002).
"""
from django.apps import apps
from django.contrib import admin

from portal.approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        raise PermissionError("Approvals are read-only in the admin; decide in the portal.")

    def delete_model(self, request, obj):
        raise PermissionError("Approvals are read-only in the admin.")

    def get_actions(self, request):
        return {}


class DecisionInline(admin.TabularInline):
    model = ApprovalDecision
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "operation", "target", "requester_name", "status", "created",
                    "expires")
    list_filter = ("status", "operation")
    inlines = [DecisionInline]


class ApprovalDecisionAdmin(ReadOnlyAdmin):
    list_display = ("request", "approver_name", "decision", "created")


class ApprovalPolicyAdmin(ReadOnlyAdmin):
    list_display = ("name", "operation_pattern", "role_pattern", "scope_pattern",
                    "required_approvers", "lifetime_hours", "priority")


ADMINS = {ApprovalRequest: ApprovalRequestAdmin, ApprovalDecision: ApprovalDecisionAdmin,
          ApprovalPolicy: ApprovalPolicyAdmin}


def register_on(site: admin.AdminSite) -> None:
    """Register the read-only admins on an admin site."""
    for model, model_admin in ADMINS.items():
        site.register(model, model_admin)


if apps.is_installed("django.contrib.admin"):
    register_on(admin.site)
