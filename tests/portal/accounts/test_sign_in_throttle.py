"""Sign-in throttling: one count per account and per address, growing delays, no lock-out DoS."""
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from portal.accounts.models import SignInThrottle
from portal.accounts.throttle import (ACCOUNT, ADDRESS, DEVICE, DEVICE_COOKIE, PAIR, POLICIES,
                                      client_address)
from portal.audit.models import AuditEvent
from tests.factories import PASSWORD
from tests.support.race import at_once

LOGIN = "/accounts/login/"


def _post(client, username, password, address="10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password},
                       REMOTE_ADDR=address)


def _rows(scope):
    return SignInThrottle.objects.filter(scope=scope)


def test_spelling_variants_of_a_username_share_one_count(client, admin):
    variants = [admin.username, f" {admin.username}", f"{admin.username} ",
                "\uff41" + admin.username[1:],  # fullwidth first letter: NFKC folds it
                f"\u3000{admin.username}\t"]
    pair_free = POLICIES[PAIR].free
    for number in range(pair_free):
        response = _post(client, variants[number % len(variants)], "guess")
        assert response.status_code == 200, number
    # Every spelling (and the right password under any of them) is now refused.
    for variant in variants:
        response = _post(client, variant, PASSWORD)
        assert response.status_code == 429, repr(variant)
    assert "_auth_user_id" not in client.session
    pair = _rows(PAIR).get()
    assert pair.failures == pair_free and pair.refused == len(variants)
    assert pair.key == f"pair:user:{admin.pk}|10.0.0.1"


def test_the_refusal_page_says_when_to_try_again(client, admin):
    for _ in range(POLICIES[PAIR].free):
        _post(client, admin.username, "guess")
    response = _post(client, admin.username, "guess")
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 0 < wait <= int(POLICIES[PAIR].base.total_seconds())
    text = response.content.decode()
    assert "Too many failed sign-ins" in text and "Try again after" in text and "UTC" in text


def test_delays_grow_and_are_capped(client, admin):
    policy = POLICIES[PAIR]
    waits = []
    for _ in range(policy.free + 6):
        response = _post(client, admin.username, "guess")
        if response.status_code == 429:
            waits.append(int(response["Retry-After"]))
            # Let the delay run out without sleeping: move the block into the past.
            SignInThrottle.objects.update(blocked_until=timezone.now() - timedelta(seconds=1))
            response = _post(client, admin.username, "guess")
        assert response.status_code == 200
    pair = _rows(PAIR).get()
    assert pair.failures == policy.free + 6
    assert waits == sorted(waits) and waits[-1] <= policy.cap.total_seconds()
    assert waits[0] < waits[1] < waits[2]
    assert pair.blocked_until - pair.last_failure == policy.cap


def test_rotating_addresses_does_not_reset_the_account_count(client, admin):
    account_free = POLICIES[ACCOUNT].free
    # Two guesses from each of many addresses: none of them reaches its own pair limit.
    for number in range(account_free):
        address = f"10.1.0.{number // 2 + 1}"
        assert _post(client, admin.username, "guess", address).status_code == 200
    account = _rows(ACCOUNT).get()
    assert account.failures == account_free and account.blocked_until > timezone.now()
    # An address that has failed before is now slowed by the account's count...
    assert _post(client, admin.username, "guess", "10.1.0.1").status_code == 429
    assert _post(client, admin.username, PASSWORD, "10.1.0.1").status_code == 429
    # ...and a fresh address gets one guess, after which it is slowed too.
    assert _post(client, admin.username, "guess", "10.1.0.200").status_code == 200
    assert _post(client, admin.username, "guess", "10.1.0.200").status_code == 429
    assert _rows(ACCOUNT).get().failures == account_free + 1


