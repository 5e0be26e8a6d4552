from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "portal.approvals"
    label = "approvals"
    verbose_name = "Approvals"

    def ready(self):
        from portal.approvals.selectors import approval_inbox_count
        from portal.context_processors import badge_register, nav_register
        from portal.permissions import ADMIN, APPROVER, AUDITOR, role_grant

        role_grant(ADMIN, "approvals.view_approvalrequest", "approvals.decide_approvalrequest",
                   "approvals.view_approvalpolicy")
        role_grant(APPROVER, "approvals.view_approvalrequest", "approvals.decide_approvalrequest",
                   "approvals.view_approvalpolicy")
        role_grant(AUDITOR, "approvals.view_approvalrequest", "approvals.view_approvalpolicy")
        badge_register("pending_approvals", approval_inbox_count,
                       permission="approvals.decide_approvalrequest",
                       meaning="waiting for your decision")
        nav_register("Approval inbox", "approvals:inbox", "approvals.decide_approvalrequest",
                     section="Approvals", badge="pending_approvals")
        nav_register("My requests", "approvals:mine", "approvals.view_approvalrequest",
                     section="Approvals")
        nav_register("All requests", "approvals:request-list", "approvals.view_approvalrequest",
                     section="Approvals")
        nav_register("Policies", "approvals:policy-list", "approvals.view_approvalpolicy",
                     section="Approvals")
