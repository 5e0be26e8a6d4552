"""One emulator for the whole emulator suite, and SDK clients bound to it.

The ``emulator`` fixture overrides the project-wide one for these tests so that their
keys, principals and faults never meet the portal's tests.
"""

import ssl
import time
import uuid

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.administration import KeyVaultAccessControlClient, KeyVaultSettingsClient
from azure.keyvault.keys import KeyClient

from tests.support.emulator import EmulatorProcess
from tests.support.roles import DEFINITION_PREFIX, ROLE_IDS  # the emulator tests take them from here


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("hsm-emulator")).start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _clear_faults(emulator):
    yield
    emulator.clear_faults()


@pytest.fixture(scope="session")
def admin_credential(emulator):
    return emulator.credential()


@pytest.fixture(scope="session")
def key_client(emulator, admin_credential):
    return KeyClient(emulator.hsm_url(), admin_credential, **emulator.client_options())


@pytest.fixture(scope="session")
def secondary_key_client(emulator, admin_credential):
    return KeyClient(emulator.hsm_url("secondary"), admin_credential, **emulator.client_options())


@pytest.fixture(scope="session")
def access_client(emulator, admin_credential):
    return KeyVaultAccessControlClient(emulator.hsm_url(), admin_credential, **emulator.client_options())


@pytest.fixture(scope="session")
def settings_client(emulator, admin_credential):
    return KeyVaultSettingsClient(emulator.hsm_url(), admin_credential, **emulator.client_options())


@pytest.fixture
def name():
    """A key name unique to the test."""
    return f"k{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def principal_with(emulator, access_client):
    """Create a service principal holding the given built-in roles at a scope."""
    def make(*roles: str, scope: str = "/"):
        principal = emulator.create_principal(f"test-{uuid.uuid4().hex[:8]}")
        for role in roles:
            access_client.create_role_assignment(scope, DEFINITION_PREFIX + ROLE_IDS.get(role, role),
                                                 principal["object_id"])
        return principal
    return make


@pytest.fixture(scope="session")
def raw(emulator):
    """Send one HTTP request to an HSM with httpx; ``token=True`` adds a valid admin token."""
    context = ssl.create_default_context(cafile=emulator.ca_bundle)
    admin_token = emulator.mint_token()

    def send(method: str, path: str, token=None, headers=None, hsm: str = "primary", **kwargs) -> httpx.Response:
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {admin_token if token is True else token}"
        # RSA keys with an exponent OpenSSL will not generate take seconds on a loaded machine.
        kwargs.setdefault("timeout", 30)
        return httpx.request(method, emulator.hsm_url(hsm) + path, headers=headers, verify=context, **kwargs)
    return send


class StaticTokenCredential:
    """A TokenCredential that always presents the same (possibly forged) token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)
