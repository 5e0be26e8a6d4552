"""An emulator for customer-managed-key tests: purge protection is irreversible, so the
primary HSM that gets it is not the one other tests purge keys on. The secondary never
gets it (the "no purge protection" path); "spare" gets it through the portal in a test. Resource groups rg-apps (westeurope) and rg-dr
(northeurope) exist."""
from tests.support.emulator import EmulatorProcess

ARM_SCOPES = ["https://management.azure.com/.default"]
GROUP = "rg-apps"


def mgmt(emulator, cls, **kwargs):
    """A management client built the way a test verifies what the portal did (the SDK)."""
    return cls(emulator.credential(), emulator.endpoints["subscription_id"],
               base_url=emulator.endpoints["arm"], credential_scopes=ARM_SCOPES,
               connection_verify=emulator.ca_bundle, **kwargs)


def start_cmk_emulator(state_dir) -> EmulatorProcess:
    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.keyvault.models import ManagedHsm, ManagedHsmProperties
    from azure.mgmt.resource.resources import ResourceManagementClient

    process = EmulatorProcess(state_dir, hsms=("primary", "secondary", "spare"),
                              extra_args=("--no-storage",)).start()
    try:
        keyvault = mgmt(process, KeyVaultManagementClient)
        keyvault.managed_hsms.begin_update(process.endpoints["resource_group"], "primary", ManagedHsm(
            location="westeurope",
            properties=ManagedHsmProperties(enable_purge_protection=True))).result()
        resources = mgmt(process, ResourceManagementClient)
        resources.resource_groups.create_or_update(GROUP, {"location": "westeurope"})
        resources.resource_groups.create_or_update("rg-dr", {"location": "northeurope"})
    except Exception:
        process.stop()
        raise
    return process
