"""HTTP plumbing shared by the data-plane modules: routes, calls, replies, JSON.

A data-plane module (``keys``, ``rbac``, ``settings``) exposes ``routes()`` returning
``Route`` objects; ``app.HsmApp`` matches them in order, authenticates, checks the
api-version and the caller's local-RBAC data action, then awaits the handler with a
``Call`` and sends the ``Reply`` it returns with the service's headers.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Union
from urllib.parse import parse_qsl

from .errors import bad_parameter

_encoder = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def dumps(value: Any) -> bytes:
    """Compact JSON with sorted members, as the service serializes (lengths match recordings)."""
    return _encoder.encode(value).encode("utf-8")


@dataclass
class Reply:
    """A response: status, JSON-able body (or raw bytes), extra headers."""

    status: int = 200
    body: Union[dict, list, bytes, None] = None
    headers: dict[str, str] = field(default_factory=dict)


# Key scopes a route's RBAC check walks: the key-less collection, or one named key.
def scopes_for_key(name: Optional[str]) -> tuple[str, ...]:
    """RBAC scopes that can grant an action on key ``name`` (or on the keys collection)."""
    if name is None:
        return ("/", "/keys")
    return ("/", "/keys", f"/keys/{name.lower()}")


ROOT_SCOPES = ("/",)
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def is_loopback(scope: dict) -> bool:
    """Whether an ASGI request comes from this machine (test controls are loopback-only)."""
    client = scope.get("client")
    return bool(client) and client[0] in _LOOPBACK


CONTROL_HEADER = "x-emulator-control"


def control_refusal(scope: dict, secret: str) -> Optional[tuple[int, dict]]:
    """Why a ``/_emulator`` test control call is refused (status, body), or None to serve it.

    Test controls mint tokens, create principals and change how the HSM answers, so they
    are served only on loopback and only to a caller presenting this run's control secret
    (``control_secret`` in ``endpoints.json``, readable by the emulator's user alone) in
    the ``X-Emulator-Control`` header; another local user's process has neither.
    """
    if not is_loopback(scope):
        return 403, {"error": {"code": "Forbidden", "message": "Test controls are only served on loopback."}}
    presented = next((value for name, value in scope.get("headers", ()) if name == CONTROL_HEADER.encode()), None)
    if presented is None:
        return 401, {"error": {"code": "Unauthorized", "message": "Test controls need the X-Emulator-Control "
                                                                 "header with control_secret from endpoints.json."}}
    if not hmac.compare_digest(presented, secret.encode()):
        return 403, {"error": {"code": "Forbidden", "message": "The X-Emulator-Control header does not match "
                                                              "this run's control_secret."}}
    return None


@dataclass
class Route:
    """One data-plane operation.

    ``action`` is the data action (without the ``Microsoft.KeyVault/managedHsm/``
    prefix) checked against the caller's role assignments at the scopes returned by
    ``scopes(params)``; ``None`` means the handler authorizes itself. ``admin_route``
    selects the ``OK`` challenge body the RBAC and settings routes answer with.
    """

    method: str
    pattern: str
    handler: Callable[["Call"], Awaitable[Reply]]
    action: Optional[str]
    scopes: Callable[[dict], tuple[str, ...]] = lambda params: ROOT_SCOPES
    api_version: bool = True
    admin_route: bool = False

    def __post_init__(self) -> None:
        self.regex = re.compile(self.pattern)


class Call:
    """What a handler gets: the matched parameters, query, caller and body."""

    __slots__ = ("method", "path", "params", "query_string", "_query", "oid", "body_bytes", "base_url", "client_ip")

    def __init__(self, method: str, path: str, params: dict, query_string: str, oid: str,
                 body_bytes: bytes, base_url: str, client_ip: str) -> None:
        self.method = method
        self.path = path
        self.params = params
        self.query_string = query_string
        self._query: Optional[dict[str, str]] = None
        self.oid = oid
        self.body_bytes = body_bytes
        self.base_url = base_url
        self.client_ip = client_ip

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (last value wins)."""
        if self._query is None:
            self._query = dict(parse_qsl(self.query_string, keep_blank_values=True))
        return self._query

    @property
    def url(self) -> str:
        """The requested object's absolute URL without query or trailing slash."""
        return self.base_url + self.path.rstrip("/")

    def json(self, required: bool = True) -> dict:
        """The body as a JSON object; 400 BadParameter if it is not one."""
        if not self.body_bytes:
            if required:
                raise bad_parameter("The request body is required.")
            return {}
        try:
            value = json.loads(self.body_bytes)
        except ValueError as exc:
            raise bad_parameter("The request body is not valid JSON.") from exc
        if not isinstance(value, dict):
            raise bad_parameter("The request body must be a JSON object.")
        return value
