"""Which operations need a second person's approval, and the service that carries each out.

Domain apps register their approvable operations here (portal never imports them); the
maker-checker flow itself (requests, decisions) arrives with the approvals issue.
"""
from collections.abc import Callable

_OPERATIONS: dict[str, Callable] = {}


def register(action: str, service: Callable) -> None:
    """Declare that `action` (e.g. "key.purge") is approvable and is carried out by `service`."""
    existing = _OPERATIONS.get(action)
    if existing is not None and existing is not service:
        raise ValueError(f"{action} is already registered to {existing.__qualname__}")
    _OPERATIONS[action] = service


def registered(action: str) -> Callable | None:
    """The service registered for an action, or None."""
    return _OPERATIONS.get(action)
