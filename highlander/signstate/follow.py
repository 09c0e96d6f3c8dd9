"""Replicating a FilePV signer's state file to the register while it runs.

A daemon such as CometBFT with its FilePV signs on its own and records the
mark in its state file before it hands the signature out. This follower
polls that file and advances the register to every new mark. It cannot stop
a signature before it exists — the residual window is one poll interval
plus one advance — which is why promotion in this mode raises the next
signer's state file by a height margin. What it can do is end a superseded
signer at once: when the register answers STALE_EPOCH (another node was
promoted) or CONFLICT, it kills the daemon with SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

from highlander.signstate import formats
from highlander.signstate.client import Conflict, Refused, SignerClient, Superseded
from highlander.signstate.register import HRS, KeyId

log = logging.getLogger("highlander.signstate.follow")


def _read(path: Path, kind: str) -> formats.SignState | None:
    """The file's state, or None while it is missing or being replaced."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    parse = formats.parse_cometbft if kind == "cometbft" else formats.parse_tmkms
    try:
        return parse(text, source=str(path))
    except formats.StateFileError as exc:
        log.warning("event=unreadable file=%s reason=%r", path, str(exc))
        return None


def follow(
    socket_path: Path,
    key: KeyId,
    epoch: int,
    state_file: Path,
    kind: str,
    since: HRS,
    guard_pid: int | None,
    stop: threading.Event,
    interval: float = 0.1,
) -> int:
    """Run until ``stop`` is set; the exit status (3 superseded, 4 conflict).

    ``since`` is the mark the promotion wrote into the file: everything the
    signer writes above it is replicated, including what it wrote before
    this process got to look.
    """
    last = since
    with SignerClient(socket_path) as client:
        while not stop.wait(interval):
            state = _read(state_file, kind)
            if state is None or state.hrs <= last:
                continue
            digest = formats.digest_of(state)
            if not digest:  # a mark written without sign bytes is not a signature
                last = state.hrs
                continue
            try:
                client.advance(key, epoch, state.hrs, digest)
            except (Superseded, Conflict) as exc:
                log.error("event=%s key=%s hrs=%s: %s; killing the signer", exc.status, key, state.hrs, exc)
                if guard_pid:
                    try:
                        os.kill(guard_pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return 3 if isinstance(exc, Superseded) else 4
            except Refused as exc:
                log.warning("event=not-replicated key=%s hrs=%s reason=%r (retrying)", key, state.hrs, str(exc))
                continue
            last = state.hrs
            log.info("event=replicated key=%s hrs=%s", key, state.hrs)
    return 0
