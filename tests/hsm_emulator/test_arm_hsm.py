"""The HSM resource's management plane through azure-mgmt-keyvault and azure-mgmt-authorization (issue F):
the multi-region replica, public network access and network rules, private endpoint connections, and Azure
RBAC role assignments at the HSM resource's scope."""

import time
import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import (ManagedHsm, ManagedHsmProperties, MHSMGeoReplicatedRegion, MHSMIPRule,
                                        MHSMNetworkRuleSet, MHSMPrivateEndpointConnection,
                                        MHSMPrivateEndpointConnectionProperties, MHSMPrivateLinkServiceConnectionState)

from tests.support.emulator import EmulatorProcess

ARM_SCOPES = ["https://management.azure.com/.default"]
MANAGED_HSM_CONTRIBUTOR = "18500a29-7fe2-46b2-a342-b16a415e101d"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("arm-hsm"), hsms=("primary", "other"),
                              extra_args=("--no-storage",)).start()
    yield process
    process.stop()


def client(emulator, cls):
    return cls(emulator.credential(), emulator.endpoints["subscription_id"], base_url=emulator.endpoints["arm"],
               credential_scopes=ARM_SCOPES, connection_verify=emulator.ca_bundle)


@pytest.fixture(scope="module")
def mgmt(emulator):
    return client(emulator, KeyVaultManagementClient)


@pytest.fixture(scope="module")
def authz(emulator):
    return client(emulator, AuthorizationManagementClient)


@pytest.fixture(scope="module")
def group(emulator):
    return emulator.endpoints["resource_group"]


