from django.apps import AppConfig


class KeysAppConfig(AppConfig):
    name = "keys_app"
    verbose_name = "Keys, local RBAC and CMK"

    def ready(self):
        from keys_app import selectors, services
        from portal.approvals import registry
        from portal.context_processors import nav_register, switcher_object_register
        from portal.permissions import ADMIN, APPROVER, AUDITOR, role_grant

        role_grant(ADMIN, "keys_app.view_keyrecord", "keys_app.add_keyrecord",
                   "keys_app.change_keyrecord", "keys_app.delete_keyrecord",
                   "keys_app.rotate_keyrecord", "keys_app.purge_keyrecord",
                   "keys_app.backup_keyrecord", "keys_app.sync_keyrecord")
        role_grant(AUDITOR, "keys_app.view_keyrecord")
        role_grant(APPROVER, "keys_app.view_keyrecord")
        nav_register("Keys", "keys-home", "keys_app.view_keyrecord", section="Keys",
                     active_for=("keys",))
        switcher_object_register("keys", "name", selectors.key_exists)
        from portal.gateway.selectors import hsm_summary_register

        hsm_summary_register(selectors.hsm_key_facts)  # the HSM page's Essentials
        # Dangerous key actions go through maker-checker: the direct path returns a pending
        # request; on approval the approvals job runs the same service with it attached.
        from keys_app.approvals import ACTIONS, describer

        registry.register("key.delete", services.key_delete, label=ACTIONS["key.delete"][0],
                          describe=describer("key.delete"))
        registry.register("key.purge", services.key_purge, label=ACTIONS["key.purge"][0],
                          describe=describer("key.purge"))
        registry.register("key.rotation_policy.clear", services.key_rotation_policy_set,
                          label=ACTIONS["key.rotation_policy.clear"][0],
                          describe=describer("key.rotation_policy.clear"))
        # The dashboard: key figures per HSM, and which key actions count as dangerous.
        from keys_app.dashboard import key_figures
        from portal.dashboard import dangerous_action_register, dashboard_register

        dashboard_register("keys", key_figures, permission="keys_app.view_keyrecord")
        dangerous_action_register("key.delete", "key.purge", "key.disable",
                                  "key.rotation_policy.clear")
