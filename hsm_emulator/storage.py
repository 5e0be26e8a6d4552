"""Blob storage for full backups: the Azurite the emulator starts, and access to a container.

``Azurite`` runs ``node_modules/.bin/azurite-blob`` (the npm package installed by ``npm
ci``) as a child of the emulator, the way a Managed HSM's storage account sits beside it:

- HTTPS with a server certificate from the emulator's own CA (SAN 127.0.0.1 and
  localhost: the emulator's leaf), so clients verify it with ``ca_bundle`` from
  ``endpoints.json`` instead of skipping TLS checks;
- ``--oauth basic``: bearer tokens are accepted when their ``iss`` starts with
  ``https://sts.windows.net/`` (the authority's issuer) and ``aud`` is
  ``https://storage.azure.com`` — how an HSM's managed identity reaches it;
- one account, ``devstoreaccount1``, with a random key kept (sealed) in the state
  store, not the published development key: other local users cannot write into it;
- data under ``<state dir>/azurite`` (in memory with ``--ephemeral``), stopped with the
  emulator (SIGTERM, and the kernel's parent-death signal if the emulator is killed).

``serve --blob-endpoint URL --blob-account-name N --blob-account-key K`` uses another
blob endpoint instead and starts nothing; ``--no-storage`` starts none.

``StorageAccess`` opens a container named by a backup request's ``storageResourceUri``:
path-style URLs (``https://127.0.0.1:<port>/<account>/<container>``, as Azurite serves
them) and virtual-host ones (``https://<account>.blob.core.windows.net/<container>``),
with a SAS token or a bearer-token credential. It only connects to loopback hosts and the
configured endpoint's host, so an HSM cannot be pointed at arbitrary network targets.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from .state import Sealer, Store

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT_NAME = "devstoreaccount1"
STORAGE_RESOURCE = "https://storage.azure.com"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class StorageError(Exception):
    """A storage request failed; ``code`` is the storage error code (e.g. ``ContainerNotFound``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StorageConfig:
    """The blob endpoint listed in ``endpoints.json`` as ``storage``."""

    blob_endpoint: str  # account URL, e.g. https://127.0.0.1:10000/devstoreaccount1
    account_name: str
    account_key: str
    ca_bundle: Optional[str] = None  # verifies the endpoint; None: the system's trust store

    def public(self) -> dict:
        """The ``storage`` member of ``endpoints.json``."""
        return {"blob_endpoint": self.blob_endpoint, "account_name": self.account_name,
                "account_key": self.account_key}


class Azurite:
    """The Azurite blob service the emulator runs as its child."""

    def __init__(self, state_dir: Path, store: Store, sealer: Sealer, cert: Path, key: Path, ca_bundle: Path,
                 ephemeral: bool, host: str = "127.0.0.1") -> None:
        self.state_dir = state_dir
        self.host = host
        self.port = _free_port(host)
        self._cert, self._key, self._ephemeral = cert, key, ephemeral
        self.config = StorageConfig(f"https://{host}:{self.port}/{ACCOUNT_NAME}", ACCOUNT_NAME,
                                    _account_key(store, sealer), str(ca_bundle))
        self._proc: Optional[subprocess.Popen] = None
        self._log = None

    @staticmethod
    def available() -> bool:
        """Whether Azurite is installed (``npm ci``)."""
        return AZURITE_BIN.exists()

    def start(self) -> None:
        """Spawn Azurite; ``wait_ready`` tells when it listens."""
        # A short keep-alive: on SIGTERM Azurite closes its server, which waits for idle
        # keep-alive connections, and only then saves its metadata.
        args = [str(AZURITE_BIN), "--blobHost", self.host, "--blobPort", str(self.port), "--blobKeepAliveTimeout", "1",
                "--silent",
                "--disableTelemetry", "--skipApiVersionCheck", "--cert", str(self._cert), "--key", str(self._key),
                "--oauth", "basic"]
        if self._ephemeral:
            args.append("--inMemoryPersistence")
        else:
            location = self.state_dir / "azurite"
            location.mkdir(mode=0o700, exist_ok=True)
            args += ["--location", str(location)]
        env = {**os.environ, "AZURITE_ACCOUNTS": f"{self.config.account_name}:{self.config.account_key}"}
        log_path = self.state_dir / "azurite.log"
        self._log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        self._proc = subprocess.Popen(args, cwd=self.state_dir, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    async def wait_ready(self, timeout: float = 60) -> None:
        """Return once Azurite accepts connections; RuntimeError if it exits or never does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"Azurite exited before listening; see {self.state_dir / 'azurite.log'}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if loop.time() > deadline:
                    raise RuntimeError(f"Azurite did not listen within {timeout} s") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: Azurite, by the pid the emulator started.

        Azurite saves its metadata (containers, blobs) on a graceful stop and otherwise every
        few seconds: it gets time to finish, so a durable state directory keeps what was written.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


def _die_with_parent() -> None:
    """In the child: SIGTERM when the emulator dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _account_key(store: Store, sealer: Sealer) -> str:
    """The Azurite account key: random on first start, then kept sealed in the store."""
    doc = store.get("emulator", "storage", "azurite")
    if doc:
        return sealer.unseal(base64.b64decode(doc["key"]), "azurite-account-key").decode()
    key = base64.b64encode(os.urandom(64)).decode()
    store.put("emulator", "storage", "azurite",
              {"key": base64.b64encode(sealer.seal(key.encode(), "azurite-account-key")).decode()})
    return key


# -- containers named by backup requests ------------------------------------------------


@dataclass(frozen=True)
class ContainerRef:
    """A container URL split into its account URL and container name."""

    account_url: str
    container: str

    @property
    def url(self) -> str:
        """The container's URL."""
        return f"{self.account_url}/{self.container}"


class StorageAccess:
    """Opens the containers backup requests name, with a SAS token or a bearer credential."""

    def __init__(self, config: Optional[StorageConfig]) -> None:
        self.config = config
        self._allowed_hosts = set(_LOOPBACK_HOSTS)
        if config is not None:
            self._allowed_hosts.add(urlsplit(config.blob_endpoint).hostname or "")

    def parse(self, uri: str) -> ContainerRef:
        """The container named by ``storageResourceUri``; ValueError saying what is wrong."""
        ref, rest = self._split(uri)
        if rest:
            raise ValueError(f"The storage resource URI '{uri}' must name one blob container, not a path in it.")
        return ref

    def parse_folder(self, uri: str, folder: str) -> tuple[ContainerRef, str]:
        """The container and backup folder named by a restore request.

        The SDK splits a folder URL at the first path segment: for a path-style URL
        (``https://127.0.0.1:<port>/<account>/<container>/<folder>``) it sends the account
        URL as ``storageResourceUri`` and ``<container>/<folder>`` as the folder, so the
        two are joined and split again the way the storage endpoint reads them.
        """
        if not isinstance(folder, str) or not folder.strip("/"):
            raise ValueError("The backup folder name is required.")
        ref, rest = self._split(f"{(uri or '').rstrip('/')}/{folder.strip('/')}")
        if len(rest) != 1 or rest[0] in (".", ".."):
            raise ValueError(f"'{folder}' does not name one backup folder of the container.")
        return ref, rest[0]

    def _split(self, uri: str) -> tuple[ContainerRef, list[str]]:
        if not isinstance(uri, str) or not uri:
            raise ValueError("The parameter 'storageResourceUri' is required.")
        parts = urlsplit(uri)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"The storage resource URI '{uri}' is not a valid https URL of a blob container.")
        if parts.hostname.lower() not in self._allowed_hosts:
            raise ValueError(f"The storage account at '{parts.hostname}' cannot be reached from this managed HSM "
                             "(the emulator reaches loopback storage endpoints only).")
        segments = [s for s in parts.path.split("/") if s]
        path_style = _is_ip_or_localhost(parts.hostname)
        needed = 2 if path_style else 1
        if len(segments) < needed:
            shape = "https://<host>:<port>/<account>/<container>" if path_style \
                else "https://<account>.blob.core.windows.net/<container>"
            raise ValueError(f"The storage resource URI '{uri}' must name one blob container ({shape}).")
        account_url = f"https://{parts.netloc}/{segments[0]}" if path_style else f"https://{parts.netloc}"
        return ContainerRef(account_url, segments[needed - 1]), segments[needed:]

    def _verify(self, ref: ContainerRef):
        if self.config is not None and self.config.ca_bundle and (
                urlsplit(ref.account_url).hostname in _LOOPBACK_HOSTS
                or ref.account_url.startswith(self.config.blob_endpoint)):
            return self.config.ca_bundle
        return True

    def container(self, ref: ContainerRef, sas_token: Optional[str] = None, credential=None):
        """A sync ``ContainerClient`` for ``ref`` (used from worker threads)."""
        from azure.storage.blob import ContainerClient

        options = {"connection_verify": self._verify(ref), "retry_total": 2, "connection_timeout": 10,
                   "read_timeout": 120, "max_single_put_size": 64 * 1024 * 1024}
        if credential is not None:
            return ContainerClient(ref.account_url, ref.container, credential=credential, **options)
        token = (sas_token or "").lstrip("?")
        return ContainerClient.from_container_url(f"{ref.url}?{token}", **options)


def storage_error(exc: Exception) -> StorageError:
    """A ``StorageError`` from an azure-core/azure-storage exception."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, HttpResponseError):
        code = getattr(exc, "error_code", None) or (
            "AuthenticationFailed" if isinstance(exc, ClientAuthenticationError) else f"Http{exc.status_code}")
        code = str(getattr(code, "value", code))
        return StorageError(code, f"The storage service refused the request: {code} "
                                  f"(HTTP {exc.status_code}).")
    if isinstance(exc, ServiceRequestError):
        return StorageError("StorageUnreachable", "The storage account could not be reached.")
    return StorageError("StorageError", f"The storage request failed: {type(exc).__name__}.")


def _is_ip_or_localhost(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
