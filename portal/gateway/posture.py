"""Resource Manager reads for compliance posture: diagnostic settings on an HSM and the
region of the backup storage account, as plain dicts. Every failure is a PortalError
(`arm_errors`), so a check can say why it could not read."""
from __future__ import annotations

from azure.core.rest import HttpRequest

from portal.gateway.arm import _hsm_parts, arm_errors
from portal.gateway.clients import arm

DIAGNOSTICS_API = "2021-05-01-preview"
AUDIT_GROUPS = {"audit", "alllogs"}


def _audit_on(logs: list[dict]) -> bool:
    for item in logs or []:
        if not item.get("enabled"):
            continue
        if (item.get("category") or "").lower() == "auditevent" or \
                (item.get("categoryGroup") or "").lower() in AUDIT_GROUPS:
            return True
    return False


def hsm_diagnostic_settings(hsm) -> list[dict]:
    """The HSM's diagnostic settings: [{name, audit_events (bool), destinations: [...]}]."""
    parts = _hsm_parts(hsm)
    client = arm("resources", parts["sub"])
    url = f"{hsm.arm_resource_id}/providers/Microsoft.Insights/diagnosticSettings"
    with arm_errors(f"reading HSM {hsm.name}'s diagnostic settings"):
        response = client.send_request(HttpRequest("GET", url, params={"api-version": DIAGNOSTICS_API}))
        response.raise_for_status()
        body = response.json()
    out = []
    for item in body.get("value", []):
        props = item.get("properties") or {}
        destinations = [props[k] for k in ("storageAccountId", "workspaceId", "eventHubAuthorizationRuleId")
                        if props.get(k)]
        out.append({"name": item.get("name", ""), "audit_events": _audit_on(props.get("logs")),
                    "destinations": destinations})
    return sorted(out, key=lambda s: s["name"])


def storage_account_location(*, subscription_id: str, name: str) -> dict | None:
    """{id, name, location} of the storage account called `name` in the subscription, or None."""
    with arm_errors(f"reading storage account {name}"):
        for account in arm("storage", subscription_id).storage_accounts.list():
            if (account.name or "").lower() == name.lower():
                return {"id": account.id, "name": account.name, "location": account.location}
    return None
