"""Challenge authentication, token validation, api-version and response headers."""

import base64
import json
import time

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.keyvault.keys import KeyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import StaticTokenCredential

RECORDED_HEADERS = {
    "cache-control": "no-cache",
    "content-security-policy": "default-src 'self'",
    "content-type": "application/json; charset=utf-8",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
}


def test_probe_without_token_gets_the_challenge_before_body_validation(emulator, raw):
    response = raw("POST", "/keys/anything/create?api-version=2025-07-01",
                    headers={"Content-Type": "application/json", "Content-Length": "0"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{emulator.endpoints["tenant_id"]}", '
        'resource="https://managedhsm.azure.net"')
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    for header, value in RECORDED_HEADERS.items():
        assert response.headers[header] == value
    assert "x-ms-keyvault-region" not in response.headers


@pytest.mark.parametrize("path", ["/providers/Microsoft.Authorization/roleDefinitions", "/settings"])
def test_rbac_and_settings_probes_answer_ok(emulator, path, raw):
    response = raw("GET", path + "?api-version=2025-07-01")
    assert response.status_code == 401
    assert response.content == b"OK"
    assert "x-ms-build-version" in response.headers


def test_authenticated_response_carries_service_headers(emulator, key_client, name, raw):
    key_client.create_ec_key(name)
    token = emulator.credential().get_token("https://managedhsm.azure.net/.default").token
    response = raw("GET", f"/keys/{name}/?api-version=2025-07-01", token=token)
    assert response.status_code == 200
    for header, value in RECORDED_HEADERS.items():
        assert response.headers[header] == value
    assert response.headers["x-ms-keyvault-network-info"] == "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=Ipv4;"
    assert response.headers["x-ms-keyvault-region"]
    assert response.headers["x-ms-build-version"]
    assert int(response.headers["x-ms-server-latency"]) >= 0
    assert "date" not in response.headers and "server" not in response.headers
    # Compact JSON with sorted members, as the service serializes.
    assert response.content == json.dumps(response.json(), separators=(",", ":"), sort_keys=True).encode()


def _now():
    return int(time.time())


@pytest.mark.parametrize("claims", [
    pytest.param({"exp": _now() - 3600, "nbf": _now() - 7200, "iat": _now() - 7200}, id="expired"),
    pytest.param({"nbf": _now() + 3600, "exp": _now() + 7200}, id="not-yet-valid"),
    pytest.param({"aud": "https://vault.azure.net"}, id="wrong-audience"),
    pytest.param({"iss": "https://sts.windows.net/11111111-1111-1111-1111-111111111111/"}, id="wrong-issuer"),
    pytest.param({"tid": "11111111-1111-1111-1111-111111111111"}, id="wrong-tenant"),
    pytest.param({"oid": None}, id="no-oid"),
])
def test_invalid_tokens_are_refused_through_the_sdk(emulator, name, claims):
    forged = emulator.mint_token(claims)
    client = KeyClient(emulator.hsm_url(), StaticTokenCredential(forged), **emulator.client_options())
    with pytest.raises(ClientAuthenticationError):
        client.get_key(name)


def test_unsigned_token_is_refused(emulator, name):
    genuine = emulator.mint_token()
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    unsigned = f"{header}.{genuine.split('.')[1]}."
    client = KeyClient(emulator.hsm_url(), StaticTokenCredential(unsigned), **emulator.client_options())
    with pytest.raises(ClientAuthenticationError):
        client.get_key(name)


def test_token_signed_by_another_key_is_refused(emulator, name, raw):
    genuine = emulator.mint_token()
    claims = jwt.decode(genuine, options={"verify_signature": False})
    other_key = rsa.generate_private_key(65537, 2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers=jwt.get_unverified_header(genuine))
    client = KeyClient(emulator.hsm_url(), StaticTokenCredential(forged), **emulator.client_options())
    with pytest.raises(ClientAuthenticationError):
        client.get_key(name)
    response = raw("GET", f"/keys/{name}?api-version=2025-07-01", token=forged)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer authorization=")


@pytest.mark.parametrize("query", ["api-version=2099-01-01", "api-version=7.7", ""])
def test_unknown_or_missing_api_version_is_bad_parameter(emulator, query, raw):
    response = raw("GET", f"/keys?{query}", token=True)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadParameter"
    if query:
        version = query.split("=")[1]
        assert error["message"] == (f"The specified version ({version}) is not recognized. "
                                    "Consider using the latest supported version (2025-07-01).")


@pytest.mark.parametrize("version", ["7.6-preview.2", "7.5-preview.1", "7.4", "7.5", "7.6", "2016-10-01"])
def test_versions_other_official_clients_send_are_accepted(emulator, version, raw):
    assert raw("GET", f"/keys?api-version={version}", token=True).status_code == 200


def test_sdk_with_an_older_api_version_works(emulator, admin_credential, name):
    client = KeyClient(emulator.hsm_url(), admin_credential, api_version="7.5", **emulator.client_options())
    assert client.create_rsa_key(name).name == name


def test_unknown_route_is_not_found_after_authentication(emulator, raw):
    response = raw("GET", "/secrets/x?api-version=2025-07-01", token=True)
    assert response.status_code == 404
    assert "x-ms-keyvault-region" not in response.headers


def test_error_reaches_the_sdk_as_http_response_error_with_code(key_client):
    with pytest.raises(HttpResponseError) as info:
        key_client.create_key("bad-size", "RSA-HSM", size=1024)
    assert info.value.status_code == 400
    assert info.value.error.code == "BadParameter"
