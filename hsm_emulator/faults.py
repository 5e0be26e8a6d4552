"""Injected faults and optional service-like throttling for tests.

Faults: ``POST {hsm}/_emulator/faults`` with ``{"method", "path", "count", "status",
"retry_after", "latency_ms"}`` arms a fault; the next ``count`` requests (``-1``: until
cleared) whose method matches (``*`` or absent: any) and whose path (without query)
matches ``path`` — as a shell-style glob or, failing that, as a full-match regular
expression — are delayed by ``latency_ms`` and, if ``status`` is set, answered with that
status, the service error envelope and ``Retry-After`` when given. ``DELETE
{hsm}/_emulator/faults`` clears them; ``GET`` lists them.

Throttling (``--throttle``): token buckets per HSM and operation class at the
published single-partition capacity (RSA-2048 column of the reference's limits table);
an empty bucket answers 429 ``Throttled`` with ``Retry-After: 1``.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Optional

from .errors import HsmError

_CODES = {
    400: ("BadParameter", "The request was refused by an injected fault."),
    401: ("Unauthorized", "The request was refused by an injected fault."),
    403: ("Forbidden", "The request was refused by an injected fault."),
    404: ("NotFound", "The request was refused by an injected fault."),
    408: ("RequestTimeout", "The request timed out (injected fault)."),
    409: ("Conflict", "The request conflicts with the current state (injected fault)."),
    429: ("Throttled", "Request was not processed because too many requests were received (injected fault)."),
    500: ("InternalServerError", "The service encountered an internal error (injected fault)."),
    502: ("BadGateway", "The service is unavailable (injected fault)."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable (injected fault)."),
    504: ("GatewayTimeout", "The service did not respond in time (injected fault)."),
}


@dataclass
class Fault:
    """One armed fault; ``remaining`` < 0 means until cleared."""

    id: int
    method: str
    path: str
    remaining: int
    status: Optional[int]
    retry_after: Optional[float]
    latency_ms: Optional[int]
    regex: Optional[re.Pattern] = field(default=None, repr=False)

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with ``method`` and ``path`` triggers this fault."""
        if self.method not in ("*", method):
            return False
        return fnmatchcase(path, self.path) or bool(self.regex and self.regex.fullmatch(path))

    def error(self) -> Optional[HsmError]:
        """The refusal to answer with, or None for a latency-only fault."""
        if self.status is None:
            return None
        code, message = _CODES.get(self.status, ("Error", "The request was refused by an injected fault."))
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = _seconds(self.retry_after)
        return HsmError(self.status, code, message, headers=headers)

    def describe(self) -> dict:
        """JSON form for the control API."""
        return {"id": self.id, "method": self.method, "path": self.path, "count": self.remaining,
                "status": self.status, "retry_after": self.retry_after, "latency_ms": self.latency_ms}


class FaultInjector:
    """The armed faults of one HSM endpoint."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def __bool__(self) -> bool:
        return bool(self._faults)

    def add(self, spec: dict) -> Fault:
        """Arm a fault from its JSON spec; ValueError if the spec is invalid."""
        path = spec.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("'path' (a glob or regular expression) is required")
        status = spec.get("status")
        latency = spec.get("latency_ms")
        if status is None and latency is None:
            raise ValueError("give 'status', 'latency_ms' or both")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("'status' must be an HTTP error status (400-599)")
        count = spec.get("count", 1)
        if not isinstance(count, int) or count == 0 or count < -1:
            raise ValueError("'count' must be a positive integer or -1")
        try:
            regex = re.compile(path)
        except re.error:
            regex = None
        fault = Fault(next(self._ids), str(spec.get("method") or "*").upper(), path, count, status,
                      spec.get("retry_after"), latency, regex)
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def list(self) -> list[dict]:
        """The armed faults."""
        return [fault.describe() for fault in self._faults]

    def take(self, method: str, path: str) -> Optional[Fault]:
        """The first fault matching the request, consuming one of its uses."""
        for fault in self._faults:
            if fault.matches(method, path):
                if fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None


# Operations per second per HSM (one partition, RSA-2048 column of the reference's
# limits table), by the data action an operation needs; RBAC CRUD shares one budget.
THROTTLE_LIMITS = {
    "keys/create": 1.0, "keys/import/action": 1.0, "keys/delete": 10.0, "keys/deletedKeys/delete": 10.0,
    "keys/backup/action": 10.0, "keys/restore/action": 10.0, "keys/read/action": 1100.0,
    "keys/encrypt/action": 2800.0, "keys/decrypt/action": 1100.0, "keys/wrap/action": 2200.0,
    "keys/unwrap/action": 1100.0, "keys/sign/action": 900.0, "keys/verify/action": 3400.0,
}
_RBAC_ACTIONS = ("roleAssignments/", "roleDefinitions/")


class Throttle:
    """Token buckets per data action; ``admit`` raises 429 when a bucket is empty."""

    def __init__(self, limits: dict[str, float] = THROTTLE_LIMITS) -> None:
        self._limits = limits
        self._buckets: dict[str, tuple[float, float]] = {}

    def admit(self, action: Optional[str]) -> None:
        """Take one token for an operation needing ``action`` (unlisted actions are free)."""
        operation = "rbac" if action and action.startswith(_RBAC_ACTIONS) else action or ""
        rate = 5.0 if operation == "rbac" else self._limits.get(operation)
        if rate is None:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(operation, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[operation] = (tokens, now)
            raise HsmError(429, "Throttled", "Request was not processed because too many requests were received. "
                                             "Reason: Managed HSM partition capacity exceeded.",
                           headers={"Retry-After": "1"})
        self._buckets[operation] = (tokens - 1.0, now)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
