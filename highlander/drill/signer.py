"""``highlander demo-signer``: a synthetic validator that signs through the register.

The workload of the demo, the lab and the failover drills. The chain is
synthetic: its height is a function of wall time since ``genesis``, so any
signer on any node signs the chain's *current* height, as a real validator
does after a failover. For every height it signs the steps propose, prevote
and precommit of round 0 that lie strictly above the mark its promotion
returned, each one only after a majority of the register accepted it::

    promote once                       (retry while there is no majority)
    for each mark above the hwm:
        advance(epoch, mark, digest)   Superseded -> exit 3, Conflict -> exit 4,
                                       NO_QUORUM -> do not sign, retry
        sign (ed25519), journal the signature (fsync), then the next mark

The block hash in the sign bytes depends on the node and the epoch, so two
signers at the same height/round/step always sign different bytes: a double
sign is always visible to ``highlander check-journals``. ``guard=False``
(``--no-guard``) never asks the register, the negative control that shows
the checker does catch double signs; each such run journals its start time
in milliseconds as its epoch (:func:`unguarded_run`).

A vote for a block that ended more than :func:`lateness` ago is not signed
even when the register accepted it: the chain has moved on. This is what
keeps a signer that was frozen (SIGSTOP) between the register's answer and
its signature from publishing that stale signature when it wakes up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple, TypeVar

from highlander.drill.chain import _handler as status_handler
from highlander.signstate.client import (
    Conflict,
    Refused,
    Session,
    SignerClient,
    Superseded,
)
from highlander.signstate.register import HRS, NO_QUORUM, STEPS, ZERO, KeyId

log = logging.getLogger(__name__)
T = TypeVar("T")

# Exit statuses (documented in the CLI help).
EXIT_STOPPED = 0  # SIGTERM/SIGINT
EXIT_REFUSED = 1  # promotion refused for another reason than NO_QUORUM
EXIT_SUPERSEDED = 3  # STALE_EPOCH: another node was promoted; nothing more was signed
EXIT_CONFLICT = 4  # CONFLICT: another digest was accepted at this mark
EXIT_BROKEN = 5  # the daemon refused an advance for a reason a signer cannot fix (REGRESSION, ERROR)

RETRY_FIRST = 0.05  # seconds: first back-off while there is no majority or no daemon
RETRY_MAX = 1.0  # seconds: the longest back-off
CLIENT_TIMEOUT = 10.0  # seconds the daemon may take to answer one request


class SignerError(RuntimeError):
    """The signer cannot start (key file, journal, status address)."""


class Options(NamedTuple):
    socket: Path
    key: KeyId
    node: str
    journal: Path
    block_time: float = 1.0
    genesis: float = 0.0
    status_listen: tuple[str, int] | None = None
    key_file: Path | None = None
    guard: bool = True


# -- the synthetic chain ------------------------------------------------------


def chain_height(now: float, genesis: float, block_time: float) -> int:
    """The height being decided at wall time ``now`` (0 before genesis)."""
    if now < genesis:
        return 0
    return 1 + int((now - genesis) / block_time)


def block_end(height: int, genesis: float, block_time: float) -> float:
    """Wall time at which ``height`` is over."""
    return genesis + height * block_time


def lateness(block_time: float) -> float:
    """How long after its block ended a vote is still signed."""
    return max(1.0, 4 * block_time)


def unguarded_run(now: float) -> int:
    """What an unguarded signer journals as its epoch, having none from the
    register: its start time in milliseconds, so that each run is a signer
    (node, epoch) of its own in the journals and a restarted signer is never
    taken for one that signed all along (register epochs are small numbers)."""
    return int(now * 1000)


def next_mark(last: HRS, height: int) -> HRS | None:
    """The first mark of round 0 at ``height`` strictly above ``last``."""
    for step in STEPS:
        mark = HRS(height, 0, step)
        if mark > last:
            return mark
    return None


def block_hash(key: KeyId, height: int, node: str, epoch: int) -> str:
    """The proposal the signer votes for: differs per node and per epoch."""
    return hashlib.sha256(f"{key.chain_id}|{height}|{node}|{epoch}".encode()).hexdigest()


def sign_bytes(key: KeyId, mark: HRS, node: str, epoch: int) -> bytes:
    """Canonical bytes of one vote (CometBFT-like fields, JSON-encoded)."""
    h, r, s = mark
    document = {
        "chain_id": key.chain_id,
        "height": str(h),
        "round": r,
        "type": STEPS[s],
        "block_id": {"hash": block_hash(key, h, node, epoch)},
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# -- the signing key, the journal, the status endpoint ------------------------


def load_key(path: Path | None):  # type: ignore[no-untyped-def]
    """The ed25519 private key in ``path`` (PEM, created 0600 when missing),
    or a fresh key that lives only as long as the process."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if path is None:
        return Ed25519PrivateKey.generate()
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another signer created it first: use that one
        return _read_key(path)
    except OSError as exc:
        raise SignerError(f"{path}: cannot create the key file: {exc.strerror}") from None
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("event=key-created path=%s", path)
    return key


