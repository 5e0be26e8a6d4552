from django.apps import AppConfig


class DrAppConfig(AppConfig):
    name = "dr_app"
    verbose_name = "Backup, restore and disaster recovery"

    def ready(self):
        from dr_app import selectors, services
        from portal.approvals import registry
        from portal.context_processors import badge_register, nav_register
        from portal.dashboard import dangerous_action_register
        from portal.permissions import ADMIN, APPROVER, AUDITOR, role_grant

        role_grant(ADMIN, "dr_app.view_backuprecord", "dr_app.start_backup",
                   "dr_app.restore_backup")
        role_grant(AUDITOR, "dr_app.view_backuprecord")
        role_grant(APPROVER, "dr_app.view_backuprecord")
        nav_register("Backups", "dr:backup-home", "dr_app.view_backuprecord",
                     section="Recovery", active_for=("dr:backup-home", "dr:backup-list",
                                                     "dr:restore-create"),
                     badge="dr_attention")
        nav_register("DR drills", "dr:drill-list", "dr_app.view_backuprecord",
                     section="Recovery", active_for=("dr:drill-list", "dr:drill-detail",
                                                     "dr:drill-create"))
        badge_register("dr_attention", selectors.jobs_needing_attention_count,
                       permission="dr_app.view_backuprecord",
                       meaning="backup, restore or drill jobs without a final status after "
                               "2 hours")
        # A full restore replaces every key of the HSM: maker-checker once approvals exist.
        registry.register("restore.full", services.restore_start,
                          label="Restore a whole HSM from a backup",
                          describe=selectors.restore_describe)
        dangerous_action_register("restore.full", "restore.selective", "backup.delete")
        from portal.dashboard import dashboard_register

        dashboard_register("dr", selectors.dashboard_figures,
                           permission="dr_app.view_backuprecord")
        # The HSM page's Backups tab (before Settings).
        from portal.gateway.views import HSM_TABS
        from portal.objects import Tab

        if not any(tab.slug == "backups" for tab in HSM_TABS):
            at = next((i for i, tab in enumerate(HSM_TABS) if tab.slug == "settings"),
                      len(HSM_TABS))
            HSM_TABS.insert(at, Tab("backups", "Backups", "dr:backup-list",
                                    "dr_app.view_backuprecord"))
        from dr_app import security_domain_apps

        security_domain_apps.ready()  # the security domain and the custody ledger
