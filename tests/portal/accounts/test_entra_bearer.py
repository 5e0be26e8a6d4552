"""The API accepts Entra ID bearer tokens of automation applications (client credentials,
app roles on the portal's API) beside API tokens; PyJWT refuses every forged one."""
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from rest_framework.test import APIClient

from portal.accounts.models import DirectoryIdentity
from portal.audit.models import AuditEvent


@pytest.fixture
def bot(emulator, portal_app):
    """A client-credentials application holding the auditor app role on the portal's API."""
    return emulator.create_principal(f"bot-{uuid.uuid4().hex[:6]}",
                                     roles={portal_app["client_id"]: ["auditor"]})


def _token(emulator, bot, portal_app) -> str:
    return emulator.credential(bot).get_token(f"api://{portal_app['client_id']}/.default").token


def _call(token: str, method: str = "get", path: str = "/api/v1/jobs/"):
    client = APIClient()
    return getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {token}", format="json")


def test_an_application_token_signs_the_app_in_with_its_app_roles(entra_settings, emulator, bot,
                                                                   portal_app):
    response = _call(_token(emulator, bot, portal_app))
    assert response.status_code == 200, response.content[:300]
    identity = DirectoryIdentity.objects.get(object_id=bot["object_id"])
    assert identity.user.username == f"app-{bot['client_id']}"
    assert list(identity.user.groups.values_list("name", flat=True)) == ["auditor"]
    created = AuditEvent.objects.get(action="user.create")
    assert created.detail["kind"] == "service_principal"
    # Auditor: reads, but may not register an HSM.
    assert _call(_token(emulator, bot, portal_app), "post", "/api/v1/hsms/").status_code == 403
    # The role taken away at the directory: the next token carries none and is refused.
    emulator.assign_app_role(bot["client_id"], portal_app["client_id"], "auditor", remove=True)
    refused = _call(_token(emulator, bot, portal_app))
    assert refused.status_code == 401
    assert list(identity.user.groups.values_list("name", flat=True)) == []
    assert DirectoryIdentity.objects.filter(object_id=bot["object_id"]).count() == 1


def _genuine_claims(emulator, bot, portal_app) -> dict:
    return jwt.decode(_token(emulator, bot, portal_app), options={"verify_signature": False})


@pytest.mark.parametrize("change,reason", [
    ({"aud": "api://another-app"}, "audience"),
    ({"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"}, "issuer"),
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200,
      "nbf": int(time.time()) - 7200}, "expired"),
])
def test_tokens_signed_by_the_authority_but_wrong_are_refused(entra_settings, emulator, bot,
                                                              portal_app, change, reason):
    claims = {**_genuine_claims(emulator, bot, portal_app), **change}
    token = emulator.mint_token(claims, principal=bot)
    response = _call(token)
    assert response.status_code == 401
    assert f"({reason})" in response.json()["error"]["message"]
    assert not DirectoryIdentity.objects.filter(object_id=bot["object_id"]).exists()


def test_an_unsigned_token_alg_none_is_refused(entra_settings, emulator, bot, portal_app):
    claims = _genuine_claims(emulator, bot, portal_app)
    header = jwt.get_unverified_header(_token(emulator, bot, portal_app))
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"]})
    response = _call(token)
    assert response.status_code == 401
    assert not DirectoryIdentity.objects.filter(object_id=bot["object_id"]).exists()


def test_a_token_signed_by_another_key_is_refused(entra_settings, emulator, bot, portal_app):
    """Same claims, same kid as the authority's key, but signed by a key it never published."""
    genuine = _token(emulator, bot, portal_app)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(jwt.decode(genuine, options={"verify_signature": False}), forger,
                       algorithm="RS256", headers={"kid": jwt.get_unverified_header(genuine)["kid"]})
    response = _call(token)
    assert response.status_code == 401
    assert "(signature)" in response.json()["error"]["message"]
    assert not DirectoryIdentity.objects.filter(object_id=bot["object_id"]).exists()


def test_an_hs256_token_keyed_with_the_public_key_is_refused(entra_settings, emulator, bot,
                                                             portal_app):
    """The algorithm-confusion forgery (HMAC keyed with the authority's public key, which
    anyone can fetch): only RS256 passes."""
    import base64
    import hashlib
    import hmac
    import json

    from cryptography.hazmat.primitives import serialization

    from portal.accounts import entra

    genuine = _token(emulator, bot, portal_app)
    public = entra.jwk_client().get_signing_key_from_jwt(genuine).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", "kid": jwt.get_unverified_header(genuine)["kid"]}
    claims = jwt.decode(genuine, options={"verify_signature": False})
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    response = _call(f"{signing_input}.{b64(signature)}")
    assert response.status_code == 401
    assert "(algorithm)" in response.json()["error"]["message"]
    assert not DirectoryIdentity.objects.filter(object_id=bot["object_id"]).exists()


def test_bearer_tokens_are_refused_when_entra_is_not_configured(db, settings, emulator, bot,
                                                                portal_app):
    settings.ENTRA_CLIENT_ID = ""
    token = emulator.credential(bot).get_token(f"api://{portal_app['client_id']}/.default").token
    response = _call(token)
    assert response.status_code == 401
    assert "does not accept Entra ID bearer tokens" in response.json()["error"]["message"]


def test_a_token_of_another_tenant_is_refused(entra_settings, emulator, bot, portal_app):
    """Signed by the authority with the tenant's issuer, but naming another tenant."""
    claims = {**_genuine_claims(emulator, bot, portal_app),
              "tid": "00000000-0000-0000-0000-00000000beef"}
    response = _call(emulator.mint_token(claims, principal=bot))
    assert response.status_code == 401
    assert "from another tenant" in response.json()["error"]["message"]
    assert not DirectoryIdentity.objects.filter(object_id=bot["object_id"]).exists()
