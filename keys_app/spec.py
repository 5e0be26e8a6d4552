"""What a key request must satisfy before anything is sent to the HSM: the service's own
rules (names, types, sizes, curves, operations, dates, tags), then the key standards file.
"""
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import yaml
from django.conf import settings
from django.utils import timezone

from portal.errors import BadInput
from keys_app import rotation

# Key Vault / Managed HSM object names: 1-127 ASCII letters, digits and hyphens.
SERVICE_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
KEY_TYPES = {
    "RSA-HSM": {"sizes": (2048, 3072, 4096),
                # "import": a BYOK key-exchange key (KEK), which should hold nothing else.
                "ops": ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import")},
    "EC-HSM": {"curves": ("P-256", "P-384", "P-521", "P-256K"), "ops": ("sign", "verify")},
    "oct-HSM": {"sizes": (128, 192, 256),
                "ops": ("encrypt", "decrypt", "wrapKey", "unwrapKey")},
}
TYPE_ALIASES = {"RSA": "RSA-HSM", "EC": "EC-HSM", "oct": "oct-HSM", "OCT": "oct-HSM"}
MAX_TAGS, MAX_TAG_NAME, MAX_TAG_VALUE = 15, 512, 256
# Every date the portal accepts lies in this window (the HSM keeps Unix seconds, and no key
# needs a date past 2100); dates outside it are refused before any arithmetic on them.
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(2100, 1, 1, tzinfo=UTC)
DATE_BOUNDS_TEXT = "between 1970-01-01 and 2099-12-31 (UTC)"
DATE_LABELS = {"not_before": "The activation date", "expires": "The expiry date"}

PRESETS = {
    "cmk-wrapping": {"label": "CMK wrapping key (RSA 3072, wrap/unwrap)", "kty": "RSA-HSM",
                     "key_size": 3072, "key_ops": ["wrapKey", "unwrapKey"]},
    "signing": {"label": "Signing key (EC P-256, sign/verify)", "kty": "EC-HSM",
                "curve": "P-256", "key_ops": ["sign", "verify"]},
    "aes": {"label": "AES key (256, encrypt/decrypt/wrap/unwrap)", "kty": "oct-HSM",
            "key_size": 256, "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"]},
    "byok-kek": {"label": "BYOK key-exchange key (RSA 4096, import only)", "kty": "RSA-HSM",
                 "key_size": 4096, "key_ops": ["import"]},
}


@dataclass(frozen=True)
class KeySpec:
    """A validated key request (create, or the attributes of an import)."""

    name: str
    kty: str
    key_size: int | None = None
    curve: str | None = None
    public_exponent: int | None = None
    key_ops: tuple[str, ...] = ()
    enabled: bool = True
    not_before: datetime | None = None
    expires: datetime | None = None
    tags: dict = field(default_factory=dict)
    exportable: bool = False
    rotation_policy: dict | None = None


def bad(field_name: str, message: str) -> BadInput:
    return BadInput(message, fields={field_name: [message]})


def name_validate(name) -> str:
    """A key name the service accepts (ASCII only: homoglyphs and paths are refused)."""
    if not isinstance(name, str) or not name:
        raise bad("name", "A key name is required.")
    if len(name) > 127:
        raise bad("name", "A key name has at most 127 characters.")
    if not SERVICE_NAME.match(name):
        raise bad("name", "A key name may contain only ASCII letters, digits and hyphens.")
    return name


def tags_validate(tags) -> dict:
    """Tags as the service limits them: at most 15, names ≤ 512 and values ≤ 256 characters."""
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in tags.items()):
        raise bad("tags", "Tags must be an object of text names and text values.")
    if len(tags) > MAX_TAGS:
        raise bad("tags", f"At most {MAX_TAGS} tags.")
    for key, value in tags.items():
        if not key.strip() or len(key) > MAX_TAG_NAME or len(value) > MAX_TAG_VALUE:
            raise bad("tags", f"Tag '{key[:40]}' is empty or too long (name ≤ 512, value ≤ 256).")
    return dict(tags)


def date_bounded(value, *, field_name: str) -> datetime | None:
    """A date inside the accepted window (naive dates are UTC), or BadInput."""
    if value is None:
        return None
    label = DATE_LABELS.get(field_name, field_name)
    if not isinstance(value, datetime):
        raise bad(field_name, f"{label} must be a date and time, e.g. 2027-01-31T00:00:00Z.")
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    if not EARLIEST_DATE <= value < LATEST_DATE:
        raise bad(field_name, f"{label} must lie {DATE_BOUNDS_TEXT}.")
    return value


def dates_bounded(not_before, expires) -> tuple[datetime | None, datetime | None]:
    """Both dates inside the accepted window, or BadInput naming the first that is not."""
    return (date_bounded(not_before, field_name="not_before"),
            date_bounded(expires, field_name="expires"))


