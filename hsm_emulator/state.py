"""Durable state: atomic files, a transactional document store, sealing at rest.

- ``write_atomic`` writes a file so that readers see the old or the new content, never
  a partial one (temp file + fsync + ``os.replace``).
- ``Store`` keeps JSON documents addressed by (scope, kind, id) in one SQLite file under
  the state directory; every ``put``/``delete`` is its own committed transaction, so a
  crash never leaves half an update. ``Store(None)`` is the ``--ephemeral`` variant: it
  keeps nothing and loads nothing, the in-memory objects being the only state.
- ``Sealer`` encrypts secrets (private key material, client secrets) with AES-256-GCM
  under a key kept in ``state.key`` beside the database, so the database alone reveals
  no key material.

The emulator keeps everything it serves in memory and writes through to the store on
each change; the store is read only at start-up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Optional

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

STATE_DB = "state.sqlite3"
STATE_KEY = "state.key"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Sealer:
    """Authenticated encryption of small secrets under one persistent 256-bit key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def open(cls, state_dir: Optional[Path]) -> "Sealer":
        """Load the key from ``state_dir`` (creating it once), or make a throw-away one."""
        if state_dir is None:
            return cls(AESGCM.generate_key(256))
        path = state_dir / STATE_KEY
        if not path.exists():
            write_atomic(path, AESGCM.generate_key(256), mode=0o600)
        return cls(path.read_bytes())

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt ``plaintext``; ``context`` binds it to its owner (e.g. a key id)."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def unseal(self, sealed: bytes, context: str) -> bytes:
        """Decrypt what ``seal`` produced for the same ``context``; raises if tampered."""
        return self._aead.decrypt(sealed[:12], sealed[12:], context.encode())


class Store:
    """JSON documents by (scope, kind, id), durable in SQLite or kept nowhere."""

    def __init__(self, path: Optional[Path]) -> None:
        self._db: Optional[sqlite3.Connection] = None
        self._lock = threading.Lock()
        if path is not None:
            # Created owner-only before SQLite opens it; its -wal and -shm files take its mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS docs (scope TEXT NOT NULL, kind TEXT NOT NULL,"
                " id TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (scope, kind, id))"
            )

    @property
    def durable(self) -> bool:
        """True when documents survive a restart."""
        return self._db is not None

    def load(self, scope: str, kind: str) -> dict[str, Any]:
        """All documents of one kind in one scope, by id, in insertion order."""
        if self._db is None:
            return {}
        with self._lock:
            rows = self._db.execute(
                "SELECT id, doc FROM docs WHERE scope = ? AND kind = ? ORDER BY rowid", (scope, kind)
            ).fetchall()
        return {row_id: json.loads(doc) for row_id, doc in rows}

    def get(self, scope: str, kind: str, doc_id: str) -> Any:
        """One document, or None."""
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM docs WHERE scope = ? AND kind = ? AND id = ?", (scope, kind, doc_id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, scope: str, kind: str, doc_id: str, doc: Any) -> None:
        """Insert or replace one document, committed before returning."""
        if self._db is None:
            return
        text = json.dumps(doc, separators=(",", ":"))
        with self._lock:
            self._db.execute(
                "INSERT INTO docs (scope, kind, id, doc) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope, kind, id) DO UPDATE SET doc = excluded.doc",
                (scope, kind, doc_id, text),
            )

    def delete(self, scope: str, kind: str, doc_id: str) -> None:
        """Remove one document if present, committed before returning."""
        if self._db is None:
            return
        with self._lock:
            self._db.execute("DELETE FROM docs WHERE scope = ? AND kind = ? AND id = ?", (scope, kind, doc_id))

    def replace_kind(self, scope: str, kind: str, docs: dict[str, Any]) -> None:
        """Replace every document of one kind in one scope by ``docs``, in one transaction.

        Used by a full restore, which swaps an HSM's whole key set or RBAC at once.
        """
        if self._db is None:
            return
        rows = [(scope, kind, doc_id, json.dumps(doc, separators=(",", ":"))) for doc_id, doc in docs.items()]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM docs WHERE scope = ? AND kind = ?", (scope, kind))
                self._db.executemany("INSERT INTO docs (scope, kind, id, doc) VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database; later calls fail."""
        if self._db is not None:
            with self._lock:
                self._db.close()
            self._db = None
