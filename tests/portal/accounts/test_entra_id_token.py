"""Refused: ID tokens with the wrong audience, wrong issuer, expired, a nonce mismatch,
`alg: none`, a bad signature. Each is the authority's real answer to the portal's real
code redemption, altered once by the emulator's ID-token fault control; the portal's
callback must refuse it, sign nobody in, create no user, and audit why."""
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY

from portal.accounts.middleware import SIGNED_IN_AT
from portal.accounts.models import DirectoryIdentity
from portal.audit.models import AuditEvent
from tests.portal.accounts.conftest import authority_sign_in, callback_path

NOW = int(time.time())


@pytest.mark.parametrize("claims,signing,reasons", [
    ({"aud": "00000000-1111-2222-3333-444444444444"}, "authority", {"audience"}),
    ({"iss": "https://login.microsoftonline.com/another-tenant/v2.0"}, "authority", {"issuer"}),
    ({"exp": NOW - 3600, "iat": NOW - 7200, "nbf": NOW - 7200}, "authority", {"expired"}),
    ({"nonce": "a-nonce-from-another-sign-in"}, "authority", {"nonce"}),
    ({"oid": None}, "authority", {"missing_claim"}),
    ({}, "none", {"algorithm", "signature"}),
    ({}, "foreign", {"signature"}),
], ids=["audience", "issuer", "expired", "nonce", "no-oid", "alg-none", "bad-signature"])
def test_a_bad_id_token_is_refused(client, entra_sign_in, directory_user, emulator, portal_app,
                                   claims, signing, reasons):
    person = directory_user("admin")
    emulator.id_token_fault(portal_app["client_id"], claims, signing=signing)
    response = entra_sign_in(person)
    assert response.status_code == 403, response.content[:300]
    assert "Sign-in refused" in response.content.decode()
    assert SESSION_KEY not in client.session
    assert not DirectoryIdentity.objects.filter(object_id=person["object_id"]).exists()
    event = AuditEvent.objects.get(action="auth.sign_in")
    assert event.outcome == AuditEvent.Outcome.DENIED and event.detail["method"] == "entra"
    assert event.detail["reason"] in reasons
    # The next, genuine, answer signs the same person in.
    assert entra_sign_in(person).status_code == 302 and SESSION_KEY in client.session


def test_step_up_sends_a_directory_user_to_sign_in_again_and_back(
        client, settings, entra_sign_in, directory_user, emulator, authority_browser):
    person = directory_user("admin")
    assert entra_sign_in(person).status_code == 302
    session = client.session
    session[SIGNED_IN_AT] = int(time.time()) - settings.PORTAL_STEP_UP_SECONDS - 60
    session.save()
    page = client.get("/accounts/reauthenticate/?next=/audit/&operation=key.purge")
    assert page.status_code == 200 and "Sign in again with Microsoft Entra ID" in page.content.decode()
    to_authority = client.get("/accounts/reauthenticate/?go=1&next=/audit/")
    assert to_authority.status_code == 302
    query = dict(parse_qsl(urlsplit(to_authority["Location"]).query))
    assert (query["prompt"], query["max_age"]) == ("login", "0")
    assert query["login_hint"] == person["user_principal_name"].lower()
    # prompt=login: the page is shown although the browser signed in at the authority before.
    back = authority_sign_in(authority_browser, emulator, to_authority["Location"],
                             person["user_principal_name"])
    done = client.get(callback_path(back))
    assert done.status_code == 302 and done["Location"] == "/audit/"
    assert time.time() - client.session[SIGNED_IN_AT] < 5
    event = AuditEvent.objects.filter(action="auth.sign_in").order_by("-seq").first()
    assert event.detail["step_up"] is True


def test_step_up_refuses_an_answer_without_a_fresh_authentication(
        client, settings, entra_sign_in, directory_user, emulator, authority_browser, portal_app):
    person = directory_user("admin")
    assert entra_sign_in(person).status_code == 302
    to_authority = client.get("/accounts/reauthenticate/?go=1&next=/audit/")
    emulator.id_token_fault(portal_app["client_id"], {"auth_time": int(time.time()) - 3600})
    back = authority_sign_in(authority_browser, emulator, to_authority["Location"],
                             person["user_principal_name"])
    refused = client.get(callback_path(back))
    assert refused.status_code == 403
    event = AuditEvent.objects.filter(action="auth.sign_in").order_by("-seq").first()
    assert (event.outcome, event.detail["reason"]) == (AuditEvent.Outcome.DENIED, "auth_time")
