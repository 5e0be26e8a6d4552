"""Posture checks: a registry of small functions, each reading other apps' selectors or the
gateway and answering pass / fail / not applicable / unknown, with the evidence it read
(values and where from) and the fix (a sentence and the portal page that does it).

Other apps add checks with `check_register` from their AppConfig.ready. A check never
writes: the run (compliance_app.services.posture_run_execute) stores what it answers. A
check that cannot read its data answers "unknown" with the reason, never raises.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import logging

import isodate
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from portal.errors import PortalError

logger = logging.getLogger(__name__)
PASS, FAIL, NA, UNKNOWN = "pass", "fail", "na", "unknown"
CRYPTO_ROLES = ("Managed HSM Crypto User", "Managed HSM Crypto Officer")
ADMIN_ROLE = "Managed HSM Administrator"
RETENTION_DAYS = 90
BACKUP_MAX_HOURS = 24
ROTATION_MAX_DAYS = 730


@dataclass
class Finding:
    """What one check answers for one HSM (or the estate)."""

    status: str
    summary: str
    evidence: dict = field(default_factory=dict)
    fix: str = ""
    fix_url: str = ""


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    function: Callable
    per_hsm: bool = True


CHECKS: dict[str, Check] = {}


def check_register(check_id: str, title: str, *, per_hsm: bool = True):
    """Decorator: add a check (function(hsm=..., ctx=...) -> Finding) to the registry."""
    def wrap(function: Callable) -> Callable:
        CHECKS[check_id] = Check(check_id, title, function, per_hsm)
        return function
    return wrap


class Context:
    """Reads shared by the checks of one run (the HSM resource is read once per HSM)."""

    def __init__(self, now=None) -> None:
        self.now = now or timezone.now()
        self._resources: dict[str, dict | PortalError] = {}

    def resource(self, hsm) -> dict:
        """The HSM's Resource Manager properties, read once; raises the PortalError it met."""
        if hsm.name not in self._resources:
            from portal.gateway.arm import hsm_resource_get

            try:
                self._resources[hsm.name] = hsm_resource_get(hsm)
            except PortalError as exc:
                self._resources[hsm.name] = exc
        value = self._resources[hsm.name]
        if isinstance(value, PortalError):
            raise value
        return value


class Unreadable(PortalError):
    """The data a check needs was never read by the portal; says where to read it."""

    code = "posture_unreadable"

    def __init__(self, message: str, *, fix: str, fix_url: str) -> None:
        super().__init__(message, code=self.code)
        self.fix, self.fix_url = fix, fix_url


def run_check(check: Check, *, hsm, ctx: Context) -> Finding:
    """One check's answer; a PortalError while reading becomes "unknown" with its reason."""
    try:
        return check.function(hsm=hsm, ctx=ctx)
    except PortalError as exc:
        return Finding(UNKNOWN, f"Could not read the data: {exc.message}",
                       {"error": exc.code}, getattr(exc, "fix", ""), getattr(exc, "fix_url", ""))
    except Exception as exc:  # one broken check (e.g. an app's) never stops the others
        logger.exception("Posture check %s failed", check.id)
        return Finding(UNKNOWN, f"The check itself failed ({exc.__class__.__name__}); the "
                                "portal's log has the details.", {"error": exc.__class__.__name__})


def _arm_source(hsm, prop: str) -> str:
    return f"Azure Resource Manager, {hsm.arm_resource_id or hsm.name}: properties.{prop}"


def _url(name: str, **kwargs) -> str:
    return reverse(name, kwargs=kwargs)


def _when(value) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


# -- the HSM resource (Resource Manager) ----------------------------------------------------

@check_register("purge_protection", "Purge protection is on")
def purge_protection(*, hsm, ctx: Context) -> Finding:
    on = ctx.resource(hsm)["purge_protection"]
    return Finding(PASS if on else FAIL,
                   "Purge protection is on." if on else
                   "Purge protection is off: a deleted key can be purged before its retention ends.",
                   {"enablePurgeProtection": on, "source": _arm_source(hsm, "enablePurgeProtection")},
                   "" if on else "Turn on purge protection on the HSM's Azure resource page "
                                 "(it cannot be turned off again).",
                   "" if on else _url("cmk:hsm-resource", hsm_id=hsm.name))


