"""Assemble the emulator and serve it: one process, one event loop, one port per endpoint.

``serve(options)`` creates (or reuses) the TLS material and state under the state
directory, binds the authority to ``--port`` (0: a free port) and Resource Manager and
each HSM to their own free ports, and runs one uvicorn server over all the sockets,
routing each request to the app behind the port it arrived on. When every socket is
listening it writes ``endpoints.json`` (0600: it holds client secrets and the per-run
control secret) atomically and prints one ``ready`` line on stdout.

CPU-heavy work (key generation, private-key operations with RSA keys above 2048 bits)
runs in a thread pool; ``cryptography`` releases the GIL there, so slow calls do not
block the loop. Cheaper operations run inline: on two cores the thread hop costs more
than it saves (measured with ``bench/emulator_bench.py``). uvicorn uses httptools and
uvloop when they are installed (about 40% less server CPU per request than h11 on
asyncio), and falls back to h11 and asyncio otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import uvicorn

from .app import HsmApp
from .arm import ResourceManager
from .arm_diagnostics import install as install_diagnostics
from .audit import AuditWriter
from .certs import CA_KEY_FILE, SERVER_KEY_FILE, TlsFiles, ensure_tls
from .graph import Graph
from .hsm import HsmProperties, SecurityDomain
from .state import STATE_DB, STATE_KEY, Sealer, Store, write_atomic
from .storage import Azurite, StorageAccess, StorageConfig
from .tokens import BOOTSTRAP_ADMIN, HSM_RESOURCE, Authority, TokenValidator

ENDPOINTS_FILE = "endpoints.json"
PRIVATE_FILES = (ENDPOINTS_FILE, STATE_DB, f"{STATE_DB}-wal", f"{STATE_DB}-shm", STATE_KEY, CA_KEY_FILE,
                 SERVER_KEY_FILE)
DEFAULT_HSMS = ("primary", "secondary")


@dataclass
class Options:
    """Command-line options of ``serve``."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    hsms: tuple[str, ...] = DEFAULT_HSMS
    ephemeral: bool = False
    throttle: bool = False
    unactivated: tuple[str, ...] = ()
    # Blob storage for full backups: "azurite" (start it), "none", or an external endpoint.
    storage: str = "azurite"
    blob_endpoint: Optional[str] = None
    blob_account_name: Optional[str] = None
    blob_account_key: Optional[str] = None
    lro_retry_after: int = 1
    restore_backup_window: int = 1800
    demo_estate: bool = False  # seed resource groups, identities, storage accounts and servers (arm_services)
    workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))


