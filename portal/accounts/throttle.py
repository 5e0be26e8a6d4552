"""Sign-in throttling: slow password guessing down without letting anyone lock a user out.

Every sign-in attempt is counted under three keys, each a `SignInThrottle` row:

- pair: the account and the client address together;
- address: the client address, whatever account it tries (password spraying);
- account: the account, whatever address tries it (address rotation).

A browser that has signed in to the account before (within 30 days, and since the last
password change) shows a signed device cookie; its attempts on that account are counted
under its own device row instead of the pair and address rows (OWASP's "device cookies"),
and the account row does not slow it. So others' guesses, even from the same address
(a shared jump host), never slow the user's own browser; its own failures do.

The account is found the way Django signs in: the typed name goes through the sign-in
form's own username field (strip, then NFKC, as `UsernameField` does) and is looked up
with `get_by_natural_key`, as `ModelBackend` does (so it stays case-sensitive, as the
backend is). " admin", "admin " and fullwidth "ａdmin" are therefore one account. An
existing account is keyed on its id; any other name on an HMAC of it, never its text.

Each failure adds one to every row of the attempt. Once a row holds `free` failures,
each further failure blocks it for a delay that doubles from `base` up to `cap`; while a
row blocks, attempts are refused (429, with the time to try again) before the password is
looked at, and only counted on the row (`refused`). A row forgets everything 24 hours
after its last failure; a successful sign-in clears its pair (or device) row.

| key     | free | first delay | cap    | once slowed       |
|---------|------|-------------|--------|-------------------|
| pair    | 5    | 1 min       | 15 min | 4 guesses an hour |
| address | 20   | 1 min       | 15 min | 4 guesses an hour |
| account | 10   | 30 s        | 5 min  | 12 guesses an hour|
| device  | 5    | 1 min       | 15 min | 4 guesses an hour |

There is no hard lock, and the account row, the one an outsider can drive up, only
slows: it does not apply to an address that has no failure on that account in the last
24 hours, nor to a browser with the account's device cookie. So the real user signs in
with the right password from their own browser, or from an address that has not failed,
however hard someone else guesses; a new address gets that one try, and its first failure
ends the exemption for it. What an attacker gets against one account:

- from one address: 5 guesses, then at most 4 an hour (about 100 a day);
- from many addresses: 10 guesses, then at most 12 an hour (about 300 a day) plus one
  for each address that has not failed on that account in the last 24 hours (IPv6
  addresses count per /64, so one host cannot mint them);
- one address against many accounts: 20 guesses, then at most 4 an hour.

A user without a device cookie (a new browser) who mistypes while someone keeps their
account slowed waits for the account's delay (at most 5 minutes a try; an attacker who
times their guesses can take each turn), signs in from a browser they used before, or
asks an operator for `manage.py sign_in_throttle_clear`.
A stolen device cookie is worth 5 guesses and then 4 an hour, like one address.

Atomic across processes and web nodes: the rows are inserted if absent, then locked with
SELECT ... FOR UPDATE in key order (so concurrent attempts cannot deadlock) to check and
count in one short transaction, committed before the password is checked. The attempt
counts as a failure up front and is taken back if the password was right, so concurrent
guesses can never get more password checks than the allowance.

The audit trail sees only what the throttle let through: each password actually checked
(`auth.sign_in` denied or succeeded) and one `auth.lockout` when a row first blocks (the
next only once the row has been forgotten or cleared); refused attempts write nothing there (their count is on the row). A name that is not an
existing account's is audited as "user:(unknown)" and kept nowhere: people type passwords
into the username box.

The client address is REMOTE_ADDR. gunicorn does not rewrite it from X-Forwarded-For, so
that header is read only when REMOTE_ADDR is one of PORTAL_TRUSTED_PROXIES (nginx), and
then its right-most address that is not a trusted proxy is the client.
"""
import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core import signing
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from portal.accounts.models import SignInThrottle
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.errors import BadInput

PAIR, ADDRESS, ACCOUNT, DEVICE = (SignInThrottle.Scope.PAIR, SignInThrottle.Scope.ADDRESS,
                                  SignInThrottle.Scope.ACCOUNT, SignInThrottle.Scope.DEVICE)
UNKNOWN_TARGET = "user:(unknown)"
RESET_AFTER = timedelta(hours=24)
DEVICE_COOKIE = "portal_device"
DEVICE_COOKIE_AGE = timedelta(days=30)