@check_register("soft_delete_retention", "Soft-delete retention is 90 days")
def soft_delete_retention(*, hsm, ctx: Context) -> Finding:
    days = ctx.resource(hsm)["soft_delete_retention_days"]
    ok = days is not None and days >= RETENTION_DAYS
    return Finding(PASS if ok else FAIL,
                   f"Deleted keys are kept {days} days." if days is not None else
                   "The HSM does not report a soft-delete retention.",
                   {"softDeleteRetentionInDays": days, "required": RETENTION_DAYS,
                    "source": _arm_source(hsm, "softDeleteRetentionInDays")},
                   "" if ok else "Retention is chosen when an HSM is created: create a "
                                 "replacement with 90 days and move the keys (restore a backup).",
                   "" if ok else _url("cmk:hsm-resource", hsm_id=hsm.name))


@check_register("public_network_access", "Public network access off, with an approved private endpoint")
def public_network_access(*, hsm, ctx: Context) -> Finding:
    res = ctx.resource(hsm)
    access = res["public_network_access"]
    approved = [p["name"] for p in res["private_endpoint_connections"] if p["status"] == "Approved"]
    evidence = {"publicNetworkAccess": access, "approvedPrivateEndpoints": approved,
                "privateEndpointConnections": [{"name": p["name"], "status": p["status"]}
                                               for p in res["private_endpoint_connections"]],
                "source": _arm_source(hsm, "publicNetworkAccess, privateEndpointConnections")}
    problems = []
    if access != "Disabled":
        problems.append("public network access is enabled")
    if not approved:
        problems.append("no private endpoint connection is approved")
    if not problems:
        return Finding(PASS, f"Public network access is disabled; private endpoint "
                             f"{', '.join(approved)} is approved.", evidence)
    return Finding(FAIL, "The HSM is reachable from the internet or not privately: "
                         + " and ".join(problems) + ".", evidence,
                   "Approve a private endpoint connection, then disable public network access, "
                   "on the HSM's Azure resource page.", _url("cmk:hsm-resource", hsm_id=hsm.name))


@check_register("diagnostic_logs", "Diagnostic logs (AuditEvent) are enabled")
def diagnostic_logs(*, hsm, ctx: Context) -> Finding:
    from portal.gateway.posture import hsm_diagnostic_settings

    found = hsm_diagnostic_settings(hsm)
    on = [s["name"] for s in found if s["audit_events"] and s["destinations"]]
    evidence = {"settings": found, "source": f"Azure Resource Manager, "
                f"{hsm.arm_resource_id}/providers/Microsoft.Insights/diagnosticSettings"}
    if on:
        return Finding(PASS, f"Diagnostic setting {', '.join(on)} sends AuditEvent logs.", evidence)
    return Finding(FAIL, "No diagnostic setting sends the HSM's AuditEvent logs anywhere: what "
                         "the HSM records is lost.", evidence,
                   "Create a diagnostic setting on the HSM (Azure Monitor) with the AuditEvent "
                   "category (or the audit group) to a storage account or Log Analytics workspace.",
                   _url("cmk:hsm-resource", hsm_id=hsm.name))


# -- recovery (dr_app) ----------------------------------------------------------------------

@check_register("backup_fresh", "Last successful backup is younger than 24 hours")
def backup_fresh(*, hsm, ctx: Context) -> Finding:
    from dr_app.selectors import backup_latest

    latest = backup_latest(hsm=hsm)
    finished = latest.finished if latest else None
    evidence = {"last_successful_backup": _when(finished), "folder": latest.folder if latest else None,
                "max_age_hours": BACKUP_MAX_HOURS, "source": "dr_app backup catalog"}
    fix = ("Back up now, or add a schedule that backs up at least daily, on the HSM's Backups tab.",
           _url("dr:backup-list", hsm_id=hsm.name))
    if finished is None:
        return Finding(FAIL, "The HSM has never been backed up successfully.", evidence, *fix)
    age = ctx.now - finished
    evidence["age_hours"] = round(age.total_seconds() / 3600, 1)
    if age <= timedelta(hours=BACKUP_MAX_HOURS):
        return Finding(PASS, f"Last successful backup {evidence['age_hours']} hours ago.", evidence)
    return Finding(FAIL, f"Last successful backup {evidence['age_hours']} hours ago.", evidence, *fix)