def test_an_outsider_cannot_lock_the_real_user_out(client, admin):
    attacker = Client()
    for number in range(40):
        # The attacker rotates addresses and keeps the account slowed for everyone they use.
        _post(attacker, admin.username, "guess", f"10.66.{number // 20}.{number % 20 + 1}")
    assert _rows(ACCOUNT).get().blocked_until > timezone.now()
    # The user, from an address that has not failed, signs in with the right password.
    response = _post(client, admin.username, PASSWORD, "10.0.0.5")
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == admin.pk
    # The attacker stays slowed: signing in lifted nothing for them.
    assert _post(attacker, admin.username, "guess", "10.66.0.1").status_code == 429


def test_one_address_spraying_many_accounts_is_slowed(client, db):
    free = POLICIES[ADDRESS].free
    for number in range(free):
        assert _post(client, f"nobody-{number}", "guess", "10.9.9.9").status_code == 200
    assert _post(client, "somebody-else", "guess", "10.9.9.9").status_code == 429
    assert _rows(ADDRESS).get().failures == free


def test_a_successful_sign_in_clears_its_own_address_count(client, admin):
    for _ in range(POLICIES[PAIR].free - 1):
        _post(client, admin.username, "guess")
    assert _post(client, admin.username, PASSWORD).status_code == 302
    client.logout()
    assert not _rows(PAIR).exists()
    # The right password does not count as a failure anywhere.
    assert _rows(ACCOUNT).get().failures == POLICIES[PAIR].free - 1
    for _ in range(POLICIES[PAIR].free):
        assert _post(client, admin.username, "guess").status_code == 200


def test_a_lockout_is_audited_once_and_refused_attempts_are_not(client, admin):
    free = POLICIES[PAIR].free
    for _ in range(free + 10):
        _post(client, admin.username, "guess")
    lockouts = AuditEvent.objects.filter(action="auth.lockout")
    assert list(lockouts.values_list("target", flat=True)) == [f"user:{admin.username}"]
    assert lockouts.get().detail["scope"] == "pair"
    # Each password actually checked is audited; the ten refused attempts are only counted.
    assert AuditEvent.objects.filter(action="auth.sign_in").count() == free
    assert _rows(PAIR).get().refused == 10


def test_unknown_usernames_are_never_stored(client, db):
    typed = "Tr0ub4dor&3-typed-into-the-username-box"
    for _ in range(POLICIES[PAIR].free + 2):
        _post(client, typed, "guess")
    events = AuditEvent.objects.filter(action__startswith="auth.")
    assert events.exists()
    assert set(events.values_list("target", flat=True)) == {"user:(unknown)"}
    for event in events:
        assert "Tr0ub4dor" not in str(event.detail)
    for row in SignInThrottle.objects.all():
        assert "Tr0ub4dor" not in row.key


@pytest.mark.django_db(transaction=True)
def test_concurrent_failures_are_counted_exactly(admin):
    attempts = 12
    free = POLICIES[PAIR].free
    statuses = at_once([lambda: _post(Client(), admin.username, "guess").status_code] * attempts)
    assert sorted(statuses) == [200] * free + [429] * (attempts - free)
    pair = _rows(PAIR).get()
    assert (pair.failures, pair.refused) == (free, attempts - free)
    assert _rows(ACCOUNT).get().failures == free
    assert AuditEvent.objects.filter(action="auth.lockout").count() == 1


