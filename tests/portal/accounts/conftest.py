"""Sign-in through the emulator's authority: the portal's app registration, users per role,
and a browser stand-in (httpx) for the pages at the authority."""
import re
import ssl
import uuid
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from portal.accounts import entra

PASSWORD = "correct horse battery staple"
ROLES = ["admin", "approver", "auditor"]
CALLBACK = "http://localhost/accounts/entra/callback/"


@pytest.fixture(scope="session")
def portal_app(emulator):
    """The portal's app registration at the authority: its redirect URI and app roles."""
    return emulator.create_principal(f"mhsm-portal-{uuid.uuid4().hex[:6]}", redirect_uris=[CALLBACK],
                                     app_roles=ROLES)


@pytest.fixture
def entra_settings(db, settings, emulator, portal_app):
    """The portal's ENTRA_* settings pointing at the emulator's authority, as `make run` does."""
    settings.ENTRA_AUTHORITY = f"{emulator.endpoints['authority']}/{emulator.endpoints['tenant_id']}"
    settings.ENTRA_CLIENT_ID = portal_app["client_id"]
    settings.ENTRA_CLIENT_SECRET = portal_app["client_secret"]
    settings.ENTRA_CA_BUNDLE = emulator.ca_bundle
    settings.ENTRA_REDIRECT_URI = CALLBACK
    settings.ENTRA_API_AUDIENCE = f"api://{portal_app['client_id']}"
    yield settings
    entra._discovery.cache_clear()
    entra._jwk_client.cache_clear()


@pytest.fixture
def directory_user(emulator, portal_app):
    """Make a user at the authority holding the given portal app roles."""
    def make(*roles, groups=(), name=None):
        upn = name or f"u{uuid.uuid4().hex[:10]}@contoso.test"
        return emulator.create_user(upn, roles={portal_app["client_id"]: list(roles)},
                                    display_name=upn.split("@")[0].title(), password=PASSWORD,
                                    groups=list(groups))
    return make


@pytest.fixture
def authority_browser(emulator):
    """The browser at the authority (its own cookie jar); the Django client plays it at the portal."""
    tls = ssl.create_default_context(cafile=emulator.ca_bundle)
    with httpx.Client(verify=tls, follow_redirects=False, timeout=30) as client:
        yield client


def authority_sign_in(browser, emulator, auth_uri: str, username: str, password: str = PASSWORD) -> str:
    """Open the authority's page, post the form; return the callback URL it sends back to."""
    page = browser.get(auth_uri)
    if page.status_code == 302:  # single sign-on at the authority
        return page.headers["location"]
    assert page.status_code == 200, page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    ctx = re.search(r'name="ctx" value="([^"]+)"', page.text).group(1)
    answer = browser.post(emulator.endpoints["authority"] + action,
                          data={"ctx": ctx, "username": username, "password": password})
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def start(client, next_url: str = "") -> str:
    """Start a sign-in at the portal; return the authority URL it sends the browser to."""
    response = client.get("/accounts/entra/start/" + (f"?next={next_url}" if next_url else ""))
    assert response.status_code == 302, response.content[:300]
    return response["Location"]


def callback_path(url: str) -> str:
    assert url.startswith(CALLBACK), url
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def callback_query(url: str) -> dict:
    return dict(parse_qsl(urlsplit(url).query))


@pytest.fixture
def entra_sign_in(client, entra_settings, emulator, authority_browser):
    """Sign `client` in through the authority as `user`; the portal's answer to the callback."""
    def sign_in(user, next_url: str = "", sso: bool = False):
        if not sso:
            authority_browser.cookies.clear()  # no single sign-on from an earlier test user
        auth_uri = start(client, next_url)
        back = authority_sign_in(authority_browser, emulator, auth_uri, user["user_principal_name"])
        return client.get(callback_path(back))
    return sign_in