@check_register("drill_fresh", "Last DR drill passed within the configured period")
def drill_fresh(*, hsm, ctx: Context) -> Finding:
    from django.db.models import Q

    from dr_app.selectors import drill_list

    days = settings.POSTURE_DRILL_MAX_DAYS
    drill = drill_list().filter(Q(primary=hsm) | Q(secondary=hsm), passed=True,
                                finished__isnull=False).order_by("-finished").first()
    evidence = {"last_passed_drill": _when(drill.finished) if drill else None,
                "drill_id": drill.pk if drill else None, "max_age_days": days,
                "source": "dr_app DR drill history"}
    fix = (f"Run a DR drill (it must pass) at least every {days} days.", _url("dr:drill-list"))
    if drill is None:
        return Finding(FAIL, "No DR drill involving this HSM has passed.", evidence, *fix)
    age_days = (ctx.now - drill.finished).total_seconds() / 86400
    evidence["age_days"] = round(age_days, 1)
    if age_days <= days:
        return Finding(PASS, f"DR drill {drill.pk} passed {evidence['age_days']} days ago.", evidence)
    return Finding(FAIL, f"The last passing DR drill was {evidence['age_days']} days ago.",
                   evidence, *fix)


@check_register("custody", "Security-domain quorum and custody are current")
def custody(*, hsm, ctx: Context) -> Finding:
    from dr_app.security_domain_selectors import custodian_list, custody_findings, sd_state_get

    state = sd_state_get(hsm=hsm)
    custodians = list(custodian_list(hsm=hsm))
    findings = custody_findings(hsm=hsm, now=ctx.now)
    evidence = {"quorum": state.quorum, "custodians": len(custodians),
                "findings": [{"problem": f.problem, "message": f.message} for f in findings],
                "source": "dr_app security-domain custody ledger"}
    fix_url = _url("dr:sd-overview", hsm_id=hsm.name)
    if not custodians:
        return Finding(FAIL, "No security-domain custodian is recorded for this HSM: nobody is "
                             "known to hold a share of its recovery.", evidence,
                       "Record the custodians and the quorum on the HSM's Security domain page.",
                       fix_url)
    if findings:
        return Finding(FAIL, " ".join(f.message for f in findings)[:480], evidence,
                       "Ask each custodian to prove custody of their key (a signed challenge) on "
                       "the Security domain page; replace expired certificates.", fix_url)
    return Finding(PASS, f"{len(custodians)} custodians proved custody; quorum "
                         f"{state.quorum if state.quorum is not None else 'not recorded'}.", evidence)


# -- keys (keys_app inventory) --------------------------------------------------------------

def _inventory(hsm):
    from keys_app.selectors import KeyFilter, inventory_state, key_list

    state = inventory_state(hsm=hsm)
    keys = list(key_list(hsm=hsm, filters=KeyFilter(state="active")))
    synced = state.last_synced_at if state is not None else None
    if synced is None and not keys:
        raise Unreadable(f"The key inventory of {hsm.name} has never been read.",
                         fix="Refresh the inventory on the HSM's key list.",
                         fix_url=_url("keys:key-list", hsm_id=hsm.name))
    return synced, keys


@check_register("keys_rotation_or_expiry", "Every key has a rotation policy or an expiry")
def keys_rotation_or_expiry(*, hsm, ctx: Context) -> Finding:
    synced, keys = _inventory(hsm)
    bare = [k.name for k in keys if k.rotation_policy is None and k.expires is None]
    evidence = {"keys": len(keys), "without_policy_or_expiry": bare[:200],
                "inventory_synced_at": _when(synced), "source": "keys_app inventory"}
    if not keys:
        return Finding(NA, "The HSM has no keys.", evidence)
    if not bare:
        return Finding(PASS, f"All {len(keys)} keys have a rotation policy or an expiry.", evidence)
    return Finding(FAIL, f"{len(bare)} of {len(keys)} keys have neither a rotation policy nor an "
                         f"expiry: {', '.join(bare[:5])}{'…' if len(bare) > 5 else ''}.", evidence,
                   "Give each key a rotation policy (its Rotation tab) or an expiry date.",
                   _url("keys:key-list", hsm_id=hsm.name) + "?rotation=no&expiry=none")


