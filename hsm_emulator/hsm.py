"""Properties of one emulated HSM and the security domain it belongs to.

``HsmProperties`` are the settings ARM would own (soft-delete retention, purge
protection, region) plus the HSM's external base URL, which every absolute URL the
emulator returns (``kid``, ``recoveryId``, ``nextLink``) is built from.

``SecurityDomain`` is the emulated root of trust: an id and a 256-bit master key from
which purpose keys are derived. HSMs sharing a domain can restore each other's key
backups; a backup from another domain fails its integrity check. All HSMs started
together share the ``default`` domain, persisted in the state store.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .state import Sealer, Store

RECOVERY_LEVELS = {
    # (retention == 90, purge protection) -> recoveryLevel
    (False, False): "CustomizedRecoverable+Purgeable",
    (False, True): "CustomizedRecoverable",
    (True, False): "Recoverable+Purgeable",
    (True, True): "Recoverable",
}


@dataclass
class HsmProperties:
    """Per-HSM settings that shape key attributes and absolute URLs."""

    name: str
    base_url: str
    region: str = "westeurope"
    retention_days: int = 7
    purge_protection: bool = False

    @property
    def recovery_level(self) -> str:
        """``attributes.recoveryLevel`` of keys in this HSM."""
        return RECOVERY_LEVELS[(self.retention_days == 90, self.purge_protection)]

    def load(self, store: Store) -> None:
        """Restore the persisted ARM-owned settings (retention, purge protection)."""
        saved = store.get(f"hsm:{self.name}", "meta", "properties") or {}
        self.retention_days = saved.get("retention_days", self.retention_days)
        self.purge_protection = saved.get("purge_protection", self.purge_protection)

    def update(self, store: Store, changes: dict) -> None:
        """Apply and persist changes; ValueError for values ARM would refuse.

        Retention is 7-90 days; purge protection, once enabled, cannot be disabled.
        """
        retention = changes.get("retention_days", self.retention_days)
        protection = changes.get("purge_protection", self.purge_protection)
        if isinstance(retention, bool) or not isinstance(retention, int) or not 7 <= retention <= 90:
            raise ValueError("retention_days must be an integer from 7 to 90")
        if not isinstance(protection, bool):
            raise ValueError("purge_protection must be a boolean")
        if self.purge_protection and not protection:
            raise ValueError("purge protection cannot be disabled once enabled")
        self.retention_days, self.purge_protection = retention, protection
        store.put(f"hsm:{self.name}", "meta", "properties",
                  {"retention_days": retention, "purge_protection": protection})


@dataclass(frozen=True)
class SecurityDomain:
    """An emulated security domain: an id and a master key."""

    id: str
    master_key: bytes

    def derive(self, purpose: str, length: int = 64) -> bytes:
        """A key for ``purpose`` (e.g. ``backup-protection-key``) derived from the master key."""
        return HKDF(hashes.SHA256(), length, salt=self.id.encode(), info=purpose.encode()).derive(self.master_key)

    @classmethod
    def load_or_create(cls, store: Store, sealer: Sealer, name: str = "default") -> "SecurityDomain":
        """The named domain from the store, created (and persisted) on first use."""
        doc = store.get("emulator", "security_domain", name)
        if doc:
            return cls(doc["id"], sealer.unseal(base64.b64decode(doc["key"]), f"sd:{doc['id']}"))
        domain = cls(str(uuid.uuid4()), os.urandom(32))
        store.put("emulator", "security_domain", name, {
            "id": domain.id,
            "key": base64.b64encode(sealer.seal(domain.master_key, f"sd:{domain.id}")).decode(),
        })
        return domain