class Emulator:
    """All endpoints of one emulator process and the ASGI router between them."""

    def __init__(self, options: Options) -> None:
        self.options = options
        state_dir = options.state_dir.resolve()
        _make_private(state_dir)
        self.state_dir = state_dir
        self.tls: TlsFiles = ensure_tls(state_dir)
        self.store = Store(None if options.ephemeral else state_dir / STATE_DB)
        self.sealer = Sealer.open(None if options.ephemeral else state_dir)
        # New at every start: whoever can read endpoints.json (the emulator's user) may
        # use the test controls; other local users' processes may not.
        self.control_secret = secrets.token_urlsafe(32)
        self.authority = Authority(self.store, self.sealer, self.control_secret)
        self.admin = self.authority.bootstrap_admin()
        self.domain = SecurityDomain.load_or_create(self.store, self.sealer)
        self.executor = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="hsm-crypto")
        self.sockets: list[socket.socket] = []
        self._apps: dict[int, object] = {}
        url_host = "127.0.0.1" if options.host in ("0.0.0.0", "") else options.host
        auth_sock = self._bind(options.port)
        self.authority.base_url = f"https://{url_host}:{auth_sock.getsockname()[1]}"
        self._apps[auth_sock.getsockname()[1]] = self.authority.app()
        arm_sock = self._bind(0)
        self.resource_manager_url = f"https://{url_host}:{arm_sock.getsockname()[1]}"
        self.resource_manager = ResourceManager(self.authority, self.store, self.admin.object_id)
        self.resource_manager.base_url = self.resource_manager_url
        self._apps[arm_sock.getsockname()[1]] = self.resource_manager.app()
        graph_sock = self._bind(0)
        self.graph_url = f"https://{url_host}:{graph_sock.getsockname()[1]}"
        # Graph tokens may name this URL as their resource (the Azure CLI asks for its cloud's Graph URL).
        self.authority.extra_resources.add(self.graph_url)
        self._apps[graph_sock.getsockname()[1]] = Graph(self.authority, self.graph_url).app()
        validator = TokenValidator(self.authority, HSM_RESOURCE)
        self.azurite: Optional[Azurite] = None
        self.storage: Optional[StorageConfig] = self._storage_config(state_dir)
        self.hsms: dict[str, HsmApp] = {}
        for name in options.hsms:
            sock = self._bind(0)
            props = HsmProperties(name=name, base_url=f"https://{url_host}:{sock.getsockname()[1]}")
            hsm = HsmApp(props, self.domain, self.store, self.sealer, validator, self.authority.tenant_id,
                         self.control_secret, self.executor, throttle=options.throttle,
                         activated=name not in options.unactivated)
            hsm.bootstrap(self.admin.object_id)
            hsm.backup.storage = StorageAccess(self.storage)
            hsm.backup.retry_after = options.lro_retry_after
            hsm.backup.restore_window = options.restore_backup_window
            hsm.backup.identity_credential = (
                lambda hsm_name=name: self.resource_manager.managed_hsms.identity_credential(hsm_name))
            self.hsms[name] = hsm
            self._apps[sock.getsockname()[1]] = hsm
        self.resource_manager.managed_hsms.register(self.hsms)
        # HSM audit events go to the emulator's storage while a diagnostic setting asks (audit.py).
        self.audit_writer = AuditWriter(self.storage)
        install_diagnostics(self.resource_manager, self.audit_writer)
        if options.demo_estate:
            self.resource_manager.services.seed_demo_estate()

    def _storage_config(self, state_dir: Path) -> Optional[StorageConfig]:
        options = self.options
        if options.blob_endpoint:
            return StorageConfig(options.blob_endpoint.rstrip("/"), options.blob_account_name or "",
                                 options.blob_account_key or "")
        if options.storage != "azurite":
            return None
        if not Azurite.available():
            print("hsm_emulator: Azurite is not installed (npm ci); serving without blob storage.", flush=True)
            return None
        self.azurite = Azurite(state_dir, self.store, self.sealer, self.tls.server_cert, self.tls.server_key,
                               self.tls.ca_bundle, ephemeral=options.ephemeral)
        return self.azurite.config

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in self.options.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this: without it, the response headers and body
        # (two TLS records) meet Nagle plus delayed ACK, ~40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.options.host, port))
        sock.set_inheritable(True)
        self.sockets.append(sock)
        return sock

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return
        await self._apps[scope["server"][1]](scope, receive, send)

    def endpoints(self) -> dict:
        """The contents of ``endpoints.json``."""
        admin = self.admin
        return {
            "ca_bundle": str(self.tls.ca_bundle),
            "authority": self.authority.base_url,
            "tenant_id": self.authority.tenant_id,
            "resource_manager": self.resource_manager_url,
            "arm": self.resource_manager_url,
            "subscription_id": self.resource_manager.subscriptions.subscription_id,
            "resource_group": self.resource_manager.subscriptions.resource_group,
            "hsm_resource_ids": {name: self.resource_manager.managed_hsms.resource_id(name) for name in self.hsms},
            "storage": self.storage.public() if self.storage else None,
            "graph": self.graph_url,
            "hsms": {name: hsm.props.base_url for name, hsm in self.hsms.items()},
            "principals": {BOOTSTRAP_ADMIN: {"client_id": admin.client_id, "client_secret": admin.client_secret,
                                             "object_id": admin.object_id}},
            "control_secret": self.control_secret,
            "pid": os.getpid(),
        }

    async def serve(self) -> None:
        """Serve until SIGINT/SIGTERM; publish endpoints once listening."""
        config = uvicorn.Config(
            self, ssl_certfile=str(self.tls.server_cert), ssl_keyfile=str(self.tls.server_key),
            lifespan="off", log_level="warning", access_log=False, server_header=False, date_header=False,
            # Clients connect directly; X-Forwarded-* must not change the client address
            # that gates the loopback-only test controls.
            proxy_headers=False,
            timeout_keep_alive=30,
            # Idle TLS keep-alive connections would otherwise hold shutdown until the
            # peer answers close_notify; nothing here needs a long drain.
            timeout_graceful_shutdown=1,
        )
        server = _Server(config, before_exit=self._before_exit)
        if self.azurite is not None:
            self.azurite.start()
        publisher = asyncio.create_task(self._publish_when_started(server))
        try:
            await server.serve(sockets=self.sockets)
        finally:
            publisher.cancel()
            if self.azurite is not None:
                self.azurite.stop()
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.store.close()

    def _before_exit(self) -> None:
        """Shutdown work once requests have drained (uvicorn then re-raises the stop signal, so
        the ``finally`` in ``serve`` does not run after SIGTERM): buffered audit events are
        written while storage still runs, then Azurite stops and saves what it holds, so the
        process ends after its Azurite (a restart on the same state directory reads it all)."""
        try:
            self.audit_writer.close()
        finally:
            if self.azurite is not None:
                self.azurite.stop()

    async def _publish_when_started(self, server: uvicorn.Server) -> None:
        while not server.started:
            await asyncio.sleep(0.01)
        if self.azurite is not None:
            try:
                await self.azurite.wait_ready()
            except RuntimeError as exc:
                print(f"hsm_emulator: {exc}", file=sys.stderr, flush=True)
                server.should_exit = True
                return
        endpoints = self.endpoints()
        write_atomic(self.state_dir / ENDPOINTS_FILE, json.dumps(endpoints, indent=2).encode(), mode=0o600)
        hsm_list = " ".join(f"{name}={url}" for name, url in endpoints["hsms"].items())
        print(f"hsm_emulator ready: authority={endpoints['authority']} {hsm_list} "
              f"endpoints={self.state_dir / ENDPOINTS_FILE}", flush=True)


