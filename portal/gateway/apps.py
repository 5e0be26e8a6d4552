from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "portal.gateway"
    label = "gateway"
    verbose_name = "Azure gateway"

    def ready(self):
        # Deregistering an HSM drops only the portal's cache (never touches the HSM) and
        # needs its name typed again; it is not an approvable operation: every operation in
        # portal.approvals.registry must take `approval=` and call approval_require first.
        pass
