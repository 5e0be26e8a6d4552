"""Which HSM data-plane URLs the portal accepts, and which hosts are emulators.

The portal sends its Managed HSM bearer token to every registered HSM, so a URL is only
accepted when it names a Managed HSM of the configured cloud
(`https://<name>.<AZURE_HSM_DNS_SUFFIX>`) or a host the operator named as an emulator
(`HSM_EMULATOR_HOSTS`, `host:port` entries). The rule is checked when an HSM is registered
and again each time the gateway builds a client, so a row stored before the rule gets no
token either.
"""
import ipaddress
import re
from urllib.parse import urlsplit

from django.conf import settings

# Managed HSM names: 3-24 letters, digits and hyphens, starting with a letter and
# ending with a letter or digit.
_HSM_LABEL = re.compile(r"^[a-z][a-z0-9-]{1,22}[a-z0-9]$")


class HsmUrlRefused(ValueError):
    """An HSM URL the portal will not use; the message is a sentence for the user."""


def emulator_hosts() -> set[str]:
    """The `host:port` entries named as emulators, lower case (no port means 443)."""
    hosts = set()
    for entry in settings.HSM_EMULATOR_HOSTS or ():
        entry = entry.strip().lower()
        if entry.startswith("["):  # an IPv6 literal: [::1]:8443
            host, _, port = entry.partition("]")
            host, port = host + "]", port.lstrip(":")
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        else:
            host, port = entry, ""
        if host:
            hosts.add(f"{host}:{port or 443}")
    return hosts


def _host_port(uri: str) -> tuple[str, int]:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return host, parts.port or 443


def is_emulator_host(uri: str) -> bool:
    """Whether the URL's host and port are named in HSM_EMULATOR_HOSTS."""
    try:
        host, port = _host_port(uri)
    except ValueError:
        return False
    return bool(host) and f"{host}:{port}" in emulator_hosts()


def hsm_url_checked(uri: str) -> str:
    """The canonical form (`https://host[:port]`) of an acceptable HSM URL.

    Raises HsmUrlRefused with a sentence saying what to change.
    """
    suffix = settings.AZURE_HSM_DNS_SUFFIX.strip(".").lower()
    example = f"https://<name>.{suffix}"
    uri = (uri or "").strip()
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise HsmUrlRefused(f"That is not a URL; use {example}.") from None
    if parts.scheme.lower() != "https":
        raise HsmUrlRefused(f"An HSM URL must use https://, as in {example}.")
    if "@" in parts.netloc:
        raise HsmUrlRefused("An HSM URL must not carry a user name or password.")
    if "#" in uri:
        raise HsmUrlRefused(f"An HSM URL must not have a fragment (#…); use {example}.")
    if "?" in uri:
        raise HsmUrlRefused(f"An HSM URL must not have a query (?…); use {example}.")
    if parts.path not in ("", "/"):
        raise HsmUrlRefused(f"An HSM URL is the HSM's address alone, without a path; "
                            f"use {example}.")
    host = (parts.hostname or "").lower()
    if not host:
        raise HsmUrlRefused(f"An HSM URL needs a host name; use {example}.")
    if is_emulator_host(uri):
        shown = f"[{host}]" if ":" in host else host
        return f"https://{shown}" + (f":{port}" if port not in (None, 443) else "")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise HsmUrlRefused(f"An HSM URL must name the HSM's host, not an IP address; "
                            f"use {example}.")
    if port not in (None, 443):
        raise HsmUrlRefused(f"Managed HSM answers on port 443 only; remove :{port} from the URL.")
    name, dot, rest = host.partition(".")
    if not dot or rest != suffix:
        raise HsmUrlRefused(f"The portal only talks to Managed HSMs of this cloud: use {example} "
                            "(or name an emulator host in HSM_EMULATOR_HOSTS).")
    if not _HSM_LABEL.match(name) or "--" in name:
        raise HsmUrlRefused("A Managed HSM name is 3-24 letters, digits and hyphens, starting "
                            "with a letter and ending with a letter or digit.")
    return f"https://{host}"
