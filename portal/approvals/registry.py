"""Which operations need a second person's approval, and the service that carries each out.

Domain apps register their approvable operations here from AppConfig.ready (portal never
imports them). A registered service takes keyword arguments only: on final approval the
approvals job calls it as `service(actor=<requester>, approval=<request>, request_id=...,
**payload)`, where the payload is the JSON the service itself passed to `approval_require`.
"""
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    """One approvable operation: its name, the service, and how approvers are shown it."""

    name: str
    service: Callable
    label: str
    # payload -> {"title"?: str, "change"?: [(label, value), ...], "context"?: [...]},
    # shown beside the request so approvers see the change in context (may return {}).
    describe: Callable[[dict], dict] | None = None


_OPERATIONS: dict[str, Operation] = {}


def register(action: str, service: Callable, *, label: str = "",
             describe: Callable[[dict], dict] | None = None) -> None:
    """Declare that `action` (e.g. "key.purge") is approvable and is carried out by `service`.

    Registering the same service again (a second AppConfig.ready in tests) is harmless and
    may add the label or describer; another service for the same action is an error.
    """
    existing = _OPERATIONS.get(action)
    if existing is not None and existing.service is not service:
        raise ValueError(f"{action} is already registered to {existing.service.__qualname__}")
    if existing is not None:
        label = label or existing.label
        describe = describe or existing.describe
    _OPERATIONS[action] = Operation(action, service, label or action, describe)


def registered(action: str) -> Callable | None:
    """The service registered for an action, or None."""
    op = _OPERATIONS.get(action)
    return op.service if op is not None else None


def operation(action: str) -> Operation | None:
    """The registered operation (service, label, describer), or None."""
    return _OPERATIONS.get(action)


def operations() -> list[Operation]:
    """Every registered operation, by name."""
    return [_OPERATIONS[name] for name in sorted(_OPERATIONS)]


def label(action: str) -> str:
    """The operation's label for people ("Purge a deleted key"), or its name."""
    op = _OPERATIONS.get(action)
    return op.label if op is not None else action