@dataclass(frozen=True)
class Policy:
    free: int  # failures before any delay
    base: timedelta  # the first delay
    cap: timedelta  # the longest delay

    def delay(self, failures: int) -> timedelta | None:
        """How long a row with this many failures blocks (None: not at all)."""
        if failures < self.free:
            return None
        doublings = min(failures - self.free, 20)
        return min(self.base * (2 ** doublings), self.cap)


POLICIES = {
    PAIR: Policy(free=5, base=timedelta(minutes=1), cap=timedelta(minutes=15)),
    ADDRESS: Policy(free=20, base=timedelta(minutes=1), cap=timedelta(minutes=15)),
    ACCOUNT: Policy(free=10, base=timedelta(seconds=30), cap=timedelta(minutes=5)),
    DEVICE: Policy(free=5, base=timedelta(minutes=1), cap=timedelta(minutes=15)),
}


@dataclass
class SignInAttempt:
    """One sign-in attempt: who it is for, where it comes from, and what it changed."""

    address: str
    user: object | None
    keys: dict  # scope -> SignInThrottle.key
    # key -> (blocked_until this attempt set, the value before), to take back on success
    blocks_set: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"user:{self.user.get_username()}" if self.user is not None else UNKNOWN_TARGET


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or what a trusted proxy says; IPv6 per /64."""
    remote = _parse(request.META.get("REMOTE_ADDR", ""))
    trusted = [ipaddress.ip_network(net, strict=False) for net in settings.PORTAL_TRUSTED_PROXIES]
    client = remote
    if remote is not None and _within(remote, trusted):
        hops = [_parse(hop) for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        for hop in reversed(hops):
            if hop is None:
                break  # a malformed entry: nothing left of it can be trusted
            client = hop
            if not _within(hop, trusted):
                break
    if client is None:
        return "unknown"
    if client.version == 6:
        return str(ipaddress.ip_network(f"{client}/64", strict=False))
    return str(client)


def _parse(text: str):
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _within(address, networks) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def device_cookie_value(*, user) -> str:
    """A new device cookie for a browser that just signed in as the user (signed, random id).

    Signed with the user's password hash mixed in, so a password change retires them all.
    """
    return signing.dumps([user.pk, secrets.token_urlsafe(16)], salt=_device_salt(user))


def _device_id(*, user, cookie: str) -> str | None:
    """The device id of a valid, unexpired device cookie of this user, else None."""
    if not cookie or user is None:
        return None
    try:
        user_pk, device = signing.loads(cookie, salt=_device_salt(user),
                                        max_age=DEVICE_COOKIE_AGE)
    except (signing.BadSignature, TypeError, ValueError):
        return None
    return device if user_pk == user.pk and isinstance(device, str) else None


def _device_salt(user) -> str:
    return f"portal.accounts.device:{user.password}"


def sign_in_attempt(*, username: str, address: str, device_cookie: str = "") -> SignInAttempt:
    """Who a sign-in attempt is for, normalised exactly as Django's form and backend do."""
    name = AuthenticationForm().fields["username"].to_python(username)
    user_model = get_user_model()
    user = None
    if len(name) <= 150:
        try:
            user = user_model._default_manager.get_by_natural_key(name)
        except user_model.DoesNotExist:
            user = None
    if user is not None:
        account = f"user:{user.pk}"
    else:
        account = "name:" + salted_hmac("portal.accounts.throttle", name).hexdigest()
    device = _device_id(user=user, cookie=device_cookie)
    if device is not None:
        keys = {DEVICE: f"device:{account}|{device}", ACCOUNT: f"account:{account}"}
    else:
        keys = {PAIR: f"pair:{account}|{address}", ADDRESS: f"address:{address}",
                ACCOUNT: f"account:{account}"}
    return SignInAttempt(address=address, user=user, keys=keys)


def sign_in_throttle_check(*, attempt: SignInAttempt) -> datetime | None:
    """Refuse the attempt (return when to try again) or count it as a failure up front.

    Atomic: one transaction locks the attempt's rows, checks and counts.
    """
    now = timezone.now()
    with transaction.atomic():
        SignInThrottle.objects.bulk_create(
            [SignInThrottle(key=key, scope=scope) for scope, key in attempt.keys.items()],
            ignore_conflicts=True)
        rows = list(SignInThrottle.objects.select_for_update()
                    .filter(key__in=attempt.keys.values()).order_by("key"))
        for row in rows:
            if row.last_failure is not None and row.last_failure < now - RESET_AFTER:
                row.failures = row.refused = 0
                row.blocked_until = None
                row.lockout_audited = False
        by_scope = {row.scope: row for row in rows}
        # The exemptions that keep an outsider from locking the user out (module docstring).
        exempt = DEVICE in by_scope or by_scope[PAIR].failures == 0
        blocking = [row for row in rows
                    if row.blocked_until is not None and row.blocked_until > now
                    and not (row.scope == ACCOUNT and exempt)]
        if blocking:
            for row in blocking:
                row.refused += 1
            for row in rows:
                row.save()
            return max(row.blocked_until for row in blocking)
        for row in rows:
            previous = row.blocked_until
            row.failures += 1
            row.last_failure = now
            delay = POLICIES[row.scope].delay(row.failures)
            if delay is not None:
                row.blocked_until = now + delay
                attempt.blocks_set[row.key] = (row.blocked_until, previous)
            row.save()
    return None


