"""Shared fixtures: personas, API clients, a real Celery worker."""
import pytest
from rest_framework.test import APIClient

from tests.factories import user_in_role


@pytest.fixture
def admin(db):
    return user_in_role("alice-admin", "admin")


@pytest.fixture
def approver(db):
    return user_in_role("bob-approver", "approver")


@pytest.fixture
def auditor(db):
    return user_in_role("carol-auditor", "auditor")


@pytest.fixture
def outsider(db):
    return user_in_role("dave-outsider", None)


@pytest.fixture
def personas(admin, approver, auditor, outsider):
    return {"admin": admin, "approver": approver, "auditor": auditor, "outsider": outsider}


@pytest.fixture
def api_client():
    """An API client; call .force_authenticate(user) or send a token."""
    return APIClient()


@pytest.fixture
def api_as(api_client):
    def _as(user):
        api_client.force_authenticate(user)
        return api_client
    return _as


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker on the test broker (Redis), in threads of this process."""
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The Managed HSM emulator, started once per test run (free ports, its own CA)."""
    from tests.support.emulator import EmulatorProcess

    process = EmulatorProcess(tmp_path_factory.mktemp("emulator")).start()
    yield process
    process.stop()


@pytest.fixture
def azure_settings(settings, emulator):
    """Point the portal's gateway at the emulator, exactly as `make run` does."""
    from portal import gateway
    from portal.gateway.emulator_config import apply_to_settings

    apply_to_settings(settings, emulator.endpoints)
    settings.AZURE_RETRY_TOTAL = 0
    yield settings
    emulator.clear_faults()
    gateway.reset_clients()


@pytest.fixture
def hsm(db, azure_settings, emulator):
    """The emulator's primary HSM, registered with the portal."""
    from portal.gateway.models import HsmInstance

    return HsmInstance.objects.create(name="primary", uri=emulator.endpoints["hsms"]["primary"],
                                      region="emulator", arm_resource_id=emulator.endpoints.get(
                                          "hsm_resource_ids", {}).get("primary", ""))


@pytest.fixture
def secondary_hsm(db, azure_settings, emulator):
    from portal.gateway.models import HsmInstance

    return HsmInstance.objects.create(name="secondary", role="secondary",
                                      uri=emulator.endpoints["hsms"]["secondary"],
                                      region="emulator", arm_resource_id=emulator.endpoints.get(
                                          "hsm_resource_ids", {}).get("secondary", ""))


@pytest.fixture
def key_name(request):
    """A key name unique to this test run (the emulator outlives each test)."""
    import uuid

    return f"k-{uuid.uuid4().hex[:12]}"
