"""Running a FilePV signer under a guard that replicates its state file.

A daemon such as CometBFT with its FilePV signs on its own and records the
mark in its state file before it hands the signature out, so the register
cannot stop a signature before it exists. The follower bounds what such a
signer can do unchecked, and fails closed:

- it starts the signer as its own child with the kernel's parent-death
  signal: when the follower dies, however it dies, the signer gets SIGKILL;
- it reads the state file every :data:`POLL_SECONDS` and advances the
  register to every new mark. A change that a majority has not accepted
  ``deadline`` seconds after the follower first saw it (no majority, the
  local daemon gone or frozen, the state file unreadable) gets every process
  of the signer SIGKILLed;
- ``STALE_EPOCH`` (another node was promoted) and ``CONFLICT`` kill it at once.

So a signature is handed out unchecked for at most POLL_SECONDS + deadline
after its state-file write (plus the host's scheduling delay), and then the
signer is dead. The next promotion's height margin covers that window.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from highlander.adapters import process
from highlander.signstate import formats
from highlander.signstate.client import Conflict, Refused, SignerClient, Superseded
from highlander.signstate.register import HRS, KeyId

if TYPE_CHECKING:
    from subprocess import Popen

log = logging.getLogger("highlander.signstate.follow")

# How often the state file is read: the first part of the unchecked window.
# One read of a file of a few hundred bytes, compared with the previous one.
POLL_SECONDS = 0.02
# How long a change may wait for a majority: the second part. Well under one
# block of a CometBFT chain.
DEADLINE_SECONDS = 1.0
# After a refused or failed advance, ask again this much later.
RETRY_SECONDS = 0.05

# Exit statuses of a follower that killed its signer (otherwise the signer's own).
SUPERSEDED = 3
CONFLICTED = 4
NOT_REPLICATED = 5


class SignerError(RuntimeError):
    """The signer cannot be started; the message names it and says why."""


@dataclass(frozen=True)
class Signer:
    """The signing daemon the follower runs: its command line, environment,
    working directory and user. It travels as JSON on the follower's
    standard input, so that secrets in the environment stay off any command
    line."""

    argv: list[str]
    env: dict[str, str]
    cwd: str = "/"
    user: str | None = None

    def to_json(self) -> str:
        return json.dumps({"argv": self.argv, "env": self.env, "cwd": self.cwd, "user": self.user})

    @classmethod
    def from_json(cls, text: str) -> Signer:
        """Raises ValueError naming what is wrong."""
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("the signer must be a JSON object with argv, env, cwd and user")
        argv, env = document.get("argv"), document.get("env", {})
        cwd, user = document.get("cwd", "/"), document.get("user")
        if not (isinstance(argv, list) and argv and all(isinstance(word, str) for word in argv)):
            raise ValueError(f"the signer's argv must be a non-empty list of strings, got {argv!r:.80}")
        if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise ValueError("the signer's env must map strings to strings")
        if not isinstance(cwd, str) or not (user is None or isinstance(user, str)):
            raise ValueError("the signer's cwd must be a string and its user a string or null")
        return cls(argv, env, cwd, user)

    def start(self) -> Popen[bytes]:
        """The signer as a child of this thread, in its own session, that
        dies with it. Spawn before starting any thread (``preexec_fn``)."""
        try:
            return process.spawn(
                self.argv, env=self.env, cwd=self.cwd, logfile=None, user=self.user, die_with_parent=True
            )
        except OSError as exc:
            raise SignerError(f"cannot run {self.argv[0]!r}: {exc.strerror or exc}") from None


class _StateFile:
    """The signer's state file as last read.

    An unreadable file (gone, garbled, too large) counts as an unreplicated
    change: the follower cannot see what the signer signed, so the register no
    longer guards it. FilePV replaces the file atomically, so a healthy signer
    never leaves it unreadable; a torn write by some other writer heals within
    the deadline. Only a file that never existed yet is fine: nothing was
    signed.
    """

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.raw: bytes | None = None
        self.existed = False
        self.state: formats.SignState | None = None
        self.error = ""

    def read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(formats.MAX_SIZE + 1)
            self.existed = True
        except FileNotFoundError:
            if not self.existed:
                return
            self.raw, self.state, self.error = None, None, f"{self.path} is gone"
            return
        except OSError as exc:
            self.raw, self.state, self.error = None, None, f"cannot read {self.path}: {exc.strerror or exc}"
            return
        if raw == self.raw:
            return
        self.raw = raw
        try:
            self.state, self.error = formats.parse_state(raw, self.kind, str(self.path)), ""
        except formats.StateFileError as exc:
            self.state, self.error = None, str(exc)


class _Replicator(threading.Thread):
    """Advances the register to the newest mark offered, in a thread of its
    own so that a daemon that does not answer never delays the deadline."""

    def __init__(self, socket_path: Path, key: KeyId, epoch: int, since: HRS) -> None:
        super().__init__(name="replicator", daemon=True)
        self.socket_path, self.key, self.epoch = socket_path, key, epoch
        self._changed = threading.Condition()
        self._wanted: tuple[HRS, str] | None = None
        self.accepted = since  # the highest mark a majority accepted
        self.error = ""  # why the newest mark offered is not accepted yet
        self.fatal: tuple[HRS, Refused] | None = None  # STALE_EPOCH or CONFLICT, and where

    def offer(self, hrs: HRS, digest: str) -> None:
        with self._changed:
            self._wanted = (hrs, digest)
            self._changed.notify()

    def _next(self) -> tuple[HRS, str]:
        with self._changed:
            while self._wanted is None or self._wanted[0] <= self.accepted:
                self._changed.wait()
            return self._wanted

    def run(self) -> None:
        client: SignerClient | None = None
        while True:
            hrs, digest = self._next()
            try:
                client = client or SignerClient(self.socket_path)
                client.advance(self.key, self.epoch, hrs, digest)
            except (Superseded, Conflict) as exc:
                self.fatal = (hrs, exc)
                return
            except (Refused, ConnectionError, OSError, ValueError) as exc:
                # No majority, the daemon gone or garbling: retried until the deadline.
                if not isinstance(exc, Refused) and client is not None:
                    client.close()
                    client = None
                self.error = str(exc)
                log.warning("event=not-replicated key=%s hrs=%s reason=%r", self.key, hrs, self.error)
                time.sleep(RETRY_SECONDS)
                continue
            with self._changed:
                self.accepted, self.error = max(self.accepted, hrs), ""
            log.info("event=replicated key=%s hrs=%s", self.key, hrs)


class _Guard:
    """The follower's main loop: watch the file, hold every change to its
    deadline, and kill the signer when the register does not hold what it
    signed."""

    def __init__(
        self,
        child: Popen[bytes],
        watched: _StateFile,
        replicator: _Replicator,
        since: HRS,
        deadline: float,
        reason_file: Path | None,
    ) -> None:
        self.child, self.watched, self.replicator = child, watched, replicator
        self.deadline, self.reason_file = deadline, reason_file
        self.seen = since  # the highest mark read from the file
        self.pending: deque[tuple[HRS, float]] = deque()  # signatures offered, not yet accepted, and when first seen
        self.unreadable_since: float | None = None

    def run(self, interval: float) -> int:
        while True:
            now = time.monotonic()
            if self.replicator.fatal is not None:
                hrs, exc = self.replicator.fatal
                if isinstance(exc, Superseded):
                    return self.kill(SUPERSEDED, f"another node was promoted; {hrs} was refused ({exc})")
                return self.kill(CONFLICTED, f"{hrs} conflicts with a signature the register holds ({exc})")
            self.look(now)
            status = self.child.poll()
            started = self.clock()
            if started is None:
                if status is not None:
                    return self.ended(status)
                time.sleep(interval)
                continue
            left = started + self.deadline - now
            if left > 0:
                time.sleep(min(interval, left))
            elif status is None:
                return self.kill(NOT_REPLICATED, self.overdue())
            else:
                log.error("event=not-replicated-at-exit %s", self.overdue())
                return self.ended(status)

    def look(self, now: float) -> None:
        """Read the file, offer a new signature, and drop what was accepted."""
        self.watched.read()
        state = self.watched.state
        if state is not None and state.hrs > self.seen:
            self.seen = state.hrs
            digest = formats.digest_of(state)
            if digest:  # a mark written without sign bytes is not a signature
                self.pending.append((state.hrs, now))
                self.replicator.offer(state.hrs, digest)
        accepted = self.replicator.accepted
        while self.pending and self.pending[0][0] <= accepted:
            self.pending.popleft()
        if not self.watched.error:
            self.unreadable_since = None
        elif self.unreadable_since is None:
            self.unreadable_since = now

    def clock(self) -> float | None:
        """When the oldest change the register does not hold was first seen."""
        times = [t for t in (self.pending[0][1] if self.pending else None, self.unreadable_since) if t is not None]
        return min(times, default=None)

    def overdue(self) -> str:
        within = f"{self.deadline:g} s"
        if self.pending and self.pending[0][1] == self.clock():
            reason = self.replicator.error or "no answer from the sign-state daemon yet"
            return f"{self.pending[0][0]} was not on a majority within {within} ({reason})"
        return f"the state file was unreadable for {within} ({self.watched.error})"

    def kill(self, status: int, reason: str) -> int:
        """SIGKILL every process of the signer, then say why where the agent looks."""
        marker = process.own_marker()
        targets = process.find_tagged(marker) if marker else []
        leader = None
        if self.child.poll() is None:  # not reaped: its PID (and group) cannot have been reused
            leader = self.child.pid
            targets.append(leader)
        process.signal_processes(targets, signal.SIGKILL, leader)
        self.child.wait()
        message = f"killed the signer: {reason}"
        log.error("event=killed-signer %s", message)
        if self.reason_file is not None:
            process.write_small_file(str(self.reason_file), message + "\n")
        return status

    def ended(self, status: int) -> int:
        log.info("event=signer-exited status=%s", status)
        return status if status >= 0 else 128 - status


def follow(
    socket_path: Path,
    key: KeyId,
    epoch: int,
    state_file: Path,
    kind: str,
    since: HRS,
    signer: Signer,
    *,
    deadline: float = DEADLINE_SECONDS,
    pidfile: Path | None = None,
    reason_file: Path | None = None,
    interval: float = POLL_SECONDS,
) -> int:
    """Run ``signer`` and guard it until it exits; the exit status.

    ``since`` is the mark the promotion wrote into the file: every signature
    above it is replicated, including what the signer wrote before this
    process got to look. SIGTERM and SIGINT are passed on to the signer,
    which stays guarded until it has exited. The status is the signer's
    (128 + signal when a signal ended it), or :data:`SUPERSEDED`,
    :data:`CONFLICTED`, :data:`NOT_REPLICATED` when the follower killed it,
    with the reason written to ``reason_file``.
    """
    watched = _StateFile(state_file, kind)
    replicator = _Replicator(socket_path, key, epoch, since)
    child = signer.start()  # in the main thread, which lives as long as this process
    guard = _Guard(child, watched, replicator, since, deadline, reason_file)
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: child.send_signal(signal.SIGTERM))
        if pidfile is not None:
            process.write_pidfile(str(pidfile), child.pid)
        log.info("event=started-signer pid=%s key=%s epoch=%s since=%s", child.pid, key, epoch, since)
        replicator.start()
        return guard.run(interval)
    except BaseException as exc:
        if child.poll() is None:  # never leave a signer unguarded
            guard.kill(NOT_REPLICATED, f"the follower failed: {type(exc).__name__}: {exc}")
        raise