def _read_key(path: Path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for _ in range(50):  # a key another signer is writing right now
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SignerError(f"{path}: cannot read the key file: {exc.strerror}") from None
        if data:
            break
        time.sleep(0.02)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SignerError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignerError(f"{path}: not an ed25519 key ({type(key).__name__})")
    return key


class Journal:
    """Append-only JSON lines; each line is on disk before the next vote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise SignerError(f"{path}: cannot open the journal: {exc.strerror}") from None
        if created:  # the file's name must survive a power cut too
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def append(self, entry: dict[str, object]) -> None:
        data = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: the vote must not count as signed
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class Status:
    """What ``/status`` reports: the last signed height, and catching_up
    until this signer is promoted and signing."""

    def __init__(self, key: KeyId, node: str) -> None:
        self.key = key
        self.node = node
        self.height = 0
        self.signing = False
        self._lock = threading.Lock()

    def signed(self, height: int) -> None:
        with self._lock:
            self.height = height
            self.signing = True

    def status(self) -> dict[str, object]:
        with self._lock:
            height, signing = self.height, self.signing
        return {
            "jsonrpc": "2.0",
            "id": -1,
            "result": {
                "node_info": {"network": self.key.chain_id, "moniker": self.node},
                "validator_info": {"key_id": self.key.key_id},
                "sync_info": {"latest_block_height": str(height), "catching_up": not signing},
            },
        }


# -- the signer ----------------------------------------------------------------


class Signer:
    """One signer process's state; :meth:`run` returns the exit status."""

    def __init__(self, options: Options, stop: threading.Event, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.stop = stop
        self.clock = clock
        self.private_key = load_key(options.key_file)
        self.journal = Journal(options.journal)
        self.status = Status(options.key, options.node)
        self._client: SignerClient | None = None
        self._server: ThreadingHTTPServer | None = None

    # The register, reconnecting when the local daemon went away.

    def _connect(self) -> SignerClient:
        if self._client is None:
            self._client = SignerClient(self.options.socket, timeout=CLIENT_TIMEOUT)
        return self._client

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _call(self, function: Callable[[SignerClient], T]) -> T:
        """``function(client)``; a lost daemon raises ConnectionError and
        closes the connection (an answer may still be in flight on it)."""
        try:
            return function(self._connect())
        except (OSError, ValueError) as exc:  # ConnectionError, timeouts, garbled answers
            self._disconnect()
            raise ConnectionError(str(exc) or type(exc).__name__) from None

    def _wait(self, seconds: float) -> bool:
        """Sleep unless asked to stop; True when asked to stop."""
        return self.stop.wait(max(seconds, 0))

    def promote(self) -> tuple[int, HRS] | int:
        """(epoch, hwm), or the exit status when the signer must not start."""
        backoff = RETRY_FIRST
        while not self.stop.is_set():
            try:
                session = self._call(partial(_promote, key=self.options.key))
            except ConnectionError as exc:
                log.warning("event=daemon-unreachable op=promote retry_in=%.2fs reason=%r", backoff, str(exc))
            except Conflict as exc:  # the read repair met another digest at the quorum's mark
                log.critical(
                    "event=ALARM-conflict op=promote detail=%r: the replicas disagree on the last "
                    "signed mark; refusing to sign",
                    exc.detail,
                )
                return EXIT_CONFLICT
            except Refused as exc:
                if exc.status != NO_QUORUM:
                    log.error("event=not-promoted status=%s detail=%r: this node must not sign", exc.status, exc.detail)
                    return EXIT_REFUSED
                log.warning("event=no-quorum op=promote retry_in=%.2fs detail=%r", backoff, exc.detail)
            else:
                epoch, hwm = session.epoch, session.hwm
                log.info("event=promoted key=%s epoch=%d hwm=%s", self.options.key, epoch, hwm)
                return epoch, hwm
            if self._wait(backoff):
                break
            backoff = min(backoff * 2, RETRY_MAX)
        return EXIT_STOPPED

    def run(self) -> int:
        try:
            self._serve_status()
            if not self.options.guard:
                run = unguarded_run(self.clock())
                log.warning("event=unguarded run=%d: --no-guard, signing without the register (negative control)", run)
                return self._sign_loop(run, ZERO)
            promoted = self.promote()
            if isinstance(promoted, int):
                return promoted
            return self._sign_loop(*promoted)
        finally:
            self.close()

    def _sign_loop(self, epoch: int, last: HRS) -> int:
        o = self.options
        backoff = RETRY_FIRST
        while not self.stop.is_set():
            now = self.clock()
            height = chain_height(now, o.genesis, o.block_time)
            mark = next_mark(last, height) if height else None
            if mark is None:  # this height is done (or the chain has not started): wait for the next block
                self._wait(block_end(max(height, last.height), o.genesis, o.block_time) - now + 0.001)
                continue
            digest = hashlib.sha256(sign_bytes(o.key, mark, o.node, epoch)).hexdigest()
            if o.guard:
                try:
                    self._call(partial(_advance, key=o.key, epoch=epoch, mark=mark, digest=digest))
                except Superseded as exc:
                    log.error(
                        "event=superseded status=%s epoch=%d hrs=%s detail=%r: another node was promoted; "
                        "stopping, signing nothing more",
                        exc.status,
                        epoch,
                        mark,
                        exc.detail,
                    )
                    return EXIT_SUPERSEDED
                except Conflict as exc:
                    log.critical(
                        "event=ALARM-conflict status=%s epoch=%d hrs=%s detail=%r: another digest was "
                        "accepted at this mark; refusing to sign",
                        exc.status,
                        epoch,
                        mark,
                        exc.detail,
                    )
                    return EXIT_CONFLICT
                except Refused as exc:
                    if exc.status != NO_QUORUM:
                        log.error(
                            "event=refused epoch=%d hrs=%s status=%s detail=%r: stopping",
                            epoch,
                            mark,
                            exc.status,
                            exc.detail,
                        )
                        return EXIT_BROKEN
                    log.warning("event=no-quorum hrs=%s retry_in=%.2fs detail=%r", mark, backoff, exc.detail)
                    self._wait(backoff)
                    backoff = min(backoff * 2, RETRY_MAX)
                    continue
                except ConnectionError as exc:
                    log.warning("event=daemon-unreachable hrs=%s retry_in=%.2fs reason=%r", mark, backoff, str(exc))
                    self._wait(backoff)
                    backoff = min(backoff * 2, RETRY_MAX)
                    continue
                backoff = RETRY_FIRST
            last = mark
            self._sign(epoch, mark, digest)
        log.info("event=stopped reason=signal last=%s", last)
        return EXIT_STOPPED

    def _sign(self, epoch: int, mark: HRS, digest: str) -> None:
        o = self.options
        signature = self.private_key.sign(sign_bytes(o.key, mark, o.node, epoch))
        entry = {
            "key": str(o.key),
            "height": mark.height,
            "round": mark.round,
            "step": mark.step,
            "digest": digest,
            "node": o.node,
            "epoch": epoch,
            "time": 0.0,
            "signature": base64.b64encode(signature).decode(),
        }
        # Last look at the clock, as close to the write as it gets: a vote
        # for a block long over is dropped (a frozen signer waking up).
        now = self.clock()
        late = now - block_end(mark.height, o.genesis, o.block_time)
        if late > lateness(o.block_time):
            log.warning("event=late hrs=%s late_by=%.3fs: the chain moved on, not signing", mark, late)
            return
        entry["time"] = now
        try:
            self.journal.append(entry)
        except OSError as exc:  # the vote is not journalled: it must not count as signed, stop here
            raise SignerError(f"{o.journal}: cannot write the journal: {exc.strerror or exc}") from None
        self.status.signed(mark.height)

    def _serve_status(self) -> None:
        if self.options.status_listen is None:
            return
        host, port = self.options.status_listen
        try:
            self._server = ThreadingHTTPServer((host, port), status_handler(self.status))  # type: ignore[arg-type]
        except OSError as exc:
            raise SignerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        log.info("event=status-serving url=http://%s:%d/status", host, port)

    def close(self) -> None:
        self._disconnect()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.journal.close()


def _promote(client: SignerClient, key: KeyId) -> Session:
    return client.promote(key)


def _advance(client: SignerClient, key: KeyId, epoch: int, mark: HRS, digest: str) -> None:
    client.advance(key, epoch, mark, digest)


def run(options: Options, stop: threading.Event) -> int:
    """Sign until superseded, in conflict, or ``stop`` is set; the exit status."""
    if not (options.block_time > 0 and math.isfinite(options.block_time)):
        raise SignerError(f"block time must be a positive number of seconds, got {options.block_time!r}")
    log.info(
        "event=starting node=%s key=%s socket=%s journal=%s block_time=%g genesis=%.3f guard=%s",
        options.node,
        options.key,
        options.socket,
        options.journal,
        options.block_time,
        options.genesis,
        "on" if options.guard else "OFF",
    )
    return Signer(options, stop).run()
