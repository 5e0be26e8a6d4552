"""The Key Vault / Managed HSM error envelope and the errors the emulator raises.

Every refusal is an ``HsmError`` carrying the HTTP status and the body
``{"error": {"code", "message", "innererror"?}}`` that the SDKs deserialize. Messages
follow the real service where it is known (see ``docs/emulator.md`` for which are
recorded and which are Key Vault shapes used for realism).
"""

from __future__ import annotations

import uuid
from typing import Optional


class HsmError(Exception):
    """A refusal answered with ``status`` and the service error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        inner: Optional[str] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def body(self) -> dict:
        """The JSON error envelope."""
        error: dict = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


def activity_id() -> str:
    """A time-based id like the ``(Activity ID: ...)`` the service appends to messages."""
    return str(uuid.uuid1())


def bad_parameter(message: str) -> HsmError:
    """400 BadParameter, the service's answer to invalid input."""
    return HsmError(400, "BadParameter", message)


def key_not_found(url: str) -> HsmError:
    """404 KeyNotFound quoting the requested object's URL, as recorded on Managed HSM."""
    return HsmError(404, "KeyNotFound", f"Key not found: {url} (Activity ID: {activity_id()})")


def not_found(code: str, message: str) -> HsmError:
    """404 with a given code."""
    return HsmError(404, code, message)


def deleted_but_recoverable(name: str) -> HsmError:
    """409 for a name held by a soft-deleted key (Key Vault's wording and inner code)."""
    return HsmError(
        409,
        "Conflict",
        f"Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
        "in this state, the key can only be recovered or purged.",
        inner="ObjectIsDeletedButRecoverable",
    )


def access_denied(action: str, scope: str) -> HsmError:
    """403 local-RBAC denial, in the wording Managed HSM uses (seen through the Azure CLI)."""
    return HsmError(403, "AccessDenied", f"Not authorized to access {action} on {scope} (Activity ID: {activity_id()})")


def key_forbidden(message: str, inner: str) -> HsmError:
    """403 Forbidden for an operation the key's own attributes refuse."""
    return HsmError(403, "Forbidden", message, inner=inner)
