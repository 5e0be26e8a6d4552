"""The CMK attach wizard against the emulator, verified through the management SDKs:
storage accounts, PostgreSQL and MySQL flexible servers; every failure path says what to do
and leaves no half-configured resource, no identity it created and no role assignment."""
import pytest
from azure.core.exceptions import ResourceNotFoundError

from cmk_app import services, tasks
from cmk_app.models import CmkBinding
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.cmk_app.conftest import GROUP, assignments_for, make_mysql, make_pg

ENCRYPTION_USER = "33413926-3206-4cdd-b39a-83574fe37a17"

pytestmark = pytest.mark.django_db


def attach(django_capture_on_commit_callbacks, *, hsm, key, resource_id, actor, **kwargs) -> Job:
    """Start the wizard as the page does, then run its job here as a worker would."""
    with django_capture_on_commit_callbacks(execute=False):
        job = services.cmk_attach_start(hsm=hsm, key_name=key, resource_id=resource_id,
                                        actor=actor, request_id="r-attach", **kwargs)
    assert isinstance(job, Job)
    tasks.cmk_attach_run.apply(args=[job.pk])
    job.refresh_from_db()
    return job


def wizard_identity(sdk, resource_name: str):
    try:
        return sdk["msi"].user_assigned_identities.get(GROUP, f"id-{resource_name}-cmk")
    except ResourceNotFoundError:
        return None


def assert_granted_least_privilege(sdk, principal_id, key):
    rows = assignments_for(sdk, principal_id)
    assert [(a.properties.scope, a.properties.role_definition_id.rsplit("/", 1)[-1])
            for a in rows] == [(f"/keys/{key}", ENCRYPTION_USER)]


def test_attach_storage_account(hsm, admin, cmk_key, storage_account, sdk,
                                django_capture_on_commit_callbacks):
    job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                 resource_id=storage_account.id, actor=admin)
    assert job.status == Job.Status.SUCCEEDED, job.error
    account = sdk["storage"].storage_accounts.get_properties(GROUP, storage_account.name)
    kv = account.encryption.key_vault_properties
    assert account.encryption.key_source == "Microsoft.Keyvault"
    assert (kv.key_name, kv.key_version) == (cmk_key.name, "")  # versionless
    assert kv.key_vault_uri.rstrip("/") == hsm.uri.rstrip("/")
    identity = wizard_identity(sdk, storage_account.name)
    assert account.encryption.encryption_identity.encryption_user_assigned_identity == identity.id
    assert_granted_least_privilege(sdk, identity.principal_id, cmk_key.name)
    binding = CmkBinding.objects.get(resource_id=storage_account.id)
    assert (binding.status, binding.versionless, binding.version_in_use, binding.identity_created) == \
        ("active", True, cmk_key.version, True)
    steps = [line["text"] for line in job.log]
    assert any("Granting" in s for s in steps) and any("Reading the encryption back" in s for s in steps)
    outcomes = list(AuditEvent.objects.filter(action="cmk.attach").order_by("seq")
                    .values_list("outcome", flat=True))
    assert outcomes == ["recorded", "succeeded"]
    # The wizard's grant is local RBAC the portal made (not drift).
    from access_app.models import RoleAssignmentRecord

    assert RoleAssignmentRecord.objects.get(name=binding.role_assignment).origin == "portal"


def test_attach_postgresql_flexible_server(hsm, admin, cmk_key, sdk,
                                           django_capture_on_commit_callbacks):
    server = make_pg(sdk)
    job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                 resource_id=server.id, actor=admin, identity_name="id-pg-test-" + cmk_key.name[-6:])
    assert job.status == Job.Status.SUCCEEDED, job.error
    got = sdk["pg"].servers.get(GROUP, server.name)
    enc = got.properties.data_encryption if getattr(got, "properties", None) else got.data_encryption
    assert enc.type == "AzureKeyVault"
    assert enc.primary_key_uri == f"{hsm.uri.rstrip('/')}/keys/{cmk_key.name}"
    identity = sdk["msi"].user_assigned_identities.get(GROUP, "id-pg-test-" + cmk_key.name[-6:])
    assert enc.primary_user_assigned_identity_id == identity.id
    assert_granted_least_privilege(sdk, identity.principal_id, cmk_key.name)


def test_attach_mysql_flexible_server_with_an_existing_identity(
        hsm, admin, cmk_key, sdk, django_capture_on_commit_callbacks):
    from azure.mgmt.msi.models import Identity

    identity = sdk["msi"].user_assigned_identities.create_or_update(
        GROUP, "id-shared-" + cmk_key.name[-6:], Identity(location="westeurope"))
    server = make_mysql(sdk)
    job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                 resource_id=server.id, actor=admin, identity_id=identity.id)
    assert job.status == Job.Status.SUCCEEDED, job.error
    enc = sdk["mysql"].servers.get(GROUP, server.name).data_encryption
    assert (enc.type, enc.primary_key_uri, enc.primary_user_assigned_identity_id) == (
        "AzureKeyVault", f"{hsm.uri.rstrip('/')}/keys/{cmk_key.name}", identity.id)
    assert CmkBinding.objects.get(resource_id=server.id).identity_created is False


