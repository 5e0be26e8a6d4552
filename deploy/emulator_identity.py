"""`make run`: sign-in through the emulator's authority, as production signs in with Entra ID.

Registers the portal's application at the emulator's authority (redirect URIs for this
port on 127.0.0.1 and localhost, app roles admin / approver / auditor) and one directory
user per role (`admin@contoso.test`, ...), through the emulator's `_emulator` controls
(HTTP, with the run's control secret; the portal never imports the emulator). The
application's client id and secret are kept in var/entra-app.json (0600), so they survive
restarts as the emulator's state does; users are created once, their passwords printed
then (or taken from PORTAL_DEMO_PASSWORD_<ROLE>).

Returns the portal's ENTRA_* environment for the emulator's authority.
"""
import json
import os
import secrets
import ssl
import urllib.error
import urllib.request
from pathlib import Path

ROLES = ("admin", "approver", "auditor")
APP_NAME = "mhsm-portal (make run)"
DOMAIN = "contoso.test"


def _control(endpoints: dict, method: str, path: str, body: dict | None = None):
    context = ssl.create_default_context(cafile=endpoints["ca_bundle"])
    request = urllib.request.Request(
        endpoints["authority"] + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 "X-Emulator-Control": endpoints["control_secret"]})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _app(endpoints: dict, var: Path, redirect_uris: list[str]) -> dict:
    path = var / "entra-app.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    known = {p["client_id"] for p in _control(endpoints, "GET", "/_emulator/principals")["value"]}
    if saved.get("client_id") in known and saved.get("tenant_id") == endpoints["tenant_id"]:
        _control(endpoints, "PATCH", f"/_emulator/principals/{saved['client_id']}",
                 {"redirect_uris": redirect_uris})
        return saved
    created = _control(endpoints, "POST", "/_emulator/principals",
                       {"display_name": APP_NAME, "redirect_uris": redirect_uris,
                        "app_roles": list(ROLES)})
    saved = {"client_id": created["client_id"], "client_secret": created["client_secret"],
             "tenant_id": endpoints["tenant_id"]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(saved, handle)
    return saved


def _users(endpoints: dict, client_id: str) -> None:
    existing = {u["user_principal_name"]: u
                for u in _control(endpoints, "GET", "/_emulator/users")["value"]}
    for role in ROLES:
        upn = f"{role}@{DOMAIN}"
        if upn in existing:
            if role not in existing[upn].get("roles", {}).get(client_id, []):
                _control(endpoints, "POST", "/_emulator/app-role-assignments",
                         {"principal_id": existing[upn]["object_id"], "resource": client_id,
                          "role": role})
            print(f"Directory user {upn} (app role {role}) exists; its password is unchanged.")
            continue
        password = os.environ.get(f"PORTAL_DEMO_PASSWORD_{role.upper()}") or \
            secrets.token_urlsafe(12)
        _control(endpoints, "POST", "/_emulator/users",
                 {"user_principal_name": upn, "display_name": f"Demo {role}",
                  "password": password, "roles": {client_id: [role]}})
        print(f"Created directory user {upn} (app role {role}) with password {password}")


def entra_environment(endpoints: dict, var: Path, port: str) -> dict[str, str]:
    """Register the portal and the demo users at the emulator; the ENTRA_* variables."""
    redirect_uris = [f"http://{host}:{port}/accounts/entra/callback/"
                     for host in ("127.0.0.1", "localhost")]
    try:
        app = _app(endpoints, var, redirect_uris)
        _users(endpoints, app["client_id"])
    except (urllib.error.URLError, KeyError) as exc:
        raise RuntimeError(f"could not register the portal at the emulator's authority: {exc}")
    return {"ENTRA_AUTHORITY": f"{endpoints['authority']}/{endpoints['tenant_id']}",
            "ENTRA_CLIENT_ID": app["client_id"], "ENTRA_CLIENT_SECRET": app["client_secret"],
            "ENTRA_CA_BUNDLE": endpoints["ca_bundle"]}
