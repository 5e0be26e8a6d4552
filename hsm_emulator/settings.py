"""HSM account settings (``KeyVaultSettingsClient``): list, get, update.

The live service has exactly one setting, ``AllowKeyManagementOperationsThroughARM``
(type ``boolean``, default ``"false"``); values travel as strings. Reading needs
``settings/read/action`` and writing ``settings/write/action`` (Administrator only).
An unknown name is 404 (code unverified). Values persist in the store.
"""

from __future__ import annotations

from .errors import bad_parameter, not_found
from .routing import Call, Reply, Route
from .state import Store

DEFAULTS = {"AllowKeyManagementOperationsThroughARM": "false"}


class Settings:
    """The settings of one HSM."""

    def __init__(self, store: Store, hsm_name: str) -> None:
        self._store = store
        self._scope = f"hsm:{hsm_name}"
        saved = store.load(self._scope, "setting")
        self.values = {name: saved.get(name, {}).get("value", default) for name, default in DEFAULTS.items()}

    def get(self, name: str) -> str:
        """A setting's current value; KeyError if unknown."""
        return self.values[self._canonical(name)]

    def export_state(self) -> dict:
        """The settings' values, for a full backup."""
        return dict(self.values)

    def replace_state(self, values: dict) -> None:
        """Take the settings of a full backup (unknown names are ignored)."""
        self.values = {name: str(values.get(name, default)) for name, default in DEFAULTS.items()}
        self._store.replace_kind(self._scope, "setting", {name: {"value": v} for name, v in self.values.items()})

    def _canonical(self, name: str) -> str:
        for known in self.values:
            if known.lower() == name.lower():
                return known
        raise not_found("SettingNotFound", f"Setting '{name}' was not found.")

    def _item(self, name: str) -> dict:
        return {"name": name, "type": "boolean", "value": self.values[name]}

    def routes(self) -> list[Route]:
        """Routes for ``/settings``."""
        return [
            Route("GET", r"^/settings/?$", self._list, "settings/read/action", admin_route=True),
            Route("GET", r"^/settings/(?P<name>[^/]+)$", self._get, "settings/read/action", admin_route=True),
            Route("PATCH", r"^/settings/(?P<name>[^/]+)$", self._update, "settings/write/action", admin_route=True),
        ]

    async def _list(self, call: Call) -> Reply:
        return Reply(200, {"settings": [self._item(name) for name in self.values]})

    async def _get(self, call: Call) -> Reply:
        return Reply(200, self._item(self._canonical(call.params["name"])))

    async def _update(self, call: Call) -> Reply:
        name = self._canonical(call.params["name"])
        value = call.json().get("value")
        if not isinstance(value, str) or value.lower() not in ("true", "false"):
            raise bad_parameter(f"The value of setting '{name}' must be 'true' or 'false'.")
        self.values[name] = value.lower()
        self._store.put(self._scope, "setting", name, {"value": self.values[name]})
        return Reply(200, self._item(name))
