"""Resource Manager: ``Microsoft.Insights/diagnosticSettings`` at the scope of a managed HSM.

Served at ``{hsmResourceId}/providers/Microsoft.Insights/diagnosticSettings[/{name}]``
(``GET`` list, ``GET``, ``PUT`` create-or-replace, ``DELETE``) and
``.../diagnosticSettingsCategories[/{name}]`` (``AuditEvent`` logs, ``AllMetrics``), the
shapes ``azure-mgmt-monitor`` and ``az monitor diagnostic-settings`` use. Settings are kept
in the state store with the HSM.

A setting needs a destination (``storageAccountId``, ``workspaceId``,
``eventHubAuthorizationRuleId`` or ``marketplacePartnerId``); ``storageAccountId`` must
name a ``Microsoft.Storage/storageAccounts`` resource of the emulated cloud. Log entries
name ``category: AuditEvent`` or ``categoryGroup: audit|allLogs``; metrics ``AllMetrics``.
As Azure Monitor refuses it, one destination may not receive the same category from two
settings of one resource (409), and a resource has at most 5 settings.

While some setting sends ``AuditEvent`` to a storage account, the HSM's audit events
(``audit.AuditTrail``) are written to the emulator's own blob storage (``storage`` in
``endpoints.json``): every emulated storage account's diagnostic logs land in that one
account, once per event however many settings name storage. Workspaces and event hubs
are kept as configured but receive nothing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .arm import ArmError, _json
from .audit import CATEGORY

if TYPE_CHECKING:  # pragma: no cover
    from .arm import ResourceManager
    from .audit import AuditWriter

TYPE = "Microsoft.Insights/diagnosticSettings"
MAX_SETTINGS = 5
_KIND = "diagnostic_setting"
_NAME = re.compile(r"^[^<>*%&:\\?+/#|]{1,260}$")
_STORAGE_ID = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                         r"Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)$", re.IGNORECASE)
_DESTINATIONS = ("storageAccountId", "workspaceId", "eventHubAuthorizationRuleId", "marketplacePartnerId")


def _audit_logged(properties: dict) -> bool:
    """Whether a setting's logs include ``AuditEvent`` (by category or category group)."""
    return any(entry.get("enabled") and (entry.get("category") == CATEGORY
                                         or (entry.get("categoryGroup") or "").lower() in ("audit", "alllogs"))
               for entry in properties.get("logs") or [])


