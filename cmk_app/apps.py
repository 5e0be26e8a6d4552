from django.apps import AppConfig


class CmkAppConfig(AppConfig):
    name = "cmk_app"
    verbose_name = "Customer-managed keys and the HSM resource"

    def ready(self):
        from cmk_app import describe, selectors, services
        from portal.approvals import registry
        from portal.permissions import ADMIN, APPROVER, AUDITOR, role_grant

        view = ("cmk_app.view_cmkbinding", "cmk_app.view_hsmresource")
        role_grant(ADMIN, *view, "cmk_app.attach_cmkbinding", "cmk_app.change_hsmresource")
        role_grant(APPROVER, *view)
        role_grant(AUDITOR, *view)
        registry.register("cmk.detach", services.cmk_detach,
                          label="Detach a customer-managed key", describe=describe.describe_detach)
        registry.register("cmk.switch", services.cmk_attach_start,
                          label="Switch a resource to another key", describe=describe.describe_switch)
        registry.register("hsm.public_network_access", services.hsm_network_access_set,
                          label="Change an HSM's public network access",
                          describe=describe.describe_network)
        registry.register("hsm.purge_protection", services.hsm_purge_protection_enable,
                          label="Turn on an HSM's purge protection",
                          describe=describe.describe_purge_protection)
        registry.register("hsm.private_endpoint", services.hsm_private_endpoint_decide,
                          label="Approve or reject a private endpoint connection",
                          describe=describe.describe_private_endpoint)
        # keys_app asks which resources use a key before disabling, deleting or purging it.
        from keys_app import services as key_services

        key_services.key_dependents_register(selectors.key_dependents)
        from keys_app.tables import USAGE_COUNTS

        if selectors.usage_counts not in USAGE_COUNTS:
            USAGE_COUNTS.append(selectors.usage_counts)
        from keys_app.approvals import ACTIONS, describer

        registry.register("key.disable", key_services.key_update, label=ACTIONS["key.disable"][0],
                          describe=describer("key.disable"))
        # The key's Usage tab, and the HSM's Azure resource tab.
        from keys_app.views import KEY_TABS, TAB_TEMPLATES
        from portal.gateway.views import HSM_TABS
        from portal.objects import Tab

        if not any(tab.slug == "usage" for tab in KEY_TABS):
            KEY_TABS.insert(len(KEY_TABS) - 1, Tab("usage", "Usage", "cmk:key-usage",
                                                   "cmk_app.view_cmkbinding"))
            TAB_TEMPLATES["usage"] = "cmk_app/key_usage.html"
        if not any(tab.slug == "resource" for tab in HSM_TABS):
            at = next((i for i, tab in enumerate(HSM_TABS) if tab.slug == "settings"),
                      len(HSM_TABS))
            HSM_TABS.insert(at, Tab("resource", "Azure resource", "cmk:hsm-resource",
                                    "cmk_app.view_hsmresource"))
        from portal.context_processors import nav_register

        nav_register("Customer-managed keys", "cmk:binding-list", "cmk_app.view_cmkbinding",
                     section="Encryption",
                     active_for=("cmk:binding-list", "cmk:attach", "cmk:binding-detail"))
        from portal.dashboard import dangerous_action_register

        dangerous_action_register("cmk.detach", "hsm.public_network_access",
                                  "hsm.private_endpoint", "hsm.replica_remove",
                                  "hsm.purge_protection")
