"""Plain dicts from Azure SDK key objects, so that services and the cache never hold SDK types.

Only public metadata comes out: never private key members (and the HSM sends none).
"""
import base64
import binascii
import re

from azure.keyvault.keys import (JsonWebKey, KeyRotationLifetimeAction, KeyRotationPolicy,
                                 KeyVaultKey)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PUBLIC_MEMBERS = ("kid", "kty", "key_ops", "n", "e", "crv", "x", "y")
_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1(),
           "P-256K": ec.SECP256K1()}


def _attribute(props, name: str):
    # Fields the SDK models do not surface (e.g. attributes.key_size for oct keys) are kept
    # in the generated model's mapping.
    attributes = getattr(props, "_attributes", None)
    try:
        return attributes.get(name) if attributes is not None else None
    except AttributeError:
        return None


def properties_snapshot(props) -> dict:
    """Attributes of a key version (KeyProperties) as a dict."""
    return {
        "name": props.name, "version": props.version or "", "enabled": bool(props.enabled),
        "not_before": props.not_before, "expires": props.expires_on,
        "created_on": props.created_on, "updated_on": props.updated_on,
        "tags": dict(props.tags or {}), "exportable": bool(props.exportable),
        "has_release_policy": props.release_policy is not None,
        "recoverable_days": props.recoverable_days,
        # The SDK hands back an enum after a write and text after a read: keep the text.
        "recovery_level": str(getattr(props.recovery_level, "value", props.recovery_level) or ""),
    }


def key_snapshot(key: KeyVaultKey) -> dict:
    """Everything the inventory keeps about a key's latest version."""
    jwk = key.key
    kty = str(jwk.kty.value if hasattr(jwk.kty, "value") else jwk.kty)
    key_size = None
    if jwk.n:
        key_size = len(jwk.n) * 8
    elif kty.startswith("oct"):
        key_size = _attribute(key.properties, "key_size")
    curve = jwk.crv.value if hasattr(jwk.crv, "value") else (jwk.crv or "")
    ops = [op.value if hasattr(op, "value") else str(op) for op in (jwk.key_ops or [])]
    return {**properties_snapshot(key.properties), "kty": kty, "key_size": key_size,
            "curve": curve or "", "key_ops": sorted(ops)}


def deleted_snapshot(deleted) -> dict:
    """A soft-deleted key: its snapshot plus deletion dates."""
    snapshot = key_snapshot(deleted) if getattr(deleted, "key", None) and deleted.key.kty else \
        properties_snapshot(deleted.properties)
    return {**snapshot, "deleted_on": deleted.deleted_date,
            "scheduled_purge_on": deleted.scheduled_purge_date}


def public_jwk(key: KeyVaultKey) -> dict:
    """The key's public JWK (no private members exist for HSM keys; none are copied anyway)."""
    data = {}
    for member in PUBLIC_MEMBERS:
        value = getattr(key.key, member, None)
        if value in (None, b"", []):
            continue
        if isinstance(value, bytes):
            value = base64.urlsafe_b64encode(value).rstrip(b"=").decode()
        elif member == "key_ops":
            value = [op.value if hasattr(op, "value") else str(op) for op in value]
        elif hasattr(value, "value"):
            value = value.value
        data[member] = value
    return data


def public_pem(key: KeyVaultKey) -> bytes | None:
    """The public key as PEM (SubjectPublicKeyInfo); None for symmetric keys."""
    jwk = key.key
    if jwk.n and jwk.e:
        public = rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"),
                                      int.from_bytes(jwk.n, "big")).public_key()
    elif jwk.x and jwk.y:
        curve = _CURVES[jwk.crv.value if hasattr(jwk.crv, "value") else jwk.crv]
        public = ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"),
                                               int.from_bytes(jwk.y, "big"), curve).public_key()
    else:
        return None
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def rotation_policy_snapshot(policy: KeyRotationPolicy | None) -> dict | None:
    """The portal's dict form of a rotation policy; None when it sets nothing.

    A key that never had a policy reads as the service's default (Notify 30 days before
    an expiry the policy does not set): that is no policy either.
    """
    if policy is None or not policy.lifetime_actions:
        return None
    if policy.expires_in is None and not any(
            str(getattr(item.action, "value", item.action)).lower() == "rotate"
            for item in policy.lifetime_actions):
        return None
    actions = []
    for item in policy.lifetime_actions:
        action = item.action.value if hasattr(item.action, "value") else str(item.action)
        entry = {"action": action.capitalize()}
        if item.time_after_create:
            entry["time_after_create"] = item.time_after_create
        if item.time_before_expiry:
            entry["time_before_expiry"] = item.time_before_expiry
        actions.append(entry)
    return {"expires_after": policy.expires_in, "lifetime_actions": actions}


def policy_rotates(policy: dict | None) -> bool:
    """Whether a policy rotates the key automatically (a Notify-only policy does not)."""
    return any(item.get("action") == "Rotate" for item in (policy or {}).get("lifetime_actions", []))


def rotation_policy_for_sdk(policy: dict | None) -> KeyRotationPolicy:
    """An SDK rotation policy from the portal's dict form (None: no actions, i.e. cleared)."""
    policy = policy or {"expires_after": None, "lifetime_actions": []}
    actions = [KeyRotationLifetimeAction(item["action"],
                                         time_after_create=item.get("time_after_create"),
                                         time_before_expiry=item.get("time_before_expiry"))
               for item in policy["lifetime_actions"]]
    return KeyRotationPolicy(lifetime_actions=actions, expires_in=policy.get("expires_after"))


BINARY_MEMBERS = ("n", "e", "d", "dp", "dq", "qi", "p", "q", "k", "x", "y", "t", "key_hsm")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


def base64url_decode(value, *, member: str) -> bytes:
    """Strict base64url (padding optional); ValueError naming the member otherwise."""
    if not isinstance(value, str) or not value or not _BASE64URL.match(value) \
            or len(value.rstrip("=")) % 4 == 1:
        raise ValueError(f"The JWK member '{member}' is not base64url text.")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"The JWK member '{member}' is not base64url text.") from exc


def json_web_key(data: dict) -> JsonWebKey:
    """An SDK JsonWebKey from an uploaded JWK dict (base64url members decoded).

    Raises ValueError (with a sentence naming the member) for a member that does not decode,
    so callers can refuse the upload before anything is audited or sent.
    """
    members = {}
    for name, value in data.items():
        if name in BINARY_MEMBERS:
            # The SDK calls the BYOK blob `t`; on the wire (and in JWK files) it is key_hsm.
            members["t" if name == "key_hsm" else name] = base64url_decode(value, member=name)
        elif name in ("kid", "kty", "crv"):
            if not isinstance(value, str):
                raise ValueError(f"The JWK member '{name}' must be text.")
            members[name] = value
        elif name == "key_ops":
            if not isinstance(value, list) or not all(isinstance(op, str) for op in value):
                raise ValueError("The JWK member 'key_ops' must be a list of operation names.")
            members[name] = value
    return JsonWebKey(**members)