def dates_validate(not_before: datetime | None, expires: datetime | None, *,
                   now: datetime | None = None) -> None:
    """Dates inside the accepted window; expiry in the future and after activation."""
    not_before, expires = dates_bounded(not_before, expires)
    now = now or timezone.now()
    if expires is not None and expires <= now:
        raise bad("expires", "The expiry date is in the past; choose a future date.")
    if not_before is not None and expires is not None and not_before >= expires:
        raise bad("not_before", "The activation date must be before the expiry date.")


def ops_validate(kty: str, key_ops) -> tuple[str, ...]:
    """Operations the key type supports (an empty list means the type's defaults)."""
    allowed = KEY_TYPES[kty]["ops"]
    ops = tuple(key_ops or ())
    unknown = [op for op in ops if op not in allowed]
    if unknown:
        raise bad("key_ops", f"{kty} keys do not support {', '.join(unknown)}; "
                             f"choose from {', '.join(allowed)}.")
    if "import" in ops and len(ops) > 1:
        raise bad("key_ops", "A key-exchange key (import) must allow no other operation.")
    return tuple(dict.fromkeys(ops))


def spec_build(*, name, kty, key_size=None, curve=None, public_exponent=None, key_ops=None,
               enabled=True, not_before=None, expires=None, tags=None, exportable=False,
               rotation_policy=None, apply_default_policy=True) -> KeySpec:
    """A KeySpec that the service would accept and the standards allow, or BadInput."""
    name = name_validate(name)
    kty = TYPE_ALIASES.get(kty, kty)
    if kty not in KEY_TYPES:
        raise bad("kty", "Key type must be RSA-HSM, EC-HSM or oct-HSM.")
    rules = KEY_TYPES[kty]
    if "sizes" in rules:
        key_size = key_size or rules["sizes"][0]
        if key_size not in rules["sizes"]:
            raise bad("key_size", f"{kty} keys are {', '.join(map(str, rules['sizes']))} bits; "
                                  f"{key_size} is not allowed.")
        if curve:
            raise bad("curve", f"{kty} keys have no curve.")
    else:
        curve = curve or rules["curves"][0]
        if curve not in rules["curves"]:
            raise bad("curve", f"EC-HSM curves are {', '.join(rules['curves'])}.")
        if key_size:
            raise bad("key_size", "EC-HSM keys take a curve, not a size.")
    if public_exponent is not None and (kty != "RSA-HSM" or public_exponent not in (3, 17, 65537)):
        raise bad("public_exponent", "Public exponent applies to RSA keys only: 3, 17 or 65537.")
    # Defaults first, then every rule on the dates the key will really have.
    not_before, expires = dates_bounded(not_before, expires)
    expires = expiry_default(not_before, expires)
    dates_validate(not_before, expires)
    if rotation_policy is None and apply_default_policy:
        rotation_policy = standards().get("default_rotation_policy")
    spec = KeySpec(name=name, kty=kty, key_size=key_size, curve=curve,
                   public_exponent=public_exponent, key_ops=ops_validate(kty, key_ops),
                   enabled=bool(enabled), not_before=not_before, expires=expires,
                   tags=tags_validate(tags), exportable=bool(exportable),
                   rotation_policy=rotation.policy_validate(rotation_policy)
                   if rotation_policy else None)
    violations = standards_violations(spec)
    if violations:
        raise BadInput("The key breaks the key standards: " + " ".join(violations),
                       code="key_standards", fields={"standards": violations})
    return spec


def import_spec_build(*, name, kty, key_size=None, curve=None, key_ops=None, enabled=True,
                      not_before=None, expires=None, tags=None) -> KeySpec:
    """The rules of create, for a key brought in from outside (a JWK or a BYOK blob): the
    service's types, sizes and curves (when the upload shows them), its operations, the
    dates with the default expiry, and the key standards. Or BadInput.
    """
    name = name_validate(name)
    kty = TYPE_ALIASES.get(kty, kty)
    if kty not in KEY_TYPES:
        raise bad("key", f"Key type {str(kty)[:20]} cannot be imported into a Managed HSM: "
                         f"kty must be RSA, EC or oct (or their -HSM forms).")
    rules = KEY_TYPES[kty]
    if key_size is not None and "sizes" in rules and key_size not in rules["sizes"]:
        raise bad("key", f"{kty} keys are {', '.join(map(str, rules['sizes']))} bits; this key "
                         f"has {key_size}.")
    if curve and curve not in rules.get("curves", ()):
        raise bad("key", f"Curve {str(curve)[:20]} is not one of "
                         f"{', '.join(rules.get('curves', ())) or 'the curves'} of {kty} keys.")
    if key_ops is not None and not isinstance(key_ops, (list, tuple)):
        raise bad("key_ops", "key_ops must be a list of operations.")
    ops = ops_validate(kty, key_ops)
    if "import" in ops:
        raise bad("key_ops", "A key-exchange key (import) is created in the HSM, never imported; "
                             "drop 'import' from key_ops.")
    not_before, expires = dates_bounded(not_before, expires)
    expires = expiry_default(not_before, expires)
    dates_validate(not_before, expires)
    spec = KeySpec(name=name, kty=kty, key_size=key_size, curve=curve or None, key_ops=ops,
                   enabled=bool(enabled), not_before=not_before, expires=expires,
                   tags=tags_validate(tags))
    violations = standards_violations(spec)
    if violations:
        raise BadInput("The key breaks the key standards: " + " ".join(violations),
                       code="key_standards", fields={"standards": violations})
    return spec