class DiagnosticSettings:
    """The diagnostic settings of every emulated HSM, and the switch that delivers their audit events."""

    def __init__(self, rm: "ResourceManager", writer: "AuditWriter") -> None:
        self.rm = rm
        self.writer = writer
        self.hsms = rm.managed_hsms
        self._store = rm.managed_hsms._store
        self.settings: dict[str, dict[str, dict]] = {}  # hsm name -> lower setting name -> resource
        for name, hsm in self.hsms.hsms.items():
            trail = hsm.audit
            trail.resource_id = self.hsms.resource_id(name)
            trail.tenant_id = rm._authority.tenant_id
            trail.location = hsm.props.region
            trail.writer = writer
            self.settings[name] = self._store.load(f"hsm:{name}", _KIND)
            self._refresh(name)

    def routes(self) -> list[tuple[str, str, Callable]]:
        hsm = (r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.KeyVault/"
               r"managedHSMs/(?P<name>[^/]+)/providers/Microsoft\.Insights")
        one = hsm + r"/diagnosticSettings/(?P<ds>[^/]+)/?$"
        return [
            ("GET", hsm + r"/diagnosticSettings/?$", self._list),
            ("GET", one, self._get),
            ("PUT", one, self._put),
            ("DELETE", one, self._delete),
            ("GET", hsm + r"/diagnosticSettingsCategories/?$", self._categories),
            ("GET", hsm + r"/diagnosticSettingsCategories/(?P<cat>[^/]+)/?$", self._category),
        ]

    # -- state ------------------------------------------------------------------------

    def _refresh(self, name: str) -> None:
        """Deliver the HSM's audit events while some setting sends AuditEvent to a storage account."""
        self.hsms.hsms[name].audit.delivering = any(
            doc["properties"].get("storageAccountId") and _audit_logged(doc["properties"])
            for doc in self.settings[name].values())

    def _hsm(self, params: dict) -> str:
        name, _ = self.hsms._hsm(params)
        return name

    def _resource_id(self, name: str, setting: str) -> str:
        return f"{self.hsms.resource_id(name)}/providers/microsoft.insights/diagnosticSettings/{setting}"

    # -- handlers ---------------------------------------------------------------------

    async def _list(self, request: Request, params: dict) -> Response:
        name = self._hsm(params)
        return JSONResponse({"value": list(self.settings[name].values())})

    async def _get(self, request: Request, params: dict) -> Response:
        name = self._hsm(params)
        doc = self.settings[name].get(params["ds"].lower())
        if doc is None:
            raise ArmError(404, "ResourceNotFound", f"The diagnostic setting '{params['ds']}' doesn't exist.")
        return JSONResponse(doc)

    async def _put(self, request: Request, params: dict) -> Response:
        name = self._hsm(params)
        setting = params["ds"]
        if not _NAME.match(setting) or setting != setting.strip():
            raise ArmError(400, "BadRequest", f"The diagnostic setting name '{setting}' is not valid: 1 to 260 "
                                              "characters, none of <>*%&:\\?+/#| and no leading or trailing space.")
        body = await _json(request)
        properties = self._properties(body.get("properties"))
        existing = self.settings[name]
        key = setting.lower()
        if key not in existing and len(existing) >= MAX_SETTINGS:
            raise ArmError(400, "BadRequest", f"A resource can have at most {MAX_SETTINGS} diagnostic settings; "
                                              f"'{self.hsms.resource_id(name)}' has {len(existing)}.")
        categories = self._categories_of(properties)
        for other_key, other in existing.items():
            if other_key == key:
                continue
            for sink in _DESTINATIONS:
                mine, theirs = properties.get(sink), other["properties"].get(sink)
                if mine and theirs and mine.lower() == theirs.lower() and categories & self._categories_of(
                        other["properties"]):
                    raise ArmError(409, "Conflict", f"Data sink '{mine}' is already used in diagnostic setting "
                                                    f"'{other['name']}' for category '{CATEGORY}'. Data sinks can't "
                                                    "be reused in different settings on the same category for the "
                                                    "same resource.")
        doc = {"id": self._resource_id(name, setting), "name": setting, "type": TYPE, "properties": properties}
        existing[key] = doc
        self._store.put(f"hsm:{name}", _KIND, key, doc)
        self._refresh(name)
        return JSONResponse(doc)

    async def _delete(self, request: Request, params: dict) -> Response:
        name = self._hsm(params)
        key = params["ds"].lower()
        if self.settings[name].pop(key, None) is None:
            return Response(status_code=204)
        self._store.delete(f"hsm:{name}", _KIND, key)
        self._refresh(name)
        self.writer.flush_soon()
        return Response(status_code=200)

    async def _categories(self, request: Request, params: dict) -> Response:
        name = self._hsm(params)
        return JSONResponse({"value": [self._category_doc(name, c) for c in (CATEGORY, "AllMetrics")]})

    async def _category(self, request: Request, params: dict) -> Response:
        name = self._hsm(params)
        wanted = next((c for c in (CATEGORY, "AllMetrics") if c.lower() == params["cat"].lower()), None)
        if wanted is None:
            raise ArmError(404, "ResourceNotFound", f"The diagnostic settings category '{params['cat']}' is not "
                                                    "supported by Microsoft.KeyVault/managedHSMs.")
        return JSONResponse(self._category_doc(name, wanted))

    def _category_doc(self, name: str, category: str) -> dict:
        logs = category == CATEGORY
        return {"id": f"{self.hsms.resource_id(name)}/providers/microsoft.insights/diagnosticSettingsCategories/"
                      f"{category}",
                "name": category, "type": "Microsoft.Insights/diagnosticSettingsCategories",
                "properties": {"categoryType": "Logs" if logs else "Metrics",
                               "categoryGroups": ["audit", "allLogs"] if logs else []}}

    # -- validation -------------------------------------------------------------------

    @staticmethod
    def _categories_of(properties: dict) -> set[str]:
        found = {CATEGORY} if _audit_logged(properties) else set()
        if any(m.get("enabled") for m in properties.get("metrics") or []):
            found.add("AllMetrics")
        return found

    def _properties(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise ArmError(400, "InvalidRequestContent", "'properties' is required and must be an object.")
        out: dict[str, Any] = {sink: None for sink in _DESTINATIONS}
        out.update({"eventHubName": None, "serviceBusRuleId": None, "logAnalyticsDestinationType": None})
        for sink in _DESTINATIONS + ("eventHubName", "logAnalyticsDestinationType"):
            if value.get(sink) is not None:
                if not isinstance(value[sink], str) or not value[sink] or len(value[sink]) > 1024:
                    raise ArmError(400, "InvalidRequestContent", f"'{sink}' must be a non-empty string.")
                out[sink] = value[sink]
        if not any(out[sink] for sink in _DESTINATIONS):
            raise ArmError(400, "BadRequest", "At least one storage account, event hub, or log analytics workspace "
                                              "is required.")
        if out["storageAccountId"]:
            self._check_storage(out["storageAccountId"])
        out["logs"] = [self._entry(e, logs=True) for e in self._list_of(value.get("logs"), "logs")]
        out["metrics"] = [self._entry(e, logs=False) for e in self._list_of(value.get("metrics"), "metrics")]
        if not out["logs"] and not out["metrics"]:
            raise ArmError(400, "BadRequest", "At least one log category or metric category must be enabled.")
        return out

    @staticmethod
    def _list_of(value: Any, member: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > 10:
            raise ArmError(400, "InvalidRequestContent", f"'{member}' must be a list (at most 10 entries).")
        return value

    @staticmethod
    def _entry(entry: Any, logs: bool) -> dict:
        if not isinstance(entry, dict) or not isinstance(entry.get("enabled"), bool):
            raise ArmError(400, "InvalidRequestContent", "Each log or metric entry is an object with a boolean "
                                                         "'enabled'.")
        category, group = entry.get("category"), entry.get("categoryGroup")
        if logs:
            if (category is None) == (group is None):
                raise ArmError(400, "BadRequest", "A log entry names either 'category' or 'categoryGroup'.")
            if category is not None and category != CATEGORY:
                raise ArmError(400, "BadRequest", f"Category '{category}' is not supported by "
                                                  f"Microsoft.KeyVault/managedHSMs; use '{CATEGORY}'.")
            if group is not None and str(group).lower() not in ("audit", "alllogs"):
                raise ArmError(400, "BadRequest", f"Category group '{group}' is not supported; use 'audit' or "
                                                  "'allLogs'.")
            out = {"category": category, "categoryGroup": group, "enabled": entry["enabled"]}
        else:
            if category != "AllMetrics":
                raise ArmError(400, "BadRequest", f"Metric category '{category}' is not supported; use "
                                                  "'AllMetrics'.")
            out = {"category": category, "enabled": entry["enabled"], "timeGrain": None}
        retention = entry.get("retentionPolicy") or {"enabled": False, "days": 0}
        if not isinstance(retention, dict) or not isinstance(retention.get("days", 0), int) \
                or not 0 <= retention.get("days", 0) <= 365:
            raise ArmError(400, "BadRequest", "retentionPolicy.days must be 0 to 365.")
        out["retentionPolicy"] = {"enabled": bool(retention.get("enabled")), "days": retention.get("days", 0)}
        return out

    def _check_storage(self, rid: str) -> None:
        match = _STORAGE_ID.match(rid)
        if not match:
            raise ArmError(400, "LinkedInvalidPropertyId", f"Property id '{rid}' at path 'properties.storageAccountId' "
                                                           "is invalid. Expect a fully qualified resource id of a "
                                                           "storage account.")
        services = getattr(self.rm, "services", None)
        found: Optional[dict] = None
        if services is not None and match["sub"].lower() == self.rm.subscriptions.subscription_id:
            found = services.storage.get(match["rg"], match["name"])
        if found is None:
            raise ArmError(400, "ResourceNotFound", f"The storage account '{rid}' could not be found.")


def install(rm: "ResourceManager", writer: "AuditWriter") -> DiagnosticSettings:
    """Serve diagnostic settings on ``rm`` for the HSMs it serves (call after ``register``)."""
    diagnostics = DiagnosticSettings(rm, writer)
    rm._routes[:0] = [(method, re.compile(pattern, re.IGNORECASE), handler)
                      for method, pattern, handler in diagnostics.routes()]
    rm.diagnostics = diagnostics
    return diagnostics
