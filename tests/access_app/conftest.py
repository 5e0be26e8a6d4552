"""Local RBAC tests: the portal's HSM is the emulator's primary, checked with the SDK."""
import uuid

import pytest
from azure.keyvault.administration import KeyVaultAccessControlClient

ROLE_IDS = {
    "Administrator": "a290e904-7015-4bba-90c8-60543313cdb4",
    "Crypto Officer": "515eb02d-2335-4d2d-92f2-b1cbdf9c3778",
    "Crypto User": "21dbd100-6940-42c2-9190-5d6cb909625b",
    "Crypto Auditor": "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3",
}
DEFINITION_PREFIX = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"


@pytest.fixture(scope="session")
def sdk_access(emulator):
    """The HSM's access-control client as its bootstrap administrator (outside the portal)."""
    return KeyVaultAccessControlClient(emulator.hsm_url(), emulator.credential(),
                                       **emulator.client_options())


@pytest.fixture
def principal(emulator):
    """A new service principal of the emulator's directory (no roles)."""
    return emulator.create_principal(f"app-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def approver2(db):
    from tests.factories import user_in_role

    return user_in_role("erin-approver", "approver")


@pytest.fixture
def synced(hsm):
    """The HSM with its local RBAC read into the portal."""
    from access_app.services import rbac_sync

    rbac_sync(hsm=hsm)
    return hsm


def approve_and_run(approval, *approvers):
    """Approvers decide in turn; the execution job runs here (as the worker would)."""
    from portal.approvals.services import approval_decide, approval_execute

    for person in approvers:
        approval = approval_decide(approval_id=approval.pk, actor=person, decision="approve")
    assert approval.status == "approved", approval.status
    approval_execute(job_id=approval.job.pk)
    approval.refresh_from_db()
    return approval


def hsm_assignments(sdk_access, principal_id: str) -> list:
    return [a for a in sdk_access.list_role_assignments("/")
            if a.properties.principal_id == principal_id]
