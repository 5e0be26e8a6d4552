from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "portal.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        from celery.signals import task_prerun

        from portal.context_processors import nav_register
        from portal.gateway.correlation import forget_intents
        from portal.permissions import ADMIN, AUDITOR, role_grant

        # Timelines (HSM events joined to the trail) and the chain status with Verify now.
        perms = ("audit.view_hsmauditevent", "audit.view_auditverification",
                 "audit.view_auditcheckpoint", "audit.add_auditverification")
        role_grant(ADMIN, *perms)
        role_grant(AUDITOR, *perms)
        nav_register("Timelines", "trail:timeline-index", "audit.view_hsmauditevent",
                     section="Audit & compliance", active_for=("trail:timeline-index",
                                                               "trail:principal-timeline"))
        nav_register("Chain status", "trail:chain", "audit.view_auditverification",
                     section="Audit & compliance", active_for=("trail:chain",))

        # A worker thread starts each task with no audit intent left open by the last one.
        task_prerun.connect(lambda **kwargs: forget_intents(), weak=False,
                            dispatch_uid="portal.audit.forget_intents")
        self._register_tabs()

    @staticmethod
    def _register_tabs() -> None:
        from django.apps import apps

        from portal.gateway.views import HSM_TABS
        from portal.objects import Tab

        if not any(tab.slug == "timeline" for tab in HSM_TABS):
            at = next((i + 1 for i, tab in enumerate(HSM_TABS) if tab.slug == "activity"),
                      len(HSM_TABS))
            HSM_TABS.insert(at, Tab("timeline", "Timeline", "trail:hsm-timeline",
                                    "audit.view_hsmauditevent"))
        if apps.is_installed("keys_app"):
            from keys_app.views import KEY_TABS, TAB_TEMPLATES

            if not any(tab.slug == "timeline" for tab in KEY_TABS):
                at = next((i + 1 for i, tab in enumerate(KEY_TABS) if tab.slug == "activity"),
                          len(KEY_TABS))
                KEY_TABS.insert(at, Tab("timeline", "Timeline", "trail:key-timeline",
                                        "audit.view_hsmauditevent"))
                TAB_TEMPLATES["timeline"] = "audit/key_timeline.html"
