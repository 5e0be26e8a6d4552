"""User sign-in at the emulator's authority, driven by msal as the portal drives it.

msal's ConfidentialClientApplication starts the authorization-code flow with PKCE
(``initiate_auth_code_flow``), httpx plays the browser (it fetches the sign-in page and
posts the form), and msal redeems the code (``acquire_token_by_auth_code_flow``),
checking state, nonce, issuer, audience and ``auth_time`` itself. The ID token is also
verified with PyJWT against the JWKS named by the discovery document, as a relying
party would.
"""

import base64
import hashlib
import re
import secrets
import ssl
import threading
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import jwt
import msal
import pytest
import requests

# msal suggests response_mode=form_post; these tests use query on purpose (a form post from
# the authority is a cross-site POST, which SameSite session cookies do not accompany).
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended:UserWarning")

REDIRECT_URI = "http://localhost:8000/accounts/callback/"
ROLES = ["admin", "approver", "auditor"]


@pytest.fixture(scope="module")
def tls(emulator):
    return ssl.create_default_context(cafile=emulator.ca_bundle)


@pytest.fixture(scope="module")
def portal_app(emulator):
    """The portal's app registration: a redirect URI and the three app roles."""
    return emulator.create_principal(f"portal-{uuid.uuid4().hex[:6]}", redirect_uris=[REDIRECT_URI],
                                     app_roles=ROLES)


@pytest.fixture
def user(emulator, portal_app):
    return emulator.create_user(f"u{uuid.uuid4().hex[:8]}@contoso.test", roles={portal_app["client_id"]: ["admin"]},
                                display_name="Ada Admin", password="correct horse battery")


@pytest.fixture
def msal_app(emulator, portal_app):
    # msal's own verify= loses to REQUESTS_CA_BUNDLE in the environment (requests merges
    # the environment over the session): a session that ignores the environment keeps it.
    session = requests.Session()
    session.trust_env = False
    session.verify = emulator.ca_bundle
    return msal.ConfidentialClientApplication(
        portal_app["client_id"], client_credential=portal_app["client_secret"],
        authority=f"{emulator.endpoints['authority']}/{emulator.endpoints['tenant_id']}",
        instance_discovery=False, http_client=session)


@pytest.fixture
def browser(tls):
    """An httpx client standing in for the browser: keeps the authority's cookie, no auto-redirects."""
    with httpx.Client(verify=tls, follow_redirects=False, timeout=30) as client:
        yield client


def _sign_in_form(page: httpx.Response) -> tuple[str, str]:
    """(form action, ctx) of the sign-in page."""
    assert page.status_code == 200, page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    ctx = re.search(r'name="ctx" value="([^"]+)"', page.text).group(1)
    return action, ctx


def _sign_in(browser, emulator, auth_uri: str, username: str, password: str) -> httpx.Response:
    """Open the authorize URL, fill in the form, post it; the authority's answer."""
    page = browser.get(auth_uri)
    action, ctx = _sign_in_form(page)
    return browser.post(emulator.endpoints["authority"] + action,
                        data={"ctx": ctx, "username": username, "password": password})