def _days(duration: str | None) -> float | None:
    if not duration:
        return None
    try:
        value = isodate.parse_duration(duration)
    except (isodate.ISO8601Error, ValueError):
        return None
    if isinstance(value, isodate.Duration):
        return float(value.years) * 365 + float(value.months) * 30 + value.tdelta.total_seconds() / 86400
    return value.total_seconds() / 86400


def rotation_interval_days(policy: dict | None) -> float | None:
    """Days between automatic rotations under a policy (None when it never rotates)."""
    for action in (policy or {}).get("lifetime_actions", []):
        if action.get("action") != "Rotate":
            continue
        after = _days(action.get("time_after_create"))
        if after is not None:
            return after
        before, expires = _days(action.get("time_before_expiry")), _days(policy.get("expires_after"))
        if before is not None and expires is not None:
            return expires - before
    return None


@check_register("rotation_interval", "Rotation intervals are at most 2 years")
def rotation_interval(*, hsm, ctx: Context) -> Finding:
    synced, keys = _inventory(hsm)
    rotating = {k.name: rotation_interval_days(k.rotation_policy) for k in keys}
    rotating = {name: days for name, days in rotating.items() if days is not None}
    long = sorted(name for name, days in rotating.items() if days > ROTATION_MAX_DAYS)
    evidence = {"rotating_keys": len(rotating), "longer_than_2_years": {n: round(rotating[n]) for n in long[:200]},
                "max_days": ROTATION_MAX_DAYS, "inventory_synced_at": _when(synced),
                "source": "keys_app inventory (rotation policies)"}
    if not rotating:
        return Finding(NA, "No key rotates automatically.", evidence)
    if not long:
        return Finding(PASS, f"All {len(rotating)} rotating keys rotate within 2 years.", evidence)
    return Finding(FAIL, f"{len(long)} keys rotate less often than every 2 years: "
                         f"{', '.join(long[:5])}.", evidence,
                   "Shorten the rotation interval to 2 years or less on each key's Rotation tab.",
                   _url("keys:key-list", hsm_id=hsm.name) + "?rotation=yes")


# -- access (access_app, the directory) -----------------------------------------------------

def _assignments_read(hsm) -> None:
    """An HSM always has an Administrator: no assignment at all means never read."""
    from access_app.selectors import role_assignments

    if not role_assignments(hsm=hsm).exists():
        raise Unreadable(f"The role assignments of {hsm.name} have never been read.",
                         fix="Refresh them on the HSM's Access tab.",
                         fix_url=_url("access:hsm-access", hsm_id=hsm.name))


@check_register("crypto_roles_individuals", "Crypto User/Officer at / not granted to individuals")
def crypto_roles_individuals(*, hsm, ctx: Context) -> Finding:
    from access_app.selectors import role_assignments
    from portal.gateway.directory import principals_by_ids

    _assignments_read(hsm)
    rows = [r for r in role_assignments(hsm=hsm, scope="/") if r.role_name in CRYPTO_ROLES]
    kinds = principals_by_ids([r.principal_id for r in rows])
    listed = [{"principal_id": r.principal_id, "role": r.role_name,
               "kind": kinds.get(r.principal_id, {}).get("kind", "unknown"),
               "name": kinds.get(r.principal_id, {}).get("display_name", "")} for r in rows]
    users = [item for item in listed if item["kind"] == "user"]
    unknown = [item for item in listed if item["kind"] == "unknown"]
    evidence = {"assignments_at_root": listed,
                "source": "access_app role assignments at / (last read from the HSM), kinds "
                          "from the directory (Microsoft Graph)"}
    fix_url = _url("access:hsm-access", hsm_id=hsm.name)
    if users:
        names = ", ".join(u["name"] or u["principal_id"] for u in users[:5])
        return Finding(FAIL, f"{len(users)} people hold a crypto role over every key: {names}.",
                       evidence, "Remove these assignments and grant the role at a key's scope, "
                                 "time-boxed, through an access request.", fix_url)
    if unknown:
        return Finding(UNKNOWN, f"The directory could not say what {len(unknown)} principals are "
                                "(user or application).", evidence)
    return Finding(PASS, f"{len(listed)} crypto-role assignments at / all belong to applications "
                         "or groups.", evidence)


