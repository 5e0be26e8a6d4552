"""The keys API of one HSM: lifecycle, soft delete, backup, rotation, crypto, rng.

Behaviour follows the recorded service (see ``docs/emulator.md`` for what is recorded
and what is a Key Vault shape used for realism):

- create (``RSA``/``EC``/``oct`` map silently to their ``-HSM`` forms; RSA 2048/3072/4096
  with any odd public exponent, EC P-256/P-256K/P-384/P-521, oct 128/192/256), import
  (``Hsm`` + JWK with private parts, or BYOK: ``key_hsm`` holding a ``.byok`` transfer
  blob wrapped for an ``import``-only RSA KEK of this HSM, see ``byok.py``), get (latest: empty version or trailing slash),
  list and list versions (creation order, ``maxresults`` <= 25, ``nextLink`` with
  ``maxresults`` first and an opaque ``$skiptoken``, absent on the last page), update
  (on the latest or a given version);
- soft delete with the HSM's retention (``scheduledPurgeDate = deletedDate + days *
  86400``), get/list deleted, recover, purge (204; refused under purge protection); a
  name held by a deleted key answers 409 on create/import/restore; deleted keys are
  purged lazily once their scheduled purge date passes;
- single-key backup: a compact JWE (``dir``/``A256CBC-HS512``, ``kid
  backup-protection-key``) of every version, keyed from the security domain, so only an
  HSM of the same domain can restore it;
- rotate and rotation policy (validated like the service: ISO-8601 durations, one
  trigger per action, ``expiryTime`` >= 28 days);
- encrypt/decrypt/wrapkey/unwrapkey/sign/verify enforcing ``enabled`` (a disabled key
  refuses every one of them, for every key type: the documented meaning of the
  attribute), ``key_ops`` and ``nbf``/``exp`` (encrypt, wrap and sign only, per the
  documented date-time controlled operations);
- ``/rng``; key release (refused: no attestation service) and key attestation.

Private key material never appears in a response. State is written through to the
store (sealed) on every change.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import os
import re
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from . import byok, crypto
from .crypto import KeyMaterial, b64d, b64e
from .errors import HsmError, bad_parameter, deleted_but_recoverable, key_forbidden, key_not_found
from .hsm import HsmProperties, SecurityDomain
from .routing import ROOT_SCOPES, Call, Reply, Route, dumps, scopes_for_key
from .state import Sealer, Store

KTY_FAMILY = {"RSA": "RSA", "RSA-HSM": "RSA", "EC": "EC", "EC-HSM": "EC", "oct": "oct", "oct-HSM": "oct"}
HSM_KTY = {"RSA": "RSA-HSM", "EC": "EC-HSM", "oct": "oct-HSM"}
DEFAULT_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "EC": ["verify", "deriveKey", "sign"],
    "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
KNOWN_OPS = {op.lower(): op for op in
             ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export", "deriveKey")}
_NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_DURATION_RE = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)
_DURATION_SECONDS = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)
MIN_EXPIRY = 28 * 86400
MIN_ROTATION_WINDOW = 7 * 86400
PAGE_SIZE = 25
DEFAULT_ROTATION_POLICY = [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}]
_PRIVATE_OPS = ("decrypt", "unwrapKey", "sign")
# Operations the key's dates govern (Key Vault: "date-time controlled operations").
_TIME_CONTROLLED_OPS = ("encrypt", "wrapKey", "sign")
_OPS = {"encrypt": "encrypt", "decrypt": "decrypt", "wrapkey": "wrapKey", "unwrapkey": "unwrapKey",
        "sign": "sign", "verify": "verify"}
_OP_ACTIONS = {"encrypt": "keys/encrypt/action", "decrypt": "keys/decrypt/action", "wrapkey": "keys/wrap/action",
               "unwrapkey": "keys/unwrap/action", "sign": "keys/sign/action", "verify": "keys/verify/action"}


@dataclass
class KeyVersion:
    """One version of a key: material plus its per-version attributes."""

    version: str
    kty: str
    material: Optional[KeyMaterial]  # None only while a new version is being validated
    key_ops: list[str]
    created: int
    updated: int
    enabled: bool = True
    nbf: Optional[int] = None
    exp: Optional[int] = None
    exportable: bool = False
    tags: Optional[dict] = None
    release_policy: Optional[dict] = None
    body: Optional[bytes] = field(default=None, repr=False)  # cached serialized KeyBundle


@dataclass
class KeyEntry:
    """A key name with its versions (newest last), rotation policy and deletion state."""

    name: str
    seq: int
    versions: dict[str, KeyVersion] = field(default_factory=dict)
    rotation_policy: Optional[dict] = None
    deleted_date: Optional[int] = None
    scheduled_purge: Optional[int] = None

    @property
    def latest(self) -> KeyVersion:
        """The most recently created version."""
        return next(reversed(self.versions.values()))


class KeyStore:
    """Keys of one HSM: in memory for serving, written through to the store."""

    def __init__(self, props: HsmProperties, domain: SecurityDomain, store: Store, sealer: Sealer,
                 executor: Optional[Executor] = None) -> None:
        self.props = props
        self.domain = domain
        self._store = store
        self._sealer = sealer
        self._executor = executor
        self._scope = f"hsm:{props.name}"
        self.live: dict[str, KeyEntry] = {}
        self.deleted: dict[str, KeyEntry] = {}
        self._seq = 0
        for doc in store.load(self._scope, "key").values():
            entry = self._entry_from_doc(doc)
            (self.deleted if entry.deleted_date is not None else self.live)[entry.name.lower()] = entry
            self._seq = max(self._seq, entry.seq)

    # -- persistence --------------------------------------------------------------

    def _save(self, entry: KeyEntry) -> None:
        self._store.put(self._scope, "key", entry.name.lower(), self._entry_doc(entry, sealed=True))

    def _entry_doc(self, entry: KeyEntry, sealed: bool) -> dict:
        return {
            "name": entry.name,
            "seq": entry.seq,
            "rotation_policy": entry.rotation_policy,
            "deleted_date": entry.deleted_date,
            "scheduled_purge": entry.scheduled_purge,
            "versions": [self._version_doc(v, sealed=sealed) for v in entry.versions.values()],
        }

    def _version_doc(self, ver: KeyVersion, sealed: bool) -> dict:
        raw = ver.material.to_bytes()
        secret = self._sealer.seal(raw, f"key:{ver.version}") if sealed else raw
        return {
            "version": ver.version, "kty": ver.kty, "family": ver.material.family,
            "material": base64.b64encode(secret).decode(), "key_ops": ver.key_ops,
            "created": ver.created, "updated": ver.updated, "enabled": ver.enabled, "nbf": ver.nbf,
            "exp": ver.exp, "exportable": ver.exportable, "tags": ver.tags, "release_policy": ver.release_policy,
        }

    def _version_from_doc(self, doc: dict, sealed: bool) -> KeyVersion:
        raw = base64.b64decode(doc["material"])
        if sealed:
            raw = self._sealer.unseal(raw, f"key:{doc['version']}")
        return KeyVersion(
            version=doc["version"], kty=doc["kty"], material=KeyMaterial.from_bytes(doc["family"], raw),
            key_ops=list(doc["key_ops"]), created=doc["created"], updated=doc["updated"], enabled=doc["enabled"],
            nbf=doc["nbf"], exp=doc["exp"], exportable=doc["exportable"], tags=doc["tags"],
            release_policy=doc["release_policy"],
        )

    def _entry_from_doc(self, doc: dict) -> KeyEntry:
        entry = KeyEntry(doc["name"], doc["seq"], rotation_policy=doc.get("rotation_policy"),
                         deleted_date=doc.get("deleted_date"), scheduled_purge=doc.get("scheduled_purge"))
        for ver_doc in doc["versions"]:
            ver = self._version_from_doc(ver_doc, sealed=True)
            entry.versions[ver.version] = ver
        return entry

    # -- full backup and restore (backup.py) -----------------------------------------

    def export_entries(self) -> list[dict]:
        """Every key, live and soft-deleted, with its versions' plain material: a full backup's content.

        Runs on the event loop (a consistent snapshot); the caller encrypts it.
        """
        entries = sorted([*self.live.values(), *self.deleted.values()], key=lambda e: e.seq)
        return [self._entry_doc(entry, sealed=False) for entry in entries]

    def entries_from_export(self, docs: list[dict]) -> list[KeyEntry]:
        """``KeyEntry`` objects from ``export_entries`` documents; touches no state (any thread)."""
        entries = []
        for doc in docs:
            entry = KeyEntry(doc["name"], doc["seq"], rotation_policy=doc.get("rotation_policy"),
                             deleted_date=doc.get("deleted_date"), scheduled_purge=doc.get("scheduled_purge"))
            for ver_doc in doc["versions"]:
                ver = self._version_from_doc(ver_doc, sealed=False)
                entry.versions[ver.version] = ver
            entries.append(entry)
        return entries

    def sealed_docs(self, entries: list[KeyEntry]) -> dict[str, dict]:
        """The store documents of ``entries`` (material sealed); touches no state (any thread)."""
        return {entry.name.lower(): self._entry_doc(entry, sealed=True) for entry in entries}

    def replace_all(self, entries: list[KeyEntry], sealed_docs: Optional[dict[str, dict]] = None) -> None:
        """Make ``entries`` the HSM's whole key set (a full restore), persisted in one transaction."""
        self.live = {e.name.lower(): e for e in entries if e.deleted_date is None}
        self.deleted = {e.name.lower(): e for e in entries if e.deleted_date is not None}
        self._seq = max([self._seq, *(e.seq for e in entries)])
        if self._store.durable:
            self._store.replace_kind(self._scope, "key", sealed_docs or self.sealed_docs(entries))

    def has_name(self, name: str) -> bool:
        """Whether a live or soft-deleted key holds ``name``."""
        self._purge_expired()
        return name.lower() in self.live or name.lower() in self.deleted

    def add_restored(self, entry: KeyEntry) -> None:
        """Add one key restored from a full backup (selective restore) under a new sequence number."""
        entry.seq = self._next_seq()
        entry.deleted_date = entry.scheduled_purge = None
        self.live[entry.name.lower()] = entry
        self._save(entry)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def invalidate(self) -> None:
        """Forget cached bodies, e.g. after the HSM's retention settings change."""
        for entry in self.live.values():
            for ver in entry.versions.values():
                ver.body = None

    # -- lookups ------------------------------------------------------------------

    def _name(self, call: Call) -> str:
        name = call.params["name"]
        if not _NAME_RE.match(name):
            raise bad_parameter(f"The request URI contains an invalid name: {name}")
        return name

    def _entry(self, call: Call) -> KeyEntry:
        entry = self.live.get(self._name(call).lower())
        if entry is None:
            raise key_not_found(call.url)
        return entry

    def _version(self, call: Call) -> tuple[KeyEntry, KeyVersion]:
        entry = self._entry(call)
        version = call.params.get("version") or ""
        if not version:
            return entry, entry.latest
        ver = entry.versions.get(version.lower())
        if ver is None:
            raise key_not_found(call.url)
        return entry, ver

    def _purge_expired(self) -> None:
        now = time.time()
        for key, entry in list(self.deleted.items()):
            if entry.scheduled_purge is not None and entry.scheduled_purge <= now:
                del self.deleted[key]
                self._store.delete(self._scope, "key", key)

    def _ensure_name_free(self, name: str) -> None:
        """409 if a soft-deleted key holds ``name``."""
        self._purge_expired()
        if name.lower() in self.deleted:
            raise deleted_but_recoverable(name)

    # -- JSON shapes --------------------------------------------------------------

    def kid(self, entry: KeyEntry, ver: Optional[KeyVersion] = None) -> str:
        """The key identifier, versioned if ``ver`` is given."""
        base = f"{self.props.base_url}/keys/{entry.name}"
        return f"{base}/{ver.version}" if ver else base

    def _attributes(self, ver: KeyVersion) -> dict:
        attrs = {
            "enabled": ver.enabled, "created": ver.created, "updated": ver.updated,
            "recoverableDays": self.props.retention_days, "recoveryLevel": self.props.recovery_level,
            "exportable": ver.exportable,
        }
        if ver.nbf is not None:
            attrs["nbf"] = ver.nbf
        if ver.exp is not None:
            attrs["exp"] = ver.exp
        if ver.material.family == "oct":
            attrs["key_size"] = ver.material.size
        return attrs

    def bundle(self, entry: KeyEntry, ver: KeyVersion) -> dict:
        """KeyBundle: public JWK, attributes, tags and release policy; never private parts."""
        result = {
            "attributes": self._attributes(ver),
            "key": {"kid": self.kid(entry, ver), "kty": ver.kty, "key_ops": list(ver.key_ops),
                    **ver.material.public_jwk},
        }
        if ver.tags:
            result["tags"] = ver.tags
        if ver.release_policy:
            result["release_policy"] = ver.release_policy
        return result

    def _bundle_reply(self, entry: KeyEntry, ver: KeyVersion) -> Reply:
        if ver.body is None:
            ver.body = dumps(self.bundle(entry, ver))
        return Reply(200, ver.body)

    def _deleted_bundle(self, entry: KeyEntry) -> dict:
        return {**self.bundle(entry, entry.latest), **self._deletion(entry)}

    def _deletion(self, entry: KeyEntry) -> dict:
        return {"deletedDate": entry.deleted_date, "recoveryId": f"{self.props.base_url}/deletedkeys/{entry.name}",
                "scheduledPurgeDate": entry.scheduled_purge}

    def _item(self, entry: KeyEntry, ver: KeyVersion, versioned: bool) -> dict:
        item = {"attributes": self._attributes(ver), "kid": self.kid(entry, ver if versioned else None)}
        if ver.tags:
            item["tags"] = ver.tags
        return item

    def _page(self, call: Call, path: str, items: list[tuple[int, Any]], render: Callable[[Any], dict]) -> Reply:
        """One page of ``items`` (sequence number, object) with the service's nextLink.

        Only the page's objects are rendered, so paging through thousands of keys stays cheap.
        """
        raw_max = call.query.get("maxresults")
        size = PAGE_SIZE
        if raw_max not in (None, ""):
            if not raw_max.isdigit() or not 1 <= int(raw_max) <= PAGE_SIZE:
                raise bad_parameter(f"The value '{raw_max}' of 'maxresults' is invalid; it must be between 1 and 25.")
            size = int(raw_max)
        items = sorted(items, key=lambda item: item[0])
        start = bisect.bisect_right([seq for seq, _ in items], _decode_skiptoken(call.query.get("$skiptoken")))
        page = items[start:start + size]
        body: dict = {"value": [render(obj) for _, obj in page]}
        if start + size < len(items):
            query = f"maxresults={size}&" if raw_max not in (None, "") else ""
            body["nextLink"] = f"{self.props.base_url}{path}?{query}$skiptoken={_encode_skiptoken(page[-1][0])}"
        return Reply(200, body)

    # -- validation of request bodies ----------------------------------------------

    def _key_ops(self, value, family: str) -> list[str]:
        if value is None:
            return list(DEFAULT_OPS[family])
        if not isinstance(value, list) or not all(isinstance(op, str) for op in value):
            raise bad_parameter("The parameter 'key_ops' must be an array of strings.")
        ops = []
        for op in value:
            canonical = KNOWN_OPS.get(op.lower())
            if canonical is None:
                raise bad_parameter(f"Invalid key operation '{op}'.")
            if canonical not in ops:
                ops.append(canonical)
        return ops

    def _apply_attributes(self, ver: KeyVersion, attrs, creating: bool) -> None:
        if attrs is None:
            return
        if not isinstance(attrs, dict):
            raise bad_parameter("The parameter 'attributes' must be an object.")
        if "enabled" in attrs and attrs["enabled"] is not None:
            if not isinstance(attrs["enabled"], bool):
                raise bad_parameter("The attribute 'enabled' must be a boolean.")
            ver.enabled = attrs["enabled"]
        for member in ("nbf", "exp"):
            if member in attrs:
                value = attrs[member]
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise bad_parameter(f"The attribute '{member}' must be an integer (Unix seconds).")
                setattr(ver, member, value)
        if ver.nbf is not None and ver.exp is not None and ver.nbf > ver.exp:
            raise bad_parameter("The attribute 'nbf' must not be later than 'exp'.")
        if attrs.get("exportable") is not None:
            if not isinstance(attrs["exportable"], bool):
                raise bad_parameter("The attribute 'exportable' must be a boolean.")
            if not creating and attrs["exportable"] != ver.exportable:
                raise bad_parameter("The attribute 'exportable' cannot be changed after creation.")
            ver.exportable = attrs["exportable"]

    def _tags(self, value) -> Optional[dict]:
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise bad_parameter("The parameter 'tags' must be an object of string values.")
        if len(value) > 15:
            raise bad_parameter("A key can have at most 15 tags.")
        return dict(value) or None

    def _release_policy(self, value) -> Optional[dict]:
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("data"), str):
            raise bad_parameter("The parameter 'release_policy' must be an object with base64url 'data'.")
        try:
            json.loads(b64d(value["data"], "release_policy.data"))
        except ValueError as exc:
            raise bad_parameter("The release policy data must be base64url-encoded JSON.") from exc
        return {"contentType": value.get("contentType") or "application/json; charset=utf-8",
                "data": value["data"], "immutable": bool(value.get("immutable", False))}

    def _new_version(self, family: str, body: dict) -> KeyVersion:
        """A validated new version from a create/import body; the caller adds the material."""
        now = int(time.time())
        ver = KeyVersion(os.urandom(16).hex(), HSM_KTY[family], None, self._key_ops(body.get("key_ops"), family),
                         now, now)
        self._apply_attributes(ver, body.get("attributes"), creating=True)
        ver.tags = self._tags(body.get("tags"))
        ver.release_policy = self._release_policy(body.get("release_policy"))
        if ver.exportable and not ver.release_policy:
            raise bad_parameter("Exportable keys must have a release policy.")
        return ver

    def _add_version(self, name: str, ver: KeyVersion) -> KeyEntry:
        entry = self.live.get(name.lower())
        if entry is None:
            entry = KeyEntry(name, self._next_seq())
            self.live[name.lower()] = entry
        entry.versions[ver.version] = ver
        self._save(entry)
        return entry

    async def _offload(self, fn: Callable, *args):
        """Run CPU-heavy work (key generation, big-RSA private operations) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- HTTP ---------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """Routes of the keys API, most specific first."""
        key = r"/keys/(?P<name>[^/]+)"

        def named(params: dict) -> tuple[str, ...]:
            return scopes_for_key(params["name"])

        def collection(params: dict) -> tuple[str, ...]:
            return scopes_for_key(None)

        routes = [
            Route("POST", rf"^{key}/create$", self._create, "keys/create", named),
            Route("POST", r"^/keys/restore$", self._restore, "keys/restore/action", collection),
            Route("GET", r"^/keys/?$", self._list, "keys/read/action", collection),
            Route("GET", rf"^{key}/versions/?$", self._list_versions, "keys/read/action", named),
            Route("GET", rf"^{key}/rotationpolicy$", self._get_policy, "keys/read/action", named),
            Route("PUT", rf"^{key}/rotationpolicy$", self._set_policy, "keys/write/action", named),
            Route("POST", rf"^{key}/backup$", self._backup, "keys/backup/action", named),
            Route("POST", rf"^{key}/rotate$", self._rotate, "keys/rotate/action", named),
            Route("PUT", rf"^{key}/?$", self._import, "keys/import/action", named),
            Route("GET", rf"^{key}(?:/(?P<version>[^/]*))?$", self._get, "keys/read/action", named),
            Route("PATCH", rf"^{key}(?:/(?P<version>[^/]*))?$", self._update, "keys/write/action", named),
            Route("DELETE", rf"^{key}/?$", self._delete, "keys/delete", named),
            Route("POST", rf"^{key}/(?P<version>[^/]*)/release$", self._release, "keys/release/action", named),
            Route("GET", rf"^{key}/(?P<version>[^/]*)/attestation$", self._attestation, "keys/read/action", named),
            Route("GET", r"^/deletedkeys/?$", self._list_deleted, "keys/deletedKeys/read/action", collection),
            Route("GET", r"^/deletedkeys/(?P<name>[^/]+)$", self._get_deleted, "keys/deletedKeys/read/action", named),
            Route("DELETE", r"^/deletedkeys/(?P<name>[^/]+)$", self._purge, "keys/deletedKeys/delete", named),
            Route("POST", r"^/deletedkeys/(?P<name>[^/]+)/recover$", self._recover,
                  "keys/deletedKeys/recover/action", named),
            Route("POST", r"^/rng$", self._rng, "rng/action", lambda params: ROOT_SCOPES),
        ]
        for op, action in _OP_ACTIONS.items():
            routes.append(Route("POST", rf"(?i)^{key}/(?P<version>[^/]*)/{op}$", self._crypto_handler(op), action, named))
        return routes

    async def _create(self, call: Call) -> Reply:
        name = self._name(call)
        body = call.json()
        self._ensure_name_free(name)
        kty = body.get("kty")
        family = KTY_FAMILY.get(kty) if isinstance(kty, str) else None
        if family is None:
            raise bad_parameter(f"The key type '{kty}' is not supported; use RSA-HSM, EC-HSM or oct-HSM.")
        size, exponent, crv = body.get("key_size"), body.get("public_exponent"), body.get("crv")
        if family == "RSA":
            size = 2048 if size is None else size
            if size not in crypto.RSA_SIZES:
                raise bad_parameter(f"The RSA key size {size} is not supported; use 2048, 3072 or 4096.")
            if exponent is not None and (not isinstance(exponent, int) or exponent < 3 or exponent % 2 == 0
                                         or exponent.bit_length() > 32):
                raise bad_parameter(f"The public exponent {exponent} is not valid; use an odd integer >= 3.")
        elif family == "EC":
            crv = "P-256" if crv is None else crv
            if crv not in crypto.CURVES:
                raise bad_parameter(f"The curve '{crv}' is not supported; use P-256, P-256K, P-384 or P-521.")
        else:
            size = 256 if size is None else size
            if size not in crypto.OCT_SIZES:
                raise bad_parameter(f"The AES key size {size} is not supported; use 128, 192 or 256.")
        ver = self._new_version(family, body)
        ver.material = await self._offload(crypto.generate, family, size, exponent, crv)
        ver.created = ver.updated = int(time.time())
        entry = self._add_version(name, ver)
        return self._bundle_reply(entry, ver)

    async def _import(self, call: Call) -> Reply:
        name = self._name(call)
        body = call.json()
        self._ensure_name_free(name)
        jwk = body.get("key")
        if not isinstance(jwk, dict):
            raise bad_parameter("The parameter 'key' (a JSON web key) is required.")
        family = KTY_FAMILY.get(jwk.get("kty")) if isinstance(jwk.get("kty"), str) else None
        if family is None:
            raise bad_parameter(f"The key type '{jwk.get('kty')}' is not supported; use RSA-HSM, EC-HSM or oct-HSM.")
        ver = self._new_version(family, {**body, "key_ops": jwk.get("key_ops")})
        if jwk.get("key_hsm") is not None:
            ver.material = await self._import_byok(family, jwk)
        else:
            ver.material = await self._offload(crypto.import_jwk, family, jwk)
        entry = self._add_version(name, ver)
        return self._bundle_reply(entry, ver)

    async def _import_byok(self, family: str, jwk: dict) -> KeyMaterial:
        """The target key of a BYOK transfer blob (``key_hsm``), unwrapped with its KEK."""
        try:
            blob = byok.parse_blob(b64d(jwk["key_hsm"], "key_hsm"))
        except byok.ByokError as exc:
            raise bad_parameter(str(exc)) from exc
        kek = self._kek(blob.kid)
        try:
            plaintext = await self._offload(byok.rsa_aes_key_unwrap, kek.material.private, blob.enc, blob.ciphertext)
        except byok.ByokError as exc:
            raise bad_parameter(str(exc)) from exc
        crv = jwk.get("crv") if isinstance(jwk.get("crv"), str) else None
        return crypto.import_unwrapped(family, plaintext, crv)

    def _kek(self, kid: str) -> KeyVersion:
        """The key exchange key a transfer blob names: a live RSA key of this HSM with ``import``."""
        parts = urlsplit(kid)
        base = urlsplit(self.props.base_url)
        segments = parts.path.strip("/").split("/")
        if (parts.scheme.lower() != base.scheme.lower() or parts.netloc.lower() != base.netloc.lower()
                or len(segments) not in (2, 3) or segments[0] != "keys"):
            raise bad_parameter(f"The key exchange key '{kid}' of the key transfer blob is not a key of this "
                                "managed HSM; the KEK must be in the HSM the key is imported into.")
        entry = self.live.get(segments[1].lower())
        version = segments[2].lower() if len(segments) == 3 and segments[2] else None
        ver = None if entry is None else (entry.versions.get(version) if version else entry.latest)
        if ver is None:
            raise bad_parameter(f"The key exchange key '{kid}' of the key transfer blob was not found.")
        if ver.material.family != "RSA":
            raise bad_parameter(f"The key exchange key '{kid}' is not an RSA-HSM key.")
        if "import" not in ver.key_ops:
            raise key_forbidden(f"Operation import is not permitted on the key exchange key '{kid}'.",
                                "KeyOperationForbidden")
        if not ver.enabled:
            raise key_forbidden(f"Operation import is not allowed on a disabled key: '{kid}'.", "KeyDisabled")
        now = time.time()
        if (ver.nbf is not None and now < ver.nbf) or (ver.exp is not None and now >= ver.exp):
            raise key_forbidden(f"Operation import is not allowed on the key exchange key '{kid}' outside its "
                                "validity period.", "KeyExpired" if ver.exp is not None and now >= ver.exp
                                else "KeyNotYetValid")
        return ver

    async def _get(self, call: Call) -> Reply:
        entry, ver = self._version(call)
        return self._bundle_reply(entry, ver)

    async def _list(self, call: Call) -> Reply:
        return self._page(call, "/keys", [(e.seq, e) for e in self.live.values()],
                          lambda e: self._item(e, e.latest, versioned=False))

    async def _list_versions(self, call: Call) -> Reply:
        entry = self._entry(call)
        return self._page(call, f"/keys/{entry.name}/versions", list(enumerate(entry.versions.values(), 1)),
                          lambda v: self._item(entry, v, versioned=True))

    async def _update(self, call: Call) -> Reply:
        entry, ver = self._version(call)
        body = call.json()
        if "key_ops" in body and body["key_ops"] is not None:
            ver.key_ops = self._key_ops(body["key_ops"], ver.material.family)
        saved = (ver.enabled, ver.nbf, ver.exp)
        try:
            self._apply_attributes(ver, body.get("attributes"), creating=False)
        except HsmError:
            ver.enabled, ver.nbf, ver.exp = saved
            raise
        if "tags" in body:
            ver.tags = self._tags(body["tags"])
        if body.get("release_policy") is not None:
            if ver.release_policy and ver.release_policy.get("immutable"):
                raise bad_parameter("The key's release policy is immutable and cannot be changed.")
            ver.release_policy = self._release_policy(body["release_policy"])
        ver.updated = int(time.time())
        ver.body = None
        self._save(entry)
        return self._bundle_reply(entry, ver)

    async def _delete(self, call: Call) -> Reply:
        entry = self._entry(call)
        now = int(time.time())
        entry.deleted_date = now
        entry.scheduled_purge = now + self.props.retention_days * 86400
        del self.live[entry.name.lower()]
        self.deleted[entry.name.lower()] = entry
        self._save(entry)
        return Reply(200, self._deleted_bundle(entry))

    def _deleted_entry(self, call: Call) -> KeyEntry:
        self._purge_expired()
        entry = self.deleted.get(self._name(call).lower())
        if entry is None:
            raise key_not_found(call.url)
        return entry

    async def _get_deleted(self, call: Call) -> Reply:
        return Reply(200, self._deleted_bundle(self._deleted_entry(call)))

    async def _list_deleted(self, call: Call) -> Reply:
        self._purge_expired()
        return self._page(call, "/deletedkeys", [(e.seq, e) for e in self.deleted.values()],
                          lambda e: {**self._item(e, e.latest, versioned=False), **self._deletion(e)})

    async def _recover(self, call: Call) -> Reply:
        entry = self._deleted_entry(call)
        del self.deleted[entry.name.lower()]
        entry.deleted_date = entry.scheduled_purge = None
        self.live[entry.name.lower()] = entry
        self._save(entry)
        return self._bundle_reply(entry, entry.latest)

    async def _purge(self, call: Call) -> Reply:
        entry = self._deleted_entry(call)
        if self.props.purge_protection:
            raise key_forbidden(
                f"Operation 'purge' is not allowed on key {entry.name}: purge protection is enabled on this "
                "managed HSM; the key will be purged on its scheduled purge date.", "PurgeProtectionEnabled")
        del self.deleted[entry.name.lower()]
        self._store.delete(self._scope, "key", entry.name.lower())
        return Reply(204, b"")

    async def _backup(self, call: Call) -> Reply:
        entry = self._entry(call)
        payload = {
            "format": 1, "security_domain": self.domain.id, "name": entry.name,
            "rotation_policy": entry.rotation_policy,
            "versions": [self._version_doc(v, sealed=False) for v in entry.versions.values()],
        }
        token = crypto.jwe_seal(self.domain.derive("backup-protection-key"), json.dumps(payload).encode())
        return Reply(200, {"value": b64e(token.encode("ascii"))})

    async def _restore(self, call: Call) -> Reply:
        value = call.json().get("value")
        if not isinstance(value, str) or not value:
            raise bad_parameter("The parameter 'value' (a key backup blob) is required.")
        try:
            plaintext = crypto.jwe_open(self.domain.derive("backup-protection-key"), b64d(value).decode("ascii"))
            payload = json.loads(plaintext)
            versions = [self._version_from_doc(doc, sealed=False) for doc in payload["versions"]]
            name = payload["name"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise bad_parameter("The backup blob is invalid, corrupt, or was taken from a managed HSM in a "
                                "different security domain.") from exc
        self._ensure_name_free(name)
        if name.lower() in self.live:
            raise HsmError(409, "Conflict", f"Key {name} already exists; a backup can only be restored when no "
                                            "key of that name exists.")
        entry = KeyEntry(name, self._next_seq(), rotation_policy=payload.get("rotation_policy"))
        for ver in versions:
            entry.versions[ver.version] = ver
        self.live[name.lower()] = entry
        self._save(entry)
        return self._bundle_reply(entry, entry.latest)

    async def _rotate(self, call: Call) -> Reply:
        entry = self._entry(call)
        current = entry.latest
        material = current.material
        new_material = await self._offload(crypto.generate, material.family, material.size,
                                           material.public_exponent, material.crv)
        now = int(time.time())
        ver = KeyVersion(os.urandom(16).hex(), current.kty, new_material, list(current.key_ops), now, now,
                         exportable=current.exportable, tags=dict(current.tags) if current.tags else None,
                         release_policy=current.release_policy)
        expiry = ((entry.rotation_policy or {}).get("attributes") or {}).get("expiryTime")
        if expiry:
            ver.exp = now + _duration_seconds(expiry)
        entry.versions[ver.version] = ver
        self._save(entry)
        return self._bundle_reply(entry, ver)

    def _policy_body(self, entry: KeyEntry) -> dict:
        policy = entry.rotation_policy or {"lifetimeActions": DEFAULT_ROTATION_POLICY, "attributes": {}}
        return {"id": f"{self.kid(entry)}/rotationpolicy", **policy}

    async def _get_policy(self, call: Call) -> Reply:
        return Reply(200, self._policy_body(self._entry(call)))

    async def _set_policy(self, call: Call) -> Reply:
        entry = self._entry(call)
        body = call.json()
        attrs = body.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise bad_parameter("The parameter 'attributes' must be an object.")
        expiry = attrs.get("expiryTime")
        expiry_seconds = None
        if expiry is not None:
            expiry_seconds = _duration_seconds(expiry, "expiryTime")
            if expiry_seconds < MIN_EXPIRY:
                raise bad_parameter(f"The expiryTime '{expiry}' is too short; the minimum is P28D.")
        actions = _validate_actions(body.get("lifetimeActions"), expiry_seconds)
        now = int(time.time())
        created = ((entry.rotation_policy or {}).get("attributes") or {}).get("created", now)
        policy_attrs = {"created": created, "updated": now}
        if expiry is not None:
            policy_attrs["expiryTime"] = expiry
        entry.rotation_policy = {"lifetimeActions": actions, "attributes": policy_attrs}
        self._save(entry)
        return Reply(200, self._policy_body(entry))

    async def _rng(self, call: Call) -> Reply:
        count = call.json().get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 128:
            raise bad_parameter("The parameter 'count' must be an integer between 1 and 128.")
        return Reply(200, {"value": b64e(os.urandom(count))})

    async def _release(self, call: Call) -> Reply:
        entry, ver = self._version(call)
        target = call.json().get("target")
        if not isinstance(target, str) or not target:
            raise bad_parameter("The parameter 'target' (an attestation token) is required.")
        if not ver.exportable or not ver.release_policy:
            raise bad_parameter(f"Key {entry.name} is not exportable and cannot be released.")
        raise key_forbidden("The target environment attestation does not satisfy the key release policy "
                            "(the emulator has no attestation service).", "KeyReleasePolicyNotSatisfied")

    async def _attestation(self, call: Call) -> Reply:
        entry, ver = self._version(call)
        result = self.bundle(entry, ver)
        statement = json.dumps({"kid": self.kid(entry, ver), "kty": ver.kty, "emulated": True}).encode()
        result["attributes"]["attestation"] = {
            "certificatePemFile": b64e(b"-----BEGIN CERTIFICATE-----\nemulated\n-----END CERTIFICATE-----\n"),
            "privateKeyAttestation": b64e(statement),
            "publicKeyAttestation": b64e(statement),
            "version": "1.0",
        }
        return Reply(200, result)

    def _crypto_handler(self, op: str):
        key_op = _OPS[op]

        async def handler(call: Call) -> Reply:
            entry, ver = self._version(call)
            _check_usable(ver, key_op)
            body = call.json()
            alg = body.get("alg")
            if not isinstance(alg, str) or not alg:
                raise bad_parameter("The parameter 'alg' is required.")
            value = b64d(body.get("value"), "value")
            material = ver.material
            result: dict = {"alg": alg, "kid": self.kid(entry, ver)}
            # Private RSA operations above 2048 bits take milliseconds: keep them off the loop.
            heavy = material.family == "RSA" and material.size > 2048 and key_op in _PRIVATE_OPS
            if key_op == "encrypt":
                out = crypto.encrypt(material, alg, value, _opt_b64(body, "iv"), _opt_b64(body, "aad"))
                result.update({k: b64e(v) for k, v in out.items()})
            elif key_op == "verify":
                digest = b64d(body.get("digest"), "digest")
                result["value"] = crypto.verify(material, alg, digest, value)
            else:
                args = {
                    "decrypt": (crypto.decrypt, material, alg, value, _opt_b64(body, "iv"), _opt_b64(body, "aad"),
                                _opt_b64(body, "tag")),
                    "wrapKey": (crypto.wrap, material, alg, value),
                    "unwrapKey": (crypto.unwrap, material, alg, value),
                    "sign": (crypto.sign, material, alg, value),
                }[key_op]
                result["value"] = b64e(await self._offload(*args) if heavy else args[0](*args[1:]))
            return Reply(200, result)

        return handler


def _check_usable(ver: KeyVersion, key_op: str) -> None:
    """403 unless the version is enabled and ``key_op`` is permitted by its key_ops and dates.

    A disabled key refuses every operation, public ones (encrypt, wrap, verify) included,
    whatever its type and key_ops: disabling is how an operator stops a key's use.
    """
    if not ver.enabled:
        raise key_forbidden(f"Operation {key_op} is not allowed on a disabled key.", "KeyDisabled")
    if key_op not in ver.key_ops:
        raise key_forbidden(f"Operation {key_op} is not permitted on this key.", "KeyOperationForbidden")
    if key_op in _TIME_CONTROLLED_OPS:
        now = time.time()
        if ver.nbf is not None and now < ver.nbf:
            raise key_forbidden(f"Operation {key_op} is not allowed on a key that is not yet valid.", "KeyNotYetValid")
        if ver.exp is not None and now >= ver.exp:
            raise key_forbidden(f"Operation {key_op} is not allowed on an expired key.", "KeyExpired")


def _opt_b64(body: dict, member: str) -> Optional[bytes]:
    value = body.get(member)
    return None if value is None else b64d(value, member)


def _duration_seconds(text, member: str = "duration") -> int:
    """Seconds in an ISO-8601 duration (years 365 days, months 30); 400 if malformed."""
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise bad_parameter(f"The {member} '{text}' is not a valid ISO 8601 duration (e.g. P90D, P1Y).")
    return sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_SECONDS, strict=True) if part)


def _validate_actions(actions, expiry_seconds: Optional[int]) -> list[dict]:
    """Normalized lifetimeActions, or 400 BadParameter explaining what is wrong."""
    if actions is None:
        return []
    if not isinstance(actions, list):
        raise bad_parameter("The parameter 'lifetimeActions' must be an array.")
    result, seen = [], set()
    for action in actions:
        if not isinstance(action, dict) or not isinstance(action.get("trigger"), dict):
            raise bad_parameter("Each lifetime action needs a 'trigger' object and an 'action' object.")
        kind = (action.get("action") or {}).get("type") if isinstance(action.get("action"), dict) else None
        canonical = {"rotate": "Rotate", "notify": "Notify"}.get(kind.lower() if isinstance(kind, str) else "")
        if canonical is None:
            raise bad_parameter(f"The lifetime action type '{kind}' is not valid; use 'Rotate' or 'Notify'.")
        if canonical in seen:
            raise bad_parameter(f"The rotation policy has more than one '{canonical}' action.")
        seen.add(canonical)
        trigger = {k: v for k, v in action["trigger"].items() if v is not None}
        if set(trigger) not in ({"timeAfterCreate"}, {"timeBeforeExpiry"}):
            raise bad_parameter("Each lifetime action trigger must set exactly one of 'timeAfterCreate' "
                                "and 'timeBeforeExpiry'.")
        (member, value), = trigger.items()
        seconds = _duration_seconds(value, member)
        if seconds < MIN_ROTATION_WINDOW:
            raise bad_parameter(f"The {member} '{value}' is too short; the minimum is P7D.")
        if member == "timeBeforeExpiry":
            if expiry_seconds is None:
                raise bad_parameter("A 'timeBeforeExpiry' trigger requires the policy's 'expiryTime'.")
            if seconds >= expiry_seconds:
                raise bad_parameter(f"The timeBeforeExpiry '{value}' must be shorter than the expiryTime.")
        if member == "timeAfterCreate" and expiry_seconds is not None and seconds >= expiry_seconds:
            raise bad_parameter(f"The timeAfterCreate '{value}' must be shorter than the expiryTime.")
        result.append({"trigger": {member: value}, "action": {"type": canonical}})
    return result


def _encode_skiptoken(seq: int) -> str:
    return b64e(json.dumps({"NextMarker": seq}).encode())


def _decode_skiptoken(token: Optional[str]) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(b64d(token, "$skiptoken"))["NextMarker"])
    except (ValueError, KeyError, TypeError, HsmError) as exc:
        raise bad_parameter("The value of '$skiptoken' is invalid.") from exc