class _Server(uvicorn.Server):
    """uvicorn's server, running ``before_exit`` (off the loop) once requests have drained.

    uvicorn re-raises the stop signal (SIGTERM/SIGINT) when ``serve`` returns, which ends the
    process before code after it runs; shutdown work that must happen (writing buffered audit
    events while storage still runs) goes here."""

    def __init__(self, config: uvicorn.Config, before_exit) -> None:
        super().__init__(config)
        self._before_exit = before_exit

    async def shutdown(self, sockets: Optional[list] = None) -> None:
        await super().shutdown(sockets=sockets)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._before_exit)
        except Exception as exc:  # never keep the process from stopping
            print(f"hsm_emulator: {type(exc).__name__} at shutdown: {exc}", file=sys.stderr, flush=True)


def _make_private(state_dir: Path) -> None:
    """Create the state directory readable by its owner only, and keep it (and its secrets) so.

    It holds the CA and server keys, ``state.key``, the state database and
    ``endpoints.json`` (client secrets, the control secret); files are created 0600, and
    ones left by an older run with wider modes are narrowed.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    for name in PRIVATE_FILES:
        path = state_dir / name
        if path.exists():
            os.chmod(path, 0o600)


def serve(options: Options) -> None:
    """Run the emulator in the foreground."""
    stale = options.state_dir / ENDPOINTS_FILE
    if stale.exists():
        stale.unlink()
    emulator = Emulator(options)
    _event_loop_runner()(emulator.serve())


def _event_loop_runner():
    """``uvloop.run`` when uvloop is installed (less CPU per request), else ``asyncio.run``."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``python -m hsm_emulator``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hsm_emulator", description="Local Managed HSM emulator")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the authority and the HSM endpoints over HTTPS")
    run.add_argument("--state-dir", required=True, type=Path, help="directory for certificates, keys and state")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", default=0, type=int, help="authority port; 0 picks a free one (default)")
    run.add_argument("--hsm", action="append", dest="hsms", metavar="NAME",
                     help="an HSM to serve (repeatable; default: primary and secondary)")
    run.add_argument("--ephemeral", action="store_true", help="keep state in memory only")
    run.add_argument("--throttle", action="store_true", help="answer 429 beyond one partition's published capacity")
    run.add_argument("--unactivated", action="append", default=[], metavar="NAME",
                     help="an HSM that starts un-activated, as newly provisioned (repeatable; added to the HSMs)")
    run.add_argument("--no-storage", action="store_true", help="start no Azurite (no blob storage for backups)")
    run.add_argument("--blob-endpoint", metavar="URL",
                     help="use this blob endpoint (account URL) for backups instead of starting Azurite")
    run.add_argument("--blob-account-name", metavar="NAME", help="account name of --blob-endpoint")
    run.add_argument("--blob-account-key", metavar="KEY", help="account key of --blob-endpoint")
    run.add_argument("--lro-retry-after", type=int, default=1, metavar="SECONDS",
                     help="Retry-After of backup/restore operations (the service sends 10; default 1)")
    run.add_argument("--restore-backup-window", type=int, default=1800, metavar="SECONDS",
                     help="a full restore needs a full backup of the target this recent (default 1800)")
    run.add_argument("--demo-estate", action="store_true",
                     help="seed a demo estate in Resource Manager: resource groups, user-assigned identities, "
                          "storage accounts, PostgreSQL and MySQL servers in two regions")
    args = parser.parse_args(argv)
    if not 1 <= args.lro_retry_after <= 60:
        parser.error("--lro-retry-after must be 1 to 60 seconds")
    if not 0 <= args.restore_backup_window <= 7 * 86400:
        parser.error("--restore-backup-window must be 0 to 604800 seconds")
    hsms = tuple(dict.fromkeys(args.hsms)) if args.hsms else DEFAULT_HSMS
    hsms = tuple(dict.fromkeys(hsms + tuple(args.unactivated)))
    serve(Options(state_dir=args.state_dir, host=args.host, port=args.port, hsms=hsms,
                  ephemeral=args.ephemeral, throttle=args.throttle, unactivated=tuple(args.unactivated),
                  storage="none" if args.no_storage else "azurite", blob_endpoint=args.blob_endpoint,
                  blob_account_name=args.blob_account_name, blob_account_key=args.blob_account_key,
                  lro_retry_after=args.lro_retry_after, restore_backup_window=args.restore_backup_window,
                  demo_estate=args.demo_estate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
