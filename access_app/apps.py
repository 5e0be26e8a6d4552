from django.apps import AppConfig


class AccessAppConfig(AppConfig):
    name = "access_app"
    verbose_name = "Local RBAC and access requests"

    def ready(self):
        from access_app import describe, services
        from portal.approvals import registry
        from portal.context_processors import nav_register
        from portal.gateway.views import HSM_TABS
        from portal.objects import Tab
        from portal.permissions import ADMIN, APPROVER, AUDITOR, role_grant

        view = ("access_app.view_roleassignmentrecord", "access_app.view_roledefinitionrecord",
                "access_app.view_accessrequest", "access_app.view_reviewcampaign")
        role_grant(ADMIN, *view, "access_app.add_accessrequest",
                   "access_app.grant_roleassignmentrecord",
                   "access_app.add_roledefinitionrecord", "access_app.change_roledefinitionrecord",
                   "access_app.delete_roledefinitionrecord",
                   "access_app.sync_roledefinitionrecord", "access_app.add_reviewcampaign",
                   "access_app.review_reviewcampaign")
        role_grant(APPROVER, *view)
        role_grant(AUDITOR, *view)
        nav_register("Access requests", "access:request-list", "access_app.view_accessrequest",
                     section="Access",
                     active_for=("access:request-create", "access:request-detail"))
        nav_register("Access reviews", "access:campaign-list", "access_app.view_reviewcampaign",
                     section="Access", active_for=("access:campaign-detail",))
        if not any(tab.slug == "access" for tab in HSM_TABS):
            HSM_TABS.insert(3, Tab("access", "Access", "access:hsm-access",
                                   "access_app.view_roleassignmentrecord"))
        from keys_app.views import KEY_TABS, TAB_TEMPLATES

        if not any(tab.slug == "access" for tab in KEY_TABS):
            KEY_TABS.insert(3, Tab("access", "Access", "access:key-access",
                                   "access_app.view_roleassignmentrecord"))
            TAB_TEMPLATES["access"] = "access_app/key_access.html"
        registry.register("role_assignment.create", services.role_assignment_grant,
                          label="Grant a role assignment (local RBAC)",
                          describe=describe.describe_grant)
        registry.register("role_assignment.delete", services.role_assignment_revoke,
                          label="Revoke a role assignment (local RBAC)",
                          describe=describe.describe_revoke)
        from portal.dashboard import dangerous_action_register

        dangerous_action_register("role_assignment.create", "role_assignment.delete",
                                  "role_definition.delete")
