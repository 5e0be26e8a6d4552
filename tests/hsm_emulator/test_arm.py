"""The Resource Manager endpoint: what signing in asks of it (the emulator's one subscription and
tenant), behind Resource Manager tokens. managedHSMs: test_backup_identity.py."""

import ssl

import httpx
import pytest


@pytest.fixture(scope="module")
def arm(emulator):
    context = ssl.create_default_context(cafile=emulator.ca_bundle)

    def get(path: str, token=None, api_version: str | None = "2022-12-01") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        params = {"api-version": api_version} if api_version else {}
        return httpx.get(emulator.endpoints["resource_manager"] + path, headers=headers, params=params,
                         verify=context)
    return get


@pytest.mark.parametrize("scope", ["https://management.core.windows.net//.default",
                                   "https://management.azure.com/.default"])
def test_subscriptions_and_tenants_with_either_resource_manager_token(emulator, arm, scope):
    token = emulator.credential().get_token(scope).token
    subscriptions = arm("/subscriptions", token).json()
    assert subscriptions["count"] == {"type": "Total", "value": 1}
    (subscription,) = subscriptions["value"]
    assert subscription["subscriptionId"] == emulator.endpoints["subscription_id"]
    assert subscription["tenantId"] == emulator.endpoints["tenant_id"] and subscription["state"] == "Enabled"
    (tenant,) = arm("/tenants", token).json()["value"]
    assert tenant["tenantId"] == emulator.endpoints["tenant_id"]
    assert tenant["id"] == f"/tenants/{emulator.endpoints['tenant_id']}"


def test_no_token_is_authentication_failed(arm):
    response = arm("/subscriptions")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert response.headers["www-authenticate"].startswith('Bearer authorization_uri="')


@pytest.mark.parametrize("audience", ["https://managedhsm.azure.net", "https://graph.microsoft.com"])
def test_a_token_for_another_resource_is_refused(emulator, arm, audience):
    response = arm("/subscriptions", emulator.mint_token(audience=audience))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_missing_api_version_is_a_bad_request(emulator, arm):
    token = emulator.credential().get_token("https://management.azure.com/.default").token
    response = arm("/subscriptions", token, api_version=None)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"