def _callback(response: httpx.Response) -> dict:
    """The query the authority sends the browser back to the application with."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    return dict(parse_qsl(urlsplit(location).query))


def _verified_id_token(emulator, tls, token: str, audience: str) -> dict:
    authority, tenant = emulator.endpoints["authority"], emulator.endpoints["tenant_id"]
    config = httpx.get(f"{authority}/{tenant}/v2.0/.well-known/openid-configuration", verify=tls).json()
    key = jwt.PyJWKClient(config["jwks_uri"], ssl_context=tls).get_signing_key_from_jwt(token).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=config["issuer"],
                      options={"require": ["exp", "iat", "nbf", "aud", "iss", "sub"]})


def test_msal_auth_code_flow_with_pkce_signs_a_user_in_with_app_roles(emulator, tls, portal_app, user, msal_app,
                                                                      browser):
    flow = msal_app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI)
    query = dict(parse_qsl(urlsplit(flow["auth_uri"]).query))
    assert query["code_challenge_method"] == "S256" and query["nonce"]

    answer = _callback(_sign_in(browser, emulator, flow["auth_uri"], user["user_principal_name"],
                                "correct horse battery"))
    assert answer["state"] == flow["state"]
    result = msal_app.acquire_token_by_auth_code_flow(flow, answer)

    assert "error" not in result, result
    claims = result["id_token_claims"]
    assert claims["oid"] == user["object_id"]
    assert claims["tid"] == emulator.endpoints["tenant_id"]
    assert claims["preferred_username"] == user["user_principal_name"]
    assert claims["name"] == "Ada Admin"
    assert claims["roles"] == ["admin"]
    assert claims["ver"] == "2.0"
    verified = _verified_id_token(emulator, tls, result["id_token"], portal_app["client_id"])
    assert verified["iss"] == f"{emulator.endpoints['authority']}/{emulator.endpoints['tenant_id']}/v2.0"
    assert verified["aud"] == portal_app["client_id"]
    assert verified["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()  # msal sends the hash
    assert verified["nbf"] <= verified["iat"] < verified["exp"]
    assert abs(verified["auth_time"] - verified["iat"]) < 60
    assert jwt.get_unverified_header(result["id_token"])["alg"] == "RS256"
    assert msal_app.get_accounts()[0]["local_account_id"] == user["object_id"]


def test_the_discovery_document_names_the_authorize_endpoint(emulator, tls):
    authority, tenant = emulator.endpoints["authority"], emulator.endpoints["tenant_id"]
    config = httpx.get(f"{authority}/{tenant}/v2.0/.well-known/openid-configuration", verify=tls).json()
    assert config["authorization_endpoint"] == f"{authority}/{tenant}/oauth2/v2.0/authorize"
    assert config["issuer"] == f"{authority}/{tenant}/v2.0"
    assert httpx.get(config["jwks_uri"], verify=tls).json()["keys"][0]["kty"] == "RSA"


def test_a_replayed_authorization_code_is_refused(emulator, portal_app, user, msal_app, browser):
    flow = msal_app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI)
    answer = _callback(_sign_in(browser, emulator, flow["auth_uri"], user["user_principal_name"],
                                "correct horse battery"))
    assert "id_token" in msal_app.acquire_token_by_auth_code_flow(flow, answer)

    replay = _redeem(emulator, browser, portal_app, answer["code"], flow["code_verifier"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert replay.json()["error_codes"] == [54005]


def _redeem(emulator, browser, app, code: str, verifier: str, redirect_uri: str = REDIRECT_URI) -> httpx.Response:
    authority, tenant = emulator.endpoints["authority"], emulator.endpoints["tenant_id"]
    return browser.post(f"{authority}/{tenant}/oauth2/v2.0/token", data={
        "grant_type": "authorization_code", "client_id": app["client_id"], "client_secret": app["client_secret"],
        "code": code, "code_verifier": verifier, "redirect_uri": redirect_uri, "scope": "openid profile"})


def _authorize_url(emulator, app, challenge: str, **extra) -> str:
    authority, tenant = emulator.endpoints["authority"], emulator.endpoints["tenant_id"]
    params = {"client_id": app["client_id"], "response_type": "code", "redirect_uri": REDIRECT_URI,
              "scope": "openid profile", "state": "s1", "nonce": "n1", "code_challenge": challenge,
              "code_challenge_method": "S256", **extra}
    return f"{authority}/{tenant}/oauth2/v2.0/authorize?{urlencode(params)}"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def test_the_code_verifier_and_redirect_uri_are_checked_and_a_failed_redemption_spends_the_code(
        emulator, portal_app, user, browser):
    verifier, challenge = _pkce()
    answer = _callback(_sign_in(browser, emulator, _authorize_url(emulator, portal_app, challenge),
                                user["user_principal_name"], "correct horse battery"))
    assert answer == {"code": answer["code"], "state": "s1", "session_state": answer["session_state"]}
    wrong = _redeem(emulator, browser, portal_app, answer["code"], secrets.token_urlsafe(48))
    assert (wrong.status_code, wrong.json()["error_codes"]) == (400, [501481])
    assert _redeem(emulator, browser, portal_app, answer["code"], verifier).json()["error_codes"] == [54005]

    # Single sign-on: the browser's session at the authority answers with a code at once.
    again = _callback(browser.get(_authorize_url(emulator, portal_app, challenge)))
    moved = _redeem(emulator, browser, portal_app, again["code"], verifier, redirect_uri="http://localhost:9/other")
    assert (moved.status_code, moved.json()["error"]) == (400, "invalid_grant")

    sso = _callback(browser.get(_authorize_url(emulator, portal_app, challenge)))
    tokens = _redeem(emulator, browser, portal_app, sso["code"], verifier).json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert (claims["nonce"], claims["oid"]) == ("n1", user["object_id"])


def test_prompt_login_and_max_age_make_the_user_sign_in_again(emulator, portal_app, user, msal_app, browser):
    _, challenge = _pkce()
    first = _callback(_sign_in(browser, emulator, _authorize_url(emulator, portal_app, challenge),
                               user["user_principal_name"], "correct horse battery"))
    assert first["code"]
    # Signed in at the authority: no page, unless prompt=login, or the sign-in is older than max_age.
    assert browser.get(_authorize_url(emulator, portal_app, challenge, max_age=900)).status_code == 302
    assert 'name="password"' in browser.get(_authorize_url(emulator, portal_app, challenge, prompt="login")).text
    assert emulator.age_sign_ins(1000, user["object_id"]) >= 1
    stale = browser.get(_authorize_url(emulator, portal_app, challenge, max_age=900))
    assert stale.status_code == 200 and 'name="password"' in stale.text
    silent = _callback(browser.get(_authorize_url(emulator, portal_app, challenge, max_age=900, prompt="none")))
    assert silent["error"] == "login_required" and silent["state"] == "s1"

    # msal checks auth_time against max_age itself: a fresh sign-in passes.
    flow = msal_app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI, max_age=900)
    answer = _callback(_sign_in(browser, emulator, flow["auth_uri"], user["user_principal_name"],
                                "correct horse battery"))
    result = msal_app.acquire_token_by_auth_code_flow(flow, answer)
    assert "error" not in result, result
    assert result["id_token_claims"]["auth_time"] >= result["id_token_claims"]["iat"] - 60


def test_a_wrong_password_shows_the_page_again_with_the_reason(emulator, portal_app, user, browser):
    _, challenge = _pkce()
    answer = _sign_in(browser, emulator, _authorize_url(emulator, portal_app, challenge),
                      user["user_principal_name"], "wrong password!")
    assert answer.status_code == 200
    assert 'role="alert"' in answer.text and "Your account or password is incorrect." in answer.text
    assert "hsm_emulator_auth" not in browser.cookies
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")


def test_unknown_clients_and_unregistered_redirect_uris_get_an_error_page_not_a_redirect(emulator, portal_app,
                                                                                        browser):
    _, challenge = _pkce()
    other = browser.get(_authorize_url(emulator, portal_app, challenge, redirect_uri="https://evil.example/cb"))
    assert other.status_code == 400 and "AADSTS50011" in other.text
    unknown = browser.get(_authorize_url(emulator, {"client_id": str(uuid.uuid4())}, challenge))
    assert unknown.status_code == 400 and "AADSTS700016" in unknown.text
    plain = _callback(browser.get(_authorize_url(emulator, portal_app, challenge, code_challenge_method="plain")))
    assert plain["error"] == "invalid_request"


def test_groups_appear_in_the_id_token(emulator, portal_app, msal_app, browser):
    person = emulator.create_user(f"g{uuid.uuid4().hex[:8]}@contoso.test", password="correct horse battery",
                                  roles={portal_app["client_id"]: ["approver", "auditor"]})
    group = emulator.create_group("HSM approvers", members=(person["object_id"],))
    flow = msal_app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI)
    answer = _callback(_sign_in(browser, emulator, flow["auth_uri"], person["user_principal_name"],
                                "correct horse battery"))
    claims = msal_app.acquire_token_by_auth_code_flow(flow, answer)["id_token_claims"]
    assert claims["groups"] == [group["object_id"]]
    assert sorted(claims["roles"]) == ["approver", "auditor"]


def test_assignment_required_refuses_users_without_a_role(emulator, browser):
    app = emulator.create_principal("strict", redirect_uris=[REDIRECT_URI], app_roles=ROLES,
                                    assignment_required=True)
    person = emulator.create_user(f"n{uuid.uuid4().hex[:8]}@contoso.test", password="correct horse battery")
    _, challenge = _pkce()
    answer = _callback(_sign_in(browser, emulator, _authorize_url(emulator, app, challenge),
                                person["user_principal_name"], "correct horse battery"))
    assert answer["error"] == "access_denied" and "AADSTS50105" in answer["error_description"]


def test_client_credentials_tokens_for_the_portal_api_carry_the_apps_roles(emulator, portal_app):
    automation = emulator.create_principal(f"automation-{uuid.uuid4().hex[:6]}")
    assert emulator.assign_app_role(automation["client_id"], portal_app["client_id"], "auditor")["roles"] == [
        "auditor"]
    credential = emulator.credential(automation)
    token = credential.get_token(f"api://{portal_app['client_id']}/.default").token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == f"api://{portal_app['client_id']}"
    assert claims["roles"] == ["auditor"]
    assert claims["oid"] == automation["object_id"] and claims["idtyp"] == "app"
    by_client_id = credential.get_token(f"{portal_app['client_id']}/.default").token
    assert jwt.decode(by_client_id, options={"verify_signature": False})["aud"] == portal_app["client_id"]

    emulator.assign_app_role(automation["object_id"], portal_app["client_id"], "auditor", remove=True)
    fresh = emulator.credential(automation).get_token(f"api://{portal_app['client_id']}/.default").token
    assert "roles" not in jwt.decode(fresh, options={"verify_signature": False})


def test_identity_controls_need_the_control_secret_and_check_what_they_are_given(emulator, portal_app, tls):
    authority = emulator.endpoints["authority"]
    assert httpx.post(f"{authority}/_emulator/users", json={"user_principal_name": "x@y.z"},
                      verify=tls).status_code == 401
    from tests.support.emulator import EmulatorError
    with pytest.raises(EmulatorError, match="has no app role owner"):
        emulator.create_user("bad@contoso.test", roles={portal_app["client_id"]: ["owner"]})
    with pytest.raises(EmulatorError, match="409"):
        upn = f"twice{uuid.uuid4().hex[:6]}@contoso.test"
        emulator.create_user(upn)
        emulator.create_user(upn.upper())
    with pytest.raises(EmulatorError, match="must be https"):
        emulator.create_principal("web", redirect_uris=["http://portal.example/cb"])


def test_form_post_returns_the_code_in_a_form_to_the_redirect_uri(emulator, portal_app, user, browser):
    _, challenge = _pkce()
    answer = _sign_in(browser, emulator, _authorize_url(emulator, portal_app, challenge, response_mode="form_post"),
                      user["user_principal_name"], "correct horse battery")
    assert answer.status_code == 200
    assert f'<form method="post" action="{REDIRECT_URI}">' in answer.text
    assert re.search(r'name="code" value="[^"]{40,}"', answer.text)
    assert 'name="state" value="s1"' in answer.text
    assert "form-action http://localhost:8000" in answer.headers["content-security-policy"]


def test_refresh_tokens_and_sign_out(emulator, portal_app, user, msal_app, browser):
    flow = msal_app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI)  # msal adds offline_access
    answer = _callback(_sign_in(browser, emulator, flow["auth_uri"], user["user_principal_name"],
                                "correct horse battery"))
    first = msal_app.acquire_token_by_auth_code_flow(flow, answer)
    authority, tenant = emulator.endpoints["authority"], emulator.endpoints["tenant_id"]
    refreshed = browser.post(f"{authority}/{tenant}/oauth2/v2.0/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "scope": "openid offline_access",
        "client_id": portal_app["client_id"], "client_secret": portal_app["client_secret"]})
    assert refreshed.status_code == 200
    claims = jwt.decode(refreshed.json()["id_token"], options={"verify_signature": False})
    assert claims["oid"] == user["object_id"] and claims["auth_time"] == first["id_token_claims"]["auth_time"]
    # A refresh token is used once: the answer carries its successor.
    reused = browser.post(f"{authority}/{tenant}/oauth2/v2.0/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
        "client_id": portal_app["client_id"], "client_secret": portal_app["client_secret"]})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    _, challenge = _pkce()
    assert browser.get(_authorize_url(emulator, portal_app, challenge)).status_code == 302  # signed in
    out = browser.get(f"{authority}/{tenant}/oauth2/v2.0/logout",
                      params={"post_logout_redirect_uri": "http://localhost:8000/"})
    assert (out.status_code, out.headers["location"]) == (302, "http://localhost:8000/")
    assert 'name="password"' in browser.get(_authorize_url(emulator, portal_app, challenge)).text
    elsewhere = browser.get(f"{authority}/{tenant}/oauth2/v2.0/logout",
                            params={"post_logout_redirect_uri": "https://evil.example/"})
    assert elsewhere.status_code == 200  # not a redirect to an unregistered origin


def test_users_apps_and_app_roles_survive_a_restart(tmp_path):
    from tests.support.emulator import EmulatorProcess

    durable = EmulatorProcess(tmp_path / "state", hsms=("primary",), ephemeral=False)
    with durable:
        app = durable.create_principal("portal", redirect_uris=[REDIRECT_URI], app_roles=ROLES)
        bot = durable.create_principal("bot", roles={app["client_id"]: ["auditor"]})
        group = durable.create_group("operators")
        person = durable.create_user("keep@contoso.test", password="correct horse battery",
                                     roles={app["client_id"]: ["approver"]}, groups=[group["object_id"]])
    with durable:
        session = requests.Session()
        session.trust_env = False
        session.verify = durable.ca_bundle
        restarted = msal.ConfidentialClientApplication(
            app["client_id"], client_credential=app["client_secret"],
            authority=f"{durable.endpoints['authority']}/{durable.endpoints['tenant_id']}",
            instance_discovery=False, http_client=session)
        flow = restarted.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI)
        with httpx.Client(verify=ssl.create_default_context(cafile=durable.ca_bundle)) as client:
            answer = _callback(_sign_in(client, durable, flow["auth_uri"], "keep@contoso.test",
                                        "correct horse battery"))
        claims = restarted.acquire_token_by_auth_code_flow(flow, answer)["id_token_claims"]
        assert (claims["oid"], claims["roles"], claims["groups"]) == (
            person["object_id"], ["approver"], [group["object_id"]])
        token = durable.credential(bot).get_token(f"api://{app['client_id']}/.default").token
        assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["auditor"]


@pytest.mark.parametrize(("claims", "signing", "refusal"), [
    ({"aud": "someone-else"}, "authority", jwt.InvalidAudienceError),
    ({"iss": "https://sts.windows.net/other/"}, "authority", jwt.InvalidIssuerError),
    ({"exp": 1}, "authority", jwt.ExpiredSignatureError),
    ({}, "none", jwt.InvalidAlgorithmError),
    ({}, "foreign", jwt.InvalidSignatureError),
])
def test_id_token_faults_give_the_next_id_token_a_flaw_a_relying_party_must_refuse(
        emulator, tls, portal_app, user, msal_app, browser, claims, signing, refusal):
    emulator.id_token_fault(portal_app["client_id"], claims, signing)
    flow = msal_app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI)
    answer = _callback(_sign_in(browser, emulator, flow["auth_uri"], user["user_principal_name"],
                                "correct horse battery"))
    flawed = msal_app.acquire_token_by_auth_code_flow(flow, answer)  # msal 1.39 does not verify the token
    with pytest.raises(refusal):
        _verified_id_token(emulator, tls, flawed["id_token"], portal_app["client_id"])
    # Once only: the next ID token is genuine again.
    flow = msal_app.initiate_auth_code_flow([], redirect_uri=REDIRECT_URI)
    again = msal_app.acquire_token_by_auth_code_flow(flow, _callback(browser.get(flow["auth_uri"])))
    assert _verified_id_token(emulator, tls, again["id_token"], portal_app["client_id"])["oid"] == user["object_id"]


def test_twenty_concurrent_redemptions_of_one_code_give_one_token(emulator, tls, portal_app, user, browser):
    from concurrent.futures import ThreadPoolExecutor

    verifier, challenge = _pkce()
    answer = _callback(_sign_in(browser, emulator, _authorize_url(emulator, portal_app, challenge),
                                user["user_principal_name"], "correct horse battery"))
    start = threading.Barrier(20)

    def redeem(_):
        with httpx.Client(verify=tls, timeout=30) as client:
            start.wait()
            return _redeem(emulator, client, portal_app, answer["code"], verifier)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(redeem, range(20)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 19
    assert {tuple(a.json()["error_codes"]) for a in answers if a.status_code == 400} == {(54005,)}
