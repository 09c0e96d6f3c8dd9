"""A replica's durable state: who it is, and every record it ever answered with.

``state_dir`` holds (and only ``highlander signstate init`` or a rejoin
creates it):

``identity``
    format, node, and an incarnation drawn at random by init or rejoin.
``log``
    a header naming the incarnation, then one line per change of a record,
    each with its sequence number and a checksum. A change is appended and
    fdatasync'ed before any reply that depends on it; changes that arrive
    while one sync runs share the next (group commit). When the log has
    grown well past its live content it is rewritten as a snapshot.
``seal``
    the last sequence number written, twice, on separate blocks, so a torn
    write never loses both.
``.lock``
    taken by the one process that uses the directory.

Why a replica must tell "lost" from "new": a replica that reads a lost disk
as "nothing signed yet" promises with a zero mark, a promotion repairs too
low, and the new signer signs what the old one already signed. So nothing
here ever starts from zero on its own: a missing directory, identity or log,
a damaged or missing line, or a log older than its seal raises :class:`Lost`
and the replica is *recovering* until it has been rejoined from the other
replicas. Only a whole, consistent copy of the directory restored from a
backup cannot be told from the real thing, which is why a replica must never
be restored from a backup.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from highlander.adapters.files import fsync_directory, remove_stale_temporaries, write_file
from highlander.signstate.register import EMPTY, HRS, Ballot, KeyId, Record

FORMAT = 2
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
LOG_MAGIC = "highlander-signstate-log"
SEAL_MAGIC = "highlander-signstate-seal"
SEAL_SLOT = 4096  # bytes per slot: one block each
SEAL_SYNC_INTERVAL = 0.1  # seconds between syncs of the seal (the log itself is synced every time)
LOG_MIN_LIMIT = 4 << 20  # a snapshot is written once the log is past this and twice its live content
FIX_REJOIN = "run 'highlander signstate rejoin' on this node once both other replicas are healthy"


class StoreError(RuntimeError):
    """The state cannot be used as configured; the message names the file and the fix."""


class Lost(StoreError):
    """The state is missing, damaged or older than it was: the replica must be rejoined."""


class Identity(NamedTuple):
    node: str
    incarnation: str


def check_key(key: KeyId) -> str | None:
    """Why ``key`` cannot name a record, or None."""
    for what, name in (("chain_id", key.chain_id), ("key_id", key.key_id)):
        if not 1 <= len(name) <= 64 or not NAME_CHARS.issuperset(name) or name[0] == ".":
            return f"{what} {name!r} must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with '.'"
    return None


# --- lines ------------------------------------------------------------------------------


def _sealed(text: str) -> bytes:
    return f"{text} {zlib.crc32(text.encode()):08x}\n".encode()


def _unsealed(line: bytes) -> list[str] | None:
    """The words of a line whose checksum holds, or None."""
    if not line.endswith(b"\n"):
        return None
    try:
        text, _, crc = line[:-1].decode("ascii").rpartition(" ")
    except UnicodeDecodeError:
        return None
    if not text or crc != f"{zlib.crc32(text.encode()):08x}":
        return None
    return text.split(" ")


def encode_line(seq: int, key: KeyId, record: Record) -> bytes:
    h, r, s = record.hwm
    owner = record.promised.owner or "-"
    return _sealed(
        f"{seq} {key.chain_id} {key.key_id} {record.promised.counter} {owner} {h} {r} {s} {record.digest or '-'}"
    )


def decode_line(words: list[str]) -> tuple[int, KeyId, Record]:
    """A record line's words as (seq, key, record); ValueError when malformed."""
    if len(words) != 9:
        raise ValueError(f"{len(words)} fields instead of 9")
    seq, chain, key_id, counter, owner, h, r, s, digest = words
    key = KeyId(chain, key_id)
    if check_key(key):
        raise ValueError(check_key(key))
    ballot = Ballot(int(counter), "" if owner == "-" else owner)
    return int(seq), key, Record(ballot, HRS(int(h), int(r), int(s)), "" if digest == "-" else digest)


def _header(incarnation: str, base: int, count: int) -> bytes:
    """The first line: whose log, and the snapshot that follows (``count`` lines at ``base``)."""
    return _sealed(f"{LOG_MAGIC} {FORMAT} {incarnation} {base} {count}")


def _seal_slot(incarnation: str, seq: int) -> bytes:
    return _sealed(f"{SEAL_MAGIC} {incarnation} {seq}").ljust(SEAL_SLOT, b"\0")


def _sealed_seq(slot: bytes, incarnation: str) -> int | None:
    """The sequence number in one seal slot, or None when it is torn or another incarnation's."""
    words = _unsealed(slot.rstrip(b"\0"))
    if not words or len(words) != 3 or words[:2] != [SEAL_MAGIC, incarnation] or not words[2].isdigit():
        return None
    return int(words[2])


# --- the directory ------------------------------------------------------------------------


def identity_path(directory: Path) -> Path:
    return directory / "identity"