def sign_in_failed(*, attempt: SignInAttempt, actor, request_id: str,
                   detail: dict | None = None) -> None:
    """Audit a checked, wrong password, and each lock it started (once per lock).

    `detail` adds to the audited detail (e.g. {"method": "break_glass"})."""
    audit_record(actor=actor, action="auth.sign_in", target=attempt.target,
                 request_id=request_id, outcome=AuditEvent.Outcome.DENIED,
                 detail={"reason": "invalid credentials or inactive account",
                         "address": attempt.address, **(detail or {})})
    for key in attempt.blocks_set:
        row = SignInThrottle.objects.filter(key=key).first()
        if row is None or row.blocked_until is None:
            continue
        # A conditional UPDATE: of concurrent failures, exactly one audits this lock.
        claimed = SignInThrottle.objects.filter(pk=row.pk, lockout_audited=False).update(
            lockout_audited=True)
        if claimed:
            target = f"address:{attempt.address}" if row.scope == ADDRESS else attempt.target
            audit_record(actor=actor, action="auth.lockout", target=target,
                         request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                         detail={"scope": row.scope, "failures": row.failures,
                                 "until": row.blocked_until.isoformat(),
                                 "address": attempt.address})


def sign_in_succeeded(*, attempt: SignInAttempt, user, request_id: str,
                      detail: dict | None = None) -> None:
    """Audit a sign-in, clear its pair row and take back its up-front failure elsewhere."""
    audit_record(actor=user, action="auth.sign_in", target=f"user:{user.get_username()}",
                 request_id=request_id, outcome=AuditEvent.Outcome.SUCCEEDED,
                 detail={"address": attempt.address, **(detail or {})})
    now = timezone.now()
    with transaction.atomic():
        own = attempt.keys.get(PAIR) or attempt.keys[DEVICE]
        SignInThrottle.objects.filter(key=own).delete()
        others = [key for key in attempt.keys.values() if key != own]
        SignInThrottle.objects.filter(key__in=others).update(
            failures=Greatest(F("failures") - 1, 0))
        for key in others:
            if key in attempt.blocks_set:
                ours, previous = attempt.blocks_set[key]
                # Only if no failure since has set a block of its own.
                SignInThrottle.objects.filter(key=key, blocked_until=ours).update(
                    blocked_until=previous)
        SignInThrottle.objects.filter(last_failure__lt=now - RESET_AFTER).exclude(
            blocked_until__gt=now).delete()


def sign_in_throttle_clear(*, user=None, address: str = "", actor=None) -> int:
    """Forget the failures counted for an account and/or a client address; audited.

    For an operator helping a user who cannot wait (manage.py sign_in_throttle_clear).
    Returns how many rows were removed.
    """
    match = Q(pk__in=[])
    targets = []
    if user is not None:
        account = f"user:{user.pk}"
        match |= (Q(key=f"account:{account}") | Q(key__startswith=f"pair:{account}|")
                  | Q(key__startswith=f"device:{account}|"))
        targets.append(f"user:{user.get_username()}")
    if address:
        parsed = _parse(address)
        if parsed is None:
            raise BadInput(f"{address} is not an IP address.")
        if parsed.version == 6:
            parsed = ipaddress.ip_network(f"{parsed}/64", strict=False)
        match |= Q(key=f"address:{parsed}") | Q(scope=PAIR, key__endswith=f"|{parsed}")
        targets.append(f"address:{parsed}")
    if not targets:
        raise BadInput("Name an account, an address or both.")
    with transaction.atomic():
        rows = SignInThrottle.objects.select_for_update().filter(match)
        count = len(rows)
        audit_record(actor=actor, action="auth.throttle_clear", target=" ".join(targets),
                     outcome=AuditEvent.Outcome.RECORDED, detail={"rows": count})
        SignInThrottle.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return count