def wait_for(read, predicate, timeout=15.0):
    """Poll ``read()`` until ``predicate`` holds; the last value (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if predicate(value):
            return value
        assert time.monotonic() < deadline, f"condition not met in {timeout} s: {value!r}"
        time.sleep(0.2)


def regions_of(mgmt, group, name="primary"):
    return {r.name: (r.is_primary, r.provisioning_state) for r in mgmt.managed_hsms.get(group, name).properties.regions}


def test_replica_region_added_then_removed(mgmt, group):
    assert regions_of(mgmt, group) == {"westeurope": (True, "Succeeded")}
    mgmt.managed_hsms.begin_update(group, "primary", ManagedHsm(location="westeurope", properties=ManagedHsmProperties(
        regions=[MHSMGeoReplicatedRegion(name="westeurope"), MHSMGeoReplicatedRegion(name="northeurope")]))).result()
    assert regions_of(mgmt, group)["northeurope"] == (False, "Provisioning")
    with pytest.raises(HttpResponseError) as busy:  # one region change at a time
        mgmt.managed_hsms.begin_update(group, "primary", ManagedHsm(location="westeurope", properties=ManagedHsmProperties(
            regions=[MHSMGeoReplicatedRegion(name="westeurope")]))).result()
    assert busy.value.status_code == 409
    wait_for(lambda: regions_of(mgmt, group), lambda r: r.get("northeurope") == (False, "Succeeded"))
    listed = {r.name: r.provisioning_state for r in mgmt.mhsm_regions.list_by_resource(group, "primary")}
    assert listed == {"westeurope": "Succeeded", "northeurope": "Succeeded"}

    with pytest.raises(HttpResponseError) as two:
        mgmt.managed_hsms.begin_update(group, "primary", ManagedHsm(location="westeurope", properties=ManagedHsmProperties(
            regions=[MHSMGeoReplicatedRegion(name="northeurope"), MHSMGeoReplicatedRegion(name="swedencentral")]))).result()
    assert two.value.status_code == 400

    mgmt.managed_hsms.begin_update(group, "primary", ManagedHsm(location="westeurope", properties=ManagedHsmProperties(
        regions=[MHSMGeoReplicatedRegion(name="westeurope")]))).result()
    assert regions_of(mgmt, group)["northeurope"] == (False, "Deleting")
    wait_for(lambda: regions_of(mgmt, group), lambda r: r == {"westeurope": (True, "Succeeded")})


def test_public_network_access_and_network_rules_toggled(mgmt, group):
    mgmt.managed_hsms.begin_update(group, "primary", ManagedHsm(location="westeurope", properties=ManagedHsmProperties(
        public_network_access="Disabled", network_acls=MHSMNetworkRuleSet(
            bypass="AzureServices", default_action="Deny", ip_rules=[MHSMIPRule(value="203.0.113.0/24")])))).result()
    hsm = mgmt.managed_hsms.get(group, "primary").properties
    assert hsm.public_network_access == "Disabled"
    assert hsm.network_acls.default_action == "Deny" and hsm.network_acls.bypass == "AzureServices"
    assert [rule.value for rule in hsm.network_acls.ip_rules] == ["203.0.113.0/24"]
    with pytest.raises(HttpResponseError) as refused:  # nothing changes on a refusal
        mgmt.managed_hsms.begin_update(group, "primary", ManagedHsm(location="westeurope", properties=ManagedHsmProperties(
            public_network_access="Enabled", network_acls=MHSMNetworkRuleSet(ip_rules=[MHSMIPRule(value="2001:db8::/32")])))
        ).result()
    assert refused.value.status_code == 400
    assert mgmt.managed_hsms.get(group, "primary").properties.public_network_access == "Disabled"
    mgmt.managed_hsms.begin_update(group, "primary", ManagedHsm(location="westeurope", properties=ManagedHsmProperties(
        public_network_access="Enabled"))).result()
    assert mgmt.managed_hsms.get(group, "primary").properties.public_network_access == "Enabled"


def test_purge_protection_and_retention_through_resource_manager(mgmt, group):
    mgmt.managed_hsms.begin_update(group, "other", ManagedHsm(location="westeurope", properties=ManagedHsmProperties(
        enable_purge_protection=True, soft_delete_retention_in_days=30))).result()
    props = mgmt.managed_hsms.get(group, "other").properties
    assert props.enable_purge_protection is True and props.soft_delete_retention_in_days == 30
    assert props.security_domain_properties is not None


def connection_state(mgmt, group, name):
    return MHSMPrivateEndpointConnection(properties=MHSMPrivateEndpointConnectionProperties(
        private_link_service_connection_state=MHSMPrivateLinkServiceConnectionState(
            status=name, description=f"{name} by the platform team")))


def test_a_pending_private_endpoint_connection_is_approved(mgmt, group):
    (pending,) = list(mgmt.mhsm_private_endpoint_connections.list_by_resource(group, "primary"))
    assert pending.properties.private_link_service_connection_state.status == "Pending"
    assert pending.properties.private_endpoint.id.endswith("/providers/Microsoft.Network/privateEndpoints/pe-primary-clients")
    approved = mgmt.mhsm_private_endpoint_connections.put(group, "primary", pending.name,
                                                          connection_state(mgmt, group, "Approved"))
    assert approved.properties.private_link_service_connection_state.status == "Approved"
    got = mgmt.mhsm_private_endpoint_connections.get(group, "primary", pending.name)
    assert got.properties.private_link_service_connection_state.description == "Approved by the platform team"
    (listed,) = mgmt.managed_hsms.get(group, "primary").properties.private_endpoint_connections
    assert listed.properties.private_link_service_connection_state.status == "Approved"


def test_a_rejected_connection_cannot_be_approved_again(mgmt, group):
    (pending,) = list(mgmt.mhsm_private_endpoint_connections.list_by_resource(group, "other"))
    mgmt.mhsm_private_endpoint_connections.put(group, "other", pending.name, connection_state(mgmt, group, "Rejected"))
    with pytest.raises(HttpResponseError) as refused:
        mgmt.mhsm_private_endpoint_connections.put(group, "other", pending.name, connection_state(mgmt, group, "Approved"))
    assert refused.value.status_code == 400
    got = mgmt.mhsm_private_endpoint_connections.get(group, "other", pending.name)
    assert got.properties.private_link_service_connection_state.status == "Rejected"
    with pytest.raises(ResourceNotFoundError):
        mgmt.mhsm_private_endpoint_connections.get(group, "other", "nonexistent")


def test_azure_rbac_role_assignments_at_the_hsm_scope(emulator, authz):
    scope = emulator.endpoints["hsm_resource_ids"]["primary"]
    sub = emulator.endpoints["subscription_id"]
    names = {d.role_name for d in authz.role_definitions.list(scope)}
    assert {"Owner", "Reader", "Managed HSM contributor"} <= names
    principal = emulator.create_principal(f"ops-{uuid.uuid4().hex[:6]}")
    definition = f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{MANAGED_HSM_CONTRIBUTOR}"
    name = str(uuid.uuid4())
    created = authz.role_assignments.create(scope, name, RoleAssignmentCreateParameters(
        role_definition_id=definition, principal_id=principal["object_id"], principal_type="ServicePrincipal"))
    assert created.scope == scope and created.principal_type == "ServicePrincipal"
    with pytest.raises(ResourceExistsError):  # the same principal, role and scope under another name
        authz.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=definition, principal_id=principal["object_id"]))
    # One at the subscription is inherited by the HSM's scope; atScope() lists at and above, not below.
    reader = authz.role_assignments.create(f"/subscriptions/{sub}", str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
        principal_id=principal["object_id"]))
    listed = {a.name for a in authz.role_assignments.list_for_scope(scope)}
    assert {name, reader.name} <= listed
    assert {name, reader.name} <= {a.name for a in authz.role_assignments.list_for_scope(scope, filter="atScope()")}
    group_scope = scope.split("/providers/")[0]
    assert name in {a.name for a in authz.role_assignments.list_for_scope(group_scope)}
    assert name not in {a.name for a in authz.role_assignments.list_for_scope(group_scope, filter="atScope()")}
    by_principal = authz.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal['object_id']}'")
    assert {a.name for a in by_principal} == {name, reader.name}
    with pytest.raises(HttpResponseError) as unknown:
        authz.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=definition, principal_id=str(uuid.uuid4())))
    assert unknown.value.error.code == "PrincipalNotFound"
    authz.role_assignments.delete(scope, name)
    assert name not in {a.name for a in authz.role_assignments.list_for_scope(scope)}
    with pytest.raises(ResourceNotFoundError):
        authz.role_assignments.get(scope, name)
