"""Local RBAC tests: the portal's HSM is the emulator's primary, checked with the SDK."""
import uuid

import pytest
from azure.keyvault.administration import KeyVaultAccessControlClient

# The access tests take the built-in role ids from here.
from tests.support.roles import DEFINITION_PREFIX, ROLE_IDS  # noqa: F401


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