@check_register("standing_admins", "No standing Administrator assignments")
def standing_admins(*, hsm, ctx: Context) -> Finding:
    from access_app.models import RoleAssignmentRecord
    from access_app.selectors import role_assignments

    _assignments_read(hsm)
    rows = [r for r in role_assignments(hsm=hsm) if r.role_name == ADMIN_ROLE]
    own = [r.principal_id for r in rows if r.origin == RoleAssignmentRecord.Origin.SELF]
    standing = [r for r in rows if r.origin != RoleAssignmentRecord.Origin.SELF
                and (r.access_request is None or r.access_request.expires_at is None)]
    evidence = {"administrators": [{"principal_id": r.principal_id, "scope": r.scope,
                                    "origin": r.origin,
                                    "expires_at": _when(r.access_request.expires_at)
                                    if r.access_request else None} for r in rows],
                "portal_identity_excluded": own,
                "source": "access_app role assignments (last read from the HSM) and access requests"}
    if standing:
        return Finding(FAIL, f"{len(standing)} Administrator assignments never expire: "
                             f"{', '.join(r.principal_id for r in standing[:5])}.", evidence,
                       "Revoke them and grant Administrator just in time through an access "
                       "request with a duration.", _url("access:hsm-access", hsm_id=hsm.name))
    return Finding(PASS, "Every Administrator assignment (besides the portal's own identity) "
                         "expires.", evidence)


# -- data residency -------------------------------------------------------------------------

def allowed_regions() -> list[str]:
    return [r.replace(" ", "").lower() for r in settings.PORTAL_ALLOWED_REGIONS if r.strip()]


@check_register("data_residency", "HSM, replicas and backup storage are in allowed regions")
def data_residency(*, hsm, ctx: Context) -> Finding:
    allowed = allowed_regions()
    if not allowed:
        return Finding(NA, "No allowed region set is configured (PORTAL_ALLOWED_REGIONS).",
                       {"allowed": []})
    res = ctx.resource(hsm)
    places = {"HSM": (res["location"] or "").replace(" ", "").lower()}
    for region in res["regions"]:
        if not region["is_primary"]:
            places[f"replica {region['name']}"] = region["name"].replace(" ", "").lower()
    evidence = {"allowed": allowed, "source": _arm_source(hsm, "location, regions")}
    storage_unknown = ""
    account = settings.AZURE_STORAGE_ACCOUNT_NAME
    if account:
        from portal.gateway.arm import parse_id
        from portal.gateway.posture import storage_account_location

        try:
            found = storage_account_location(subscription_id=parse_id(hsm.arm_resource_id)["sub"],
                                             name=account)
        except PortalError as exc:
            found, storage_unknown = None, exc.message
        if found:
            places[f"backup storage {account}"] = (found["location"] or "").replace(" ", "").lower()
        else:
            storage_unknown = storage_unknown or (f"Backup storage account {account} is not in the "
                                                  "HSM's subscription in Resource Manager.")
    evidence["regions"] = places
    outside = {what: where for what, where in places.items() if where not in allowed}
    if outside:
        return Finding(FAIL, "Outside the allowed regions: " + ", ".join(
            f"{what} in {where}" for what, where in outside.items()) + ".", evidence,
            "Remove replicas outside the allowed regions on the HSM's Azure resource page; keep "
            "backups in an account in an allowed region.", _url("cmk:hsm-resource", hsm_id=hsm.name))
    if storage_unknown:
        evidence["backup_storage"] = storage_unknown
        return Finding(UNKNOWN, f"The HSM and its replicas are in allowed regions; {storage_unknown}",
                       evidence)
    return Finding(PASS, "The HSM, its replicas and backup storage are in "
                         + ", ".join(sorted(set(places.values()))) + ".", evidence)