def read_identity(directory: Path) -> Identity:
    """This directory's identity; Lost when there is none or it is damaged."""
    path = identity_path(directory)
    if not directory.is_dir():
        raise Lost(
            f"the state directory {directory} does not exist (a lost disk, or a node never initialised); "
            f"if its file system is not mounted, mount it and restart; otherwise {FIX_REJOIN}"
        )
    try:
        document = json.loads(path.read_bytes())
        if document["format"] != FORMAT:
            raise StoreError(f"{path}: format {document['format']} is not the format of this version ({FORMAT})")
        return Identity(str(document["node"]), str(document["incarnation"]))
    except FileNotFoundError:
        raise Lost(
            f"{directory} has no identity file: its state is lost or was never initialised; {FIX_REJOIN} "
            "(a new cluster: 'highlander signstate init' on every node)"
        ) from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise Lost(f"{path} is damaged; {FIX_REJOIN}") from None


def _remove_leftovers(directory: Path) -> None:
    """Temporary files of an interrupted write (crash, full disk): never read, only removed."""
    for name in ("identity", "log", "seal"):
        remove_stale_temporaries(directory / name)


class Store:
    """The records of one replica, in memory and in the log.

    :meth:`put` changes a record in memory and queues its line; :meth:`flush`
    writes and syncs everything queued (from any thread: the daemon runs it
    off its event loop, so changes keep arriving while a sync runs). A reply
    that depends on a change may be sent once :attr:`durable` reaches the
    change's sequence number.
    """

    def __init__(self, directory: Path, node: str) -> None:
        self.directory = Path(directory)
        self.node = node
        self.records: dict[KeyId, Record] = {}
        self.last_change: dict[KeyId, int] = {}  # key -> seq of its latest line
        self.incarnation = ""
        self.seq = 0  # the last sequence number given out
        self.durable = 0  # the last sequence number on disk
        self._queue: list[bytes] = []
        self._guard = threading.Lock()
        self._log_fd = -1
        self._seal_fd = -1
        self._lock_fd = -1
        self._log_size = 0
        self._live_size = 0  # what a snapshot would take
        self._seal_slot = 0
        self._seal_synced = 0.0

    # --- opening ---

    def open(self) -> None:
        """Take the directory and load it; Lost when it must be rejoined."""
        identity = read_identity(self.directory)
        if identity.node != self.node:
            raise StoreError(
                f"{self.directory} holds the sign-state of {identity.node}, not of {self.node}: "
                "check state_dir and node in the configuration"
            )
        self._claim()
        self._load_claimed(identity.incarnation)

    def _load_claimed(self, incarnation: str) -> None:
        try:
            _remove_leftovers(self.directory)
            self.incarnation = incarnation
            self._load()
        except BaseException:
            self.close()
            raise

    def _claim(self) -> None:
        """One process per directory: no second daemon, no offline change behind a daemon's back."""
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"{self.directory} is in use by another process (a running sign-state daemon?); stop it first"
            ) from None
        self._lock_fd = fd

    def _load(self) -> None:
        path = self.directory / "log"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise Lost(f"{path} is missing: the records are lost; {FIX_REJOIN}") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
        lines = data.splitlines(keepends=True)
        header = _unsealed(lines[0]) if lines else None
        if not header or header[:3] != [LOG_MAGIC, str(FORMAT), self.incarnation] or len(header) != 5:
            raise Lost(f"{path} does not begin with the header of this replica's incarnation; {FIX_REJOIN}")
        base, count = int(header[3]), int(header[4])
        if len(lines) - 1 < count:
            raise Lost(f"{path}: its snapshot has {len(lines) - 1} of {count} lines; {FIX_REJOIN}")
        expected, size = base, len(lines[0])
        for number, line in enumerate(lines[1:], start=2):
            words = _unsealed(line)
            in_snapshot = number - 1 <= count  # written whole by a rename: never interrupted
            if words is None and number == len(lines) and not in_snapshot:
                break  # the last change of a write a crash interrupted: never synced, never answered
            try:
                if words is None:
                    raise ValueError("checksum mismatch")
                seq, key, record = decode_line(words)
                if in_snapshot and (seq != base or key in self.records):
                    raise ValueError(
                        f"snapshot line of change {seq} for {key}, where one line per key at {base} is due"
                    )
                if not in_snapshot and seq != expected + 1:
                    raise ValueError(f"change {seq} where {expected + 1} was due")
            except ValueError as exc:
                raise Lost(f"{path}: line {number} is damaged ({exc}); {FIX_REJOIN}") from None
            self.records[key] = record
            self.last_change[key] = seq
            expected = seq
            size += len(line)
        self.seq = self.durable = expected
        sealed = self._read_seal()
        if sealed > self.seq:
            raise Lost(
                f"{path} ends at change {self.seq} but its seal says {sealed} were written: the log was "
                f"rolled back or truncated (restored from a backup?); {FIX_REJOIN}"
            )
        self._log_fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        os.ftruncate(self._log_fd, size)  # drop an interrupted last line before appending
        os.lseek(self._log_fd, size, os.SEEK_SET)
        self._log_size = size
        self._live_size = sum(len(encode_line(self.seq, k, r)) for k, r in self.records.items())

    def _read_seal(self) -> int:
        path = self.directory / "seal"
        try:
            self._seal_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            slots = [os.pread(self._seal_fd, SEAL_SLOT, i * SEAL_SLOT) for i in (0, 1)]
        except FileNotFoundError:
            raise Lost(f"{path} is missing; {FIX_REJOIN}") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
        sealed = [_sealed_seq(slot, self.incarnation) for slot in slots]
        if sealed == [None, None]:
            raise Lost(f"{path} is damaged or belongs to another incarnation; {FIX_REJOIN}")
        newest = max(range(2), key=lambda i: -1 if sealed[i] is None else sealed[i])
        self._seal_slot = 1 - newest  # the next write goes over the older slot
        return sealed[newest]

    # --- changing ---

    def put(self, key: KeyId, record: Record) -> int:
        """Change ``key``'s record; the sequence number to wait for before replying."""
        with self._guard:
            self.seq += 1
            line = encode_line(self.seq, key, record)
            if key not in self.records:
                self._live_size += len(line)
            self.records[key] = record
            self.last_change[key] = self.seq
            self._queue.append(line)
            return self.seq

    def get(self, key: KeyId) -> Record:
        return self.records.get(key, EMPTY)

    def pending(self) -> bool:
        return bool(self._queue)

    def flush(self) -> int:
        """Write and sync every queued change; returns the sequence number now durable.

        On failure (a full disk, an I/O error) the queue is kept, the log is
        cut back to what was synced, and StoreError is raised: nothing that
        depends on the failed changes has been answered, and the next flush
        tries them again.
        """
        with self._guard:
            queued, upto = self._queue, self.seq
            self._queue = []
            compact = self._log_size > max(LOG_MIN_LIMIT, 2 * self._live_size)
            snapshot = dict(self.records) if compact else None
        if not queued:
            return self.durable
        try:
            if snapshot is not None:
                self._write_snapshot(snapshot, upto)
            else:
                data = b"".join(queued)
                _write_all(self._log_fd, data)
                os.fdatasync(self._log_fd)
                self._log_size += len(data)
        except OSError as exc:
            with self._guard:
                self._queue[:0] = queued
            self._cut_back()
            raise StoreError(f"{self.directory / 'log'}: cannot write: {exc.strerror or exc}") from None
        self.durable = upto
        self._write_seal(upto)
        return upto

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._log_fd, self._log_size)
            os.lseek(self._log_fd, self._log_size, os.SEEK_SET)
        except OSError:
            pass  # the next flush fails the same way and tries again

    def _write_snapshot(self, records: Mapping[KeyId, Record], base: int) -> None:
        data = _snapshot(self.incarnation, records, base)
        write_file(self.directory / "log", data, mode=0o600)
        fd = os.open(self.directory / "log", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        os.close(self._log_fd)
        self._log_fd = fd
        self._log_size = len(data)
        self._live_size = len(data)

    def _write_seal(self, seq: int) -> None:
        """Record how far the log goes; synced every SEAL_SYNC_INTERVAL (an older seal is harmless)."""
        try:
            os.pwrite(self._seal_fd, _seal_slot(self.incarnation, seq), self._seal_slot * SEAL_SLOT)
            self._seal_slot = 1 - self._seal_slot
            now = time.monotonic()
            if now - self._seal_synced >= SEAL_SYNC_INTERVAL:
                os.fdatasync(self._seal_fd)
                self._seal_synced = now
        except OSError:
            pass  # the log is durable; a seal that lags only weakens the rollback check

    def close(self) -> None:
        if self._seal_fd >= 0:
            try:
                os.fdatasync(self._seal_fd)
            except OSError:
                pass
        for fd in (self._log_fd, self._seal_fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._log_fd = self._seal_fd = self._lock_fd = -1

    def keys(self) -> list[KeyId]:
        return sorted(self.records)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _snapshot(incarnation: str, records: Mapping[KeyId, Record], base: int) -> bytes:
    lines = [encode_line(base, k, r) for k, r in sorted(records.items())]
    return _header(incarnation, base, len(lines)) + b"".join(lines)


def create(directory: Path, node: str, records: Iterable[tuple[KeyId, Record]] = ()) -> Store:
    """Write a new incarnation of ``directory`` holding ``records``, and open it.

    For ``init`` (no records, and the directory must not hold a replica) and
    for a rejoin (the records merged from the other replicas). The log and the
    seal are written before the identity, so a crash halfway leaves a
    directory that reads as lost, never as a valid older one.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    fsync_directory(directory.parent)
    store = Store(directory, node)
    store._claim()
    try:
        incarnation = secrets.token_hex(16)
        write_file(directory / "log", _snapshot(incarnation, dict(records), 0), mode=0o600)
        write_file(directory / "seal", _seal_slot(incarnation, 0) * 2, mode=0o600)
        document = {"format": FORMAT, "node": node, "incarnation": incarnation}
        write_file(identity_path(directory), json.dumps(document, indent=1) + "\n", mode=0o600)
    except BaseException:
        store.close()
        raise
    store._load_claimed(incarnation)
    return store
