"""A replica's durable records: one small file per signing key.

A record is on disk before the replica answers (temp file, fsync, rename,
fsync of the directory), so an answer once given survives a power cut. Each
file carries a checksum: a corrupt or truncated record is reported, never
read as "nothing signed yet" — resetting a high-water mark to zero is
exactly how a validator double-signs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path

from highlander.signstate.register import EMPTY, HRS, KeyId, Record

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
FORMAT = 1


class StoreError(RuntimeError):
    """A record cannot be read or written; the message names the file and the fix."""


def check_key(key: KeyId) -> str | None:
    """Why ``key`` cannot name a record file, or None."""
    for what, name in (("chain_id", key.chain_id), ("key_id", key.key_id)):
        if not 1 <= len(name) <= 64 or not set(name) <= NAME_CHARS or name[0] == ".":
            return f"{what} {name!r} must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with '.'"
    return None


def _checksum(body: dict[str, object]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def encode(key: KeyId, record: Record) -> bytes:
    body: dict[str, object] = {
        "format": FORMAT,
        "chain_id": key.chain_id,
        "key_id": key.key_id,
        "promised_epoch": record.promised_epoch,
        "hwm": list(record.hwm),
        "digest": record.digest,
    }
    return (json.dumps({**body, "checksum": _checksum(body)}, indent=1) + "\n").encode()


def decode(key: KeyId, data: bytes, where: str) -> Record:
    """Parse a record file, checking its checksum and that it is ``key``'s."""
    fix = "restore it from a healthy replica (highlander signstate export/import); never delete it"
    try:
        document = json.loads(data)
        checksum = document.pop("checksum")
    except (ValueError, AttributeError, KeyError, TypeError):
        raise StoreError(f"{where}: not a complete sign-state record (truncated or damaged); {fix}") from None
    if _checksum(document) != checksum:
        raise StoreError(f"{where}: checksum mismatch, the record is damaged; {fix}")
    try:
        if document["format"] != FORMAT:
            raise StoreError(f"{where}: record format {document['format']} is not supported by this version")
        if (document["chain_id"], document["key_id"]) != key:
            raise StoreError(f"{where}: holds the record of {document['chain_id']}/{document['key_id']}, not {key}")
        h, r, s = (int(x) for x in document["hwm"])
        return Record(int(document["promised_epoch"]), HRS(h, r, s), str(document["digest"]))
    except (KeyError, TypeError, ValueError):
        raise StoreError(f"{where}: a field is missing or malformed; {fix}") from None


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that after a crash it holds either the
    old or the new content, and the new content once this returns."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


class Store:
    """The records of one replica, under ``directory/<chain_id>/<key_id>.json``.

    Readers and writers of one key are serialised by the caller (the
    replica holds a lock per key); the store itself only reads and writes.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def claim(self) -> int:
        """Take the directory for this process alone (a file lock held until
        the process exits): one daemon per directory, and no offline import
        behind a running daemon's back. Returns the lock's descriptor."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"{self.directory} is in use by another process (a running sign-state daemon?); stop it first"
            ) from None
        return fd

    def path(self, key: KeyId) -> Path:
        problem = check_key(key)
        if problem:
            raise StoreError(problem)
        return self.directory / key.chain_id / f"{key.key_id}.json"

    def load(self, key: KeyId) -> Record:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return EMPTY
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
        return decode(key, data, str(path))

    def save(self, key: KeyId, record: Record) -> None:
        path = self.path(key)
        try:
            if not path.parent.is_dir():
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fsync_directory(path.parent.parent)
            write_durably(path, encode(key, record))
        except OSError as exc:
            raise StoreError(f"{path}: cannot write: {exc.strerror or exc}") from None

    def keys(self) -> list[KeyId]:
        """Every key with a record, for status and export."""
        if not self.directory.is_dir():
            return []
        return sorted(
            KeyId(chain.name, file.name[: -len(".json")])
            for chain in self.directory.iterdir()
            if chain.is_dir()
            for file in chain.glob("*.json")
            if not file.name.startswith(".")
        )
