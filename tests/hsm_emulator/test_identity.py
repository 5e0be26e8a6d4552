"""The token authority, through azure-identity (sync and async) and its test controls."""

import ssl

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential

HSM_SCOPE = "https://managedhsm.azure.net/.default"


def _claims(emulator, token: str) -> dict:
    """Verify a token against the published JWKS, as a resource server would."""
    tenant = emulator.endpoints["tenant_id"]
    config = httpx.get(f"{emulator.endpoints['authority']}/{tenant}/v2.0/.well-known/openid-configuration",
                       verify=ssl.create_default_context(cafile=emulator.ca_bundle)).json()
    jwks = httpx.get(config["jwks_uri"], verify=ssl.create_default_context(cafile=emulator.ca_bundle)).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    return jwt.decode(token, key, algorithms=["RS256"], audience="https://managedhsm.azure.net",
                      issuer=f"https://sts.windows.net/{tenant}/")


def test_client_secret_credential_gets_a_signed_token_with_entra_claims(emulator):
    token = emulator.credential().get_token(HSM_SCOPE)
    claims = _claims(emulator, token.token)
    admin = emulator.endpoints["principals"]["bootstrap-admin"]
    assert claims["oid"] == admin["object_id"] == claims["sub"]
    assert claims["appid"] == admin["client_id"]
    assert claims["tid"] == emulator.endpoints["tenant_id"]
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    assert jwt.get_unverified_header(token.token)["alg"] == "RS256"


# What Azure tooling asks for (the scope) and the audience Entra puts in the token: the
# resource as named, so "<resource>//.default" (the Azure CLI's ARM scope) keeps one slash.
SCOPES = [
    ("https://management.core.windows.net//.default", "https://management.core.windows.net/"),
    ("https://management.core.windows.net/.default", "https://management.core.windows.net"),
    ("https://management.azure.com//.default", "https://management.azure.com/"),
    ("https://management.azure.com/.default", "https://management.azure.com"),
    ("https://managedhsm.azure.net/.default", "https://managedhsm.azure.net"),
    ("https://managedhsm.azure.net//.default", "https://managedhsm.azure.net/"),
    ("https://vault.azure.net/.default", "https://vault.azure.net"),
    ("https://storage.azure.com/.default", "https://storage.azure.com"),
    ("https://graph.microsoft.com/.default", "https://graph.microsoft.com"),
    ("https://graph.microsoft.com//.default", "https://graph.microsoft.com/"),
]


@pytest.mark.parametrize(("scope", "audience"), SCOPES)
def test_tokens_for_every_resource_azure_tooling_asks_for(emulator, scope, audience):
    token = emulator.credential().get_token(scope)
    assert jwt.decode(token.token, options={"verify_signature": False})["aud"] == audience


@pytest.mark.parametrize("resource", ["https://management.core.windows.net/", "https://graph.microsoft.com",
                                      "https://managedhsm.azure.net"])
def test_v1_token_requests_name_the_resource(emulator, resource):
    admin = emulator.endpoints["principals"]["bootstrap-admin"]
    response = httpx.post(f"{emulator.endpoints['authority']}/{emulator.endpoints['tenant_id']}/oauth2/token",
                          data={"grant_type": "client_credentials", "client_id": admin["client_id"],
                                "client_secret": admin["client_secret"], "resource": resource},
                          verify=ssl.create_default_context(cafile=emulator.ca_bundle))
    assert response.status_code == 200, response.text
    assert jwt.decode(response.json()["access_token"], options={"verify_signature": False})["aud"] == resource


def test_hsm_accepts_a_token_asked_for_with_the_double_slash_scope(emulator):
    from azure.keyvault.keys import KeyClient

    class DoubleSlash:
        def get_token(self, *scopes, **kwargs):
            return emulator.credential().get_token("https://managedhsm.azure.net//.default")

    keys = KeyClient(emulator.hsm_url(), DoubleSlash(), **emulator.client_options())
    assert isinstance(list(keys.list_properties_of_keys()), list)


@pytest.mark.asyncio
async def test_async_credential_gets_a_token(emulator):
    async with emulator.async_credential() as credential:
        token = await credential.get_token(HSM_SCOPE)
    assert _claims(emulator, token.token)["tid"] == emulator.endpoints["tenant_id"]


def test_wrong_secret_is_refused(emulator):
    admin = emulator.endpoints["principals"]["bootstrap-admin"]
    credential = ClientSecretCredential(emulator.endpoints["tenant_id"], admin["client_id"], "not-the-secret",
                                        authority=emulator.endpoints["authority"], disable_instance_discovery=True,
                                        connection_verify=ssl.create_default_context(cafile=emulator.ca_bundle))
    with pytest.raises(ClientAuthenticationError):
        credential.get_token(HSM_SCOPE)


@pytest.mark.parametrize("scope", ["https://graph.example.org/.default", "https://management.core.windows.net///.default",
                                   "https://vault.azure.net/keys/.default", "https://storage.azure.com"])
def test_unknown_scope_is_refused(emulator, scope):
    with pytest.raises(ClientAuthenticationError):
        emulator.credential().get_token(scope)


def test_created_principal_gets_tokens_and_is_listed_without_secret(emulator):
    principal = emulator.create_principal("portal-worker")
    token = emulator.credential(principal).get_token(HSM_SCOPE)
    assert _claims(emulator, token.token)["oid"] == principal["object_id"]
    listed = {p["client_id"]: p for p in emulator.list_principals()}
    assert listed[principal["client_id"]] == {"client_id": principal["client_id"],
                                              "object_id": principal["object_id"],
                                              "display_name": "portal-worker",
                                              "redirect_uris": [], "app_roles": [],
                                              "identifier_uris": [f"api://{principal['client_id']}"],
                                              "assignment_required": False}


def test_endpoints_document_is_complete(emulator):
    endpoints = emulator.endpoints
    assert set(endpoints["hsms"]) == {"primary", "secondary"}
    assert endpoints["authority"].startswith("https://127.0.0.1:")
    assert endpoints["graph"].startswith("https://127.0.0.1:") and endpoints["graph"] != endpoints["authority"]
    assert endpoints["ca_bundle"].endswith("ca.pem")
    assert emulator.health("secondary") == {"status": "ok", "hsm": "secondary"}