def expiry_default(not_before: datetime | None, expires: datetime | None, *,
                   now: datetime | None = None) -> datetime | None:
    """The expiry a new key gets: the one asked for, else activation (or now) plus the
    standards' maximum lifetime. Call with bounded dates; a default that would already have
    passed, or that leaves the accepted window, is BadInput naming the activation date."""
    max_days = standards().get("max_lifetime_days")
    if expires is not None or not max_days:
        return expires
    now = now or timezone.now()
    expires = (not_before or now) + timedelta(days=int(max_days))
    if expires <= now:
        raise bad("not_before", f"With activation on {not_before:%Y-%m-%d}, the longest lifetime "
                                f"the key standards allow ({max_days} days) ended on "
                                f"{expires:%Y-%m-%d}: choose a later activation date.")
    if expires >= LATEST_DATE:
        raise bad("not_before", f"With activation on {not_before:%Y-%m-%d}, the default expiry "
                                f"({max_days} days later) would fall after 2099-12-31: choose an "
                                f"earlier activation date or give an expiry date.")
    return expires


@lru_cache(maxsize=4)
def _load_standards(path: str, mtime: float) -> dict:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping")
    return data


def standards() -> dict:
    """The key standards file (re-read when it changes)."""
    path = Path(settings.KEY_STANDARDS_FILE)
    return _load_standards(str(path), path.stat().st_mtime)


def standards_violations(spec) -> list[str]:
    """Sentences naming each standard the key (a KeySpec or a KeyRecord) breaks."""
    rules, found = standards(), []
    allowed = (rules.get("allowed") or {}).get(spec.kty)
    if allowed is None:
        found.append(f"Key type {spec.kty} is not allowed.")
    else:
        if "sizes" in allowed and spec.key_size and spec.key_size not in allowed["sizes"]:
            found.append(f"{spec.kty} size {spec.key_size} is not allowed.")
        if "curves" in allowed and spec.curve and spec.curve not in allowed["curves"]:
            found.append(f"Curve {spec.curve} is not allowed.")
    missing = [tag for tag in rules.get("required_tags") or [] if not (spec.tags or {}).get(tag)]
    if missing:
        found.append(f"Required tags missing: {', '.join(missing)}.")
    pattern = rules.get("name_pattern")
    if pattern and not re.match(pattern, spec.name):
        found.append(f"Name '{spec.name}' does not match {pattern}.")
    max_days = rules.get("max_lifetime_days")
    if max_days and spec.expires is not None:
        start = spec.not_before or getattr(spec, "created_on", None) or timezone.now()
        if spec.expires - start > timedelta(days=int(max_days)) + timedelta(minutes=5):
            found.append(f"Lifetime exceeds {max_days} days.")
    return found


def spec_from_request(data: dict) -> KeySpec:
    """A KeySpec from either door's cleaned input: a preset fills what the request leaves out.

    `rotation_policy` may be a policy dict, None (the standards' default) or "none" (no policy).
    """
    preset = PRESETS.get(data.get("preset") or "")
    if data.get("preset") and preset is None:
        raise bad("preset", f"Unknown preset; choose one of {', '.join(PRESETS)}.")
    merged = {**{k: v for k, v in (preset or {}).items() if k != "label"},
              **{k: v for k, v in data.items() if v not in (None, "", [], ())}}
    policy = data.get("rotation_policy")
    return spec_build(name=merged.get("name"), kty=merged.get("kty", ""),
                      key_size=merged.get("key_size"), curve=merged.get("curve"),
                      public_exponent=merged.get("public_exponent"),
                      key_ops=merged.get("key_ops"), not_before=merged.get("not_before"),
                      expires=merged.get("expires"), tags=merged.get("tags"),
                      rotation_policy=None if policy == "none" else policy,
                      apply_default_policy=policy != "none")


def tags_parse(text: str) -> dict:
    """Tags from 'name=value' lines (the form's textarea)."""
    tags = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise bad("tags", f"Line {number}: write tags as name=value, one per line.")
        tags[name.strip()] = value.strip()
    return tags