def test_client_address_trusts_forwarded_for_only_from_named_proxies(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.7", HTTP_X_FORWARDED_FOR="192.0.2.1")
    settings.PORTAL_TRUSTED_PROXIES = []
    assert client_address(request) == "10.0.0.7"
    settings.PORTAL_TRUSTED_PROXIES = ["10.0.0.0/24"]
    # The right-most address not a trusted proxy is the one the proxy saw; spoofed
    # entries to its left are ignored.
    request = rf.get("/", REMOTE_ADDR="10.0.0.7",
                     HTTP_X_FORWARDED_FOR="198.51.100.9, 192.0.2.1, 10.0.0.3")
    assert client_address(request) == "192.0.2.1"
    request = rf.get("/", REMOTE_ADDR="10.0.0.7", HTTP_X_FORWARDED_FOR="not-an-address")
    assert client_address(request) == "10.0.0.7"
    # IPv6 clients are counted per /64, which one host can always rotate within.
    request = rf.get("/", REMOTE_ADDR="2001:db8:1:2:aaaa::1")
    assert client_address(request) == "2001:db8:1:2::/64"


def _sign_in_once(client, user, address="10.0.0.1"):
    """Sign in and out, as the user did yesterday: the browser keeps its device cookie."""
    assert _post(client, user.username, PASSWORD, address).status_code == 302
    client.post("/accounts/logout/")
    assert DEVICE_COOKIE in client.cookies


def test_the_users_own_browser_signs_in_through_an_attack_from_their_own_address(client, admin):
    _sign_in_once(client, admin)
    attacker = Client()
    # Someone behind the same address (a shared jump host) guesses on and on.
    for _ in range(POLICIES[ADDRESS].free + 5):
        _post(attacker, admin.username, "guess")
    assert _post(attacker, admin.username, PASSWORD).status_code == 429
    # The user's browser is counted apart: a typo is checked, then the right password works.
    assert _post(client, admin.username, "typo").status_code == 200
    assert _post(client, admin.username, PASSWORD).status_code == 302
    assert not _rows(DEVICE).exists()  # its own count is cleared by signing in


def test_a_browsers_own_failures_still_slow_it(client, admin):
    _sign_in_once(client, admin)
    for _ in range(POLICIES[DEVICE].free):
        assert _post(client, admin.username, "guess").status_code == 200
    assert _post(client, admin.username, PASSWORD).status_code == 429
    device = _rows(DEVICE).get()
    assert device.key.startswith(f"device:user:{admin.pk}|")
    assert not _rows(PAIR).exists()


def test_a_device_cookie_counts_only_for_its_own_account_and_cannot_be_forged(client, admin,
                                                                             auditor):
    _sign_in_once(client, admin)
    _post(client, auditor.username, "guess")
    assert _rows(PAIR).get().key == f"pair:user:{auditor.pk}|10.0.0.1"
    forged = Client()
    forged.cookies[DEVICE_COOKIE] = client.cookies[DEVICE_COOKIE].value[:-2] + "xx"
    _post(forged, admin.username, "guess")
    assert _rows(PAIR).filter(key=f"pair:user:{admin.pk}|10.0.0.1").exists()
    assert not _rows(DEVICE).exists()


def test_a_password_change_retires_device_cookies(client, admin):
    _sign_in_once(client, admin)
    admin.set_password("another-long-passphrase")
    admin.save()
    _post(client, admin.username, "guess")
    assert not _rows(DEVICE).exists() and _rows(PAIR).exists()


def test_an_operator_clears_an_accounts_count_and_it_is_audited(client, admin, auditor):
    for _ in range(POLICIES[PAIR].free):
        _post(client, admin.username, "guess")
        _post(client, auditor.username, "guess", "10.0.0.2")
    assert _post(client, admin.username, PASSWORD).status_code == 429
    out = io.StringIO()
    call_command("sign_in_throttle_clear", "--user", admin.username, stdout=out)
    assert "Cleared 2 sign-in throttle rows" in out.getvalue()  # the pair and the account
    cleared = AuditEvent.objects.get(action="auth.throttle_clear")
    assert (cleared.target, cleared.detail) == (f"user:{admin.username}", {"rows": 2})
    assert _post(client, auditor.username, PASSWORD, "10.0.0.2").status_code == 429
    assert _post(client, admin.username, PASSWORD).status_code == 302
    with pytest.raises(CommandError, match="not an IP address"):
        call_command("sign_in_throttle_clear", "--address", "10.0.0.300")
    call_command("sign_in_throttle_clear", "--address", "10.0.0.2", stdout=io.StringIO())
    assert _post(Client(), auditor.username, PASSWORD, "10.0.0.2").status_code == 302
