from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "portal.gateway"
    label = "gateway"
    verbose_name = "Azure gateway"

    def ready(self):
        from portal.approvals import registry
        from portal.gateway.services import hsm_deregister

        # Deregistering drops the HSM's cache and stops its management: approvable.
        registry.register("hsm.deregister", hsm_deregister)