def assert_nothing_left(sdk, account, job, *, hsm="primary"):
    """The resource as it was, no identity the wizard made, no role assignment."""
    after = sdk["storage"].storage_accounts.get_properties(GROUP, account.name)
    assert after.encryption.key_source == "Microsoft.Storage"
    assert not (after.identity and after.identity.user_assigned_identities)
    assert wizard_identity(sdk, account.name) is None
    principal = next(line["text"] for line in job.log if "Created identity" in line["text"])
    principal = principal.split("principal id ")[1].rstrip(").")
    assert assignments_for(sdk, principal, hsm) == []
    binding = CmkBinding.objects.get(resource_id=account.id)
    assert binding.status == "failed" and binding.role_assignment == ""


def test_no_purge_protection_is_explained_and_undone(
        secondary_hsm, admin, key_name, storage_account, sdk, django_capture_on_commit_callbacks):
    from keys_app import services as key_services
    from keys_app.spec import spec_build

    key = key_services.key_create(hsm=secondary_hsm, spec=spec_build(
        name=key_name, kty="RSA-HSM", key_size=2048, tags={"owner": "payments"},
        key_ops=["wrapKey", "unwrapKey"]), actor=admin, request_id="r")
    job = attach(django_capture_on_commit_callbacks, hsm=secondary_hsm, key=key.name,
                 resource_id=storage_account.id, actor=admin)
    assert job.status == Job.Status.FAILED
    assert "does not have purge protection on" in job.error and "Turn it on" in job.error
    assert_nothing_left(sdk, storage_account, job, hsm="secondary")
    failed = AuditEvent.objects.filter(action="cmk.attach", outcome="failed").get()
    assert failed.detail["error"] == "cmk_purge_protection" and failed.detail["undone"] is True
    assert AuditEvent.objects.filter(action="role_assignment.delete", outcome="succeeded").exists()
    assert AuditEvent.objects.filter(action="cmk.identity_delete", outcome="succeeded").exists()


def test_missing_role_is_explained_and_undone(hsm, admin, cmk_key, storage_account, sdk,
                                              django_capture_on_commit_callbacks):
    # Not granting: the storage service itself refuses the identity (its real check).
    job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                 resource_id=storage_account.id, actor=admin, grant=False)
    assert job.status == Job.Status.FAILED
    assert "has no role that lets it wrap and unwrap" in job.error
    assert "Crypto Service Encryption User at /keys/" + cmk_key.name in job.error
    assert_nothing_left(sdk, storage_account, job)


def test_disabled_key_is_explained_and_undone(hsm, admin, cmk_key, storage_account, sdk,
                                              django_capture_on_commit_callbacks):
    sdk["keys"].update_key_properties(cmk_key.name, enabled=False)
    job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                 resource_id=storage_account.id, actor=admin)
    assert job.status == Job.Status.FAILED
    assert f"Key {cmk_key.name} is disabled: enable it" in job.error
    assert_nothing_left(sdk, storage_account, job)


def test_wrong_key_operations_are_explained_and_undone(
        hsm, admin, key_name, storage_account, sdk, django_capture_on_commit_callbacks):
    from keys_app import services as key_services
    from keys_app.spec import spec_build

    key = key_services.key_create(hsm=hsm, spec=spec_build(
        name=key_name, kty="RSA-HSM", key_size=2048, tags={"owner": "payments"},
        key_ops=["sign", "verify"]), actor=admin, request_id="r")
    job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=key.name,
                 resource_id=storage_account.id, actor=admin)
    assert job.status == Job.Status.FAILED
    assert "does not allow wrapKey and unwrapKey" in job.error
    assert_nothing_left(sdk, storage_account, job)


def test_a_resource_being_attached_is_refused_a_second_time(
        hsm, admin, cmk_key, storage_account, django_capture_on_commit_callbacks):
    from portal.errors import Conflict

    with django_capture_on_commit_callbacks(execute=False):
        services.cmk_attach_start(hsm=hsm, key_name=cmk_key.name, resource_id=storage_account.id,
                                  actor=admin, request_id="r1")
    with pytest.raises(Conflict, match="being changed by job"):
        services.cmk_attach_start(hsm=hsm, key_name=cmk_key.name,
                                  resource_id=storage_account.id, actor=admin, request_id="r2")


def test_a_grant_the_hsm_refuses_is_explained_and_the_identity_undone(
        hsm, admin, cmk_key, storage_account, sdk, emulator, django_capture_on_commit_callbacks):
    emulator.fail("PUT", "*/providers/Microsoft.Authorization/roleAssignments/*", status=403)
    try:
        job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                     resource_id=storage_account.id, actor=admin)
    finally:
        emulator.clear_faults()
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("The portal could not grant Managed HSM Crypto Service "
                                f"Encryption User at /keys/{cmk_key.name}")
    assert "Grant it yourself, or ask an HSM administrator" in job.error
    assert_nothing_left(sdk, storage_account, job)
    grant = AuditEvent.objects.filter(action="role_assignment.create").order_by("seq")
    assert list(grant.values_list("outcome", flat=True))[-2:] == ["intent", "failed"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_attaches_of_one_resource_start_one_job(hsm, admin, cmk_key, storage_account):
    from portal.errors import Conflict
    from tests.support.race import at_once

    # The one job's message goes to the test broker; no worker runs here, the rows count.
    results = at_once([lambda: services.cmk_attach_start(
        hsm=hsm, key_name=cmk_key.name, resource_id=storage_account.id, actor=admin,
        request_id="r")] * 6, timeout=30)
    jobs = [r for r in results if isinstance(r, Job)]
    assert all(isinstance(r, (Job, Conflict)) for r in results) and len(jobs) == 1
    assert Job.objects.filter(kind="cmk.attach", params__resource_id=storage_account.id).count() == 1
    assert CmkBinding.objects.filter(resource_id=storage_account.id).count() == 1
