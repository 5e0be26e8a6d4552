from django.apps import AppConfig


class ComplianceAppConfig(AppConfig):
    name = "compliance_app"
    verbose_name = "Compliance posture and evidence"

    def ready(self):
        from compliance_app import checks  # noqa: F401  (registers the built-in checks)
        from compliance_app.selectors import posture_failing_count
        from portal.context_processors import badge_register, nav_register
        from portal.permissions import ADMIN, APPROVER, AUDITOR, role_grant

        role_grant(ADMIN, "compliance_app.view_posturerun", "compliance_app.run_posture",
                   "compliance_app.view_evidencepack", "compliance_app.add_evidencepack")
        role_grant(AUDITOR, "compliance_app.view_posturerun", "compliance_app.run_posture",
                   "compliance_app.view_evidencepack", "compliance_app.add_evidencepack")
        role_grant(APPROVER, "compliance_app.view_posturerun")
        nav_register("Posture", "compliance:posture", "compliance_app.view_posturerun",
                     section="Audit & compliance", active_for=("compliance:posture",),
                     badge="posture_failing")
        # The HSM page's Posture tab (before Settings).
        from portal.gateway.views import HSM_TABS
        from portal.objects import Tab

        if not any(tab.slug == "posture" for tab in HSM_TABS):
            at = next((i for i, tab in enumerate(HSM_TABS) if tab.slug == "settings"), len(HSM_TABS))
            HSM_TABS.insert(at, Tab("posture", "Posture", "compliance:hsm-posture",
                                    "compliance_app.view_posturerun"))
        badge_register("posture_failing", posture_failing_count,
                       permission="compliance_app.view_posturerun",
                       meaning="posture checks failing in the latest run")
        nav_register("Evidence packs", "compliance:evidence", "compliance_app.view_evidencepack",
                     section="Audit & compliance", active_for=("compliance:evidence",))
