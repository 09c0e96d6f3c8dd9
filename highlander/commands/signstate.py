"""Sign-state use cases: run a node, and move marks between the register
and a signer's own state file.

A state file is only ever raised, never lowered: lowering the last signed
height of a CometBFT or tmkms signer is how it comes to sign twice.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from highlander.signstate import formats
from highlander.signstate.config import load_config
from highlander.signstate.register import HRS, ZERO, KeyId, Record
from highlander.signstate.replica import Replica
from highlander.signstate.store import Store

FORMATS = ("cometbft", "tmkms")


class StateFileError(RuntimeError):
    """A state file cannot be used; the message names it and says why."""


def serve(config_path: Path) -> None:
    """Run one node's replica and coordinator until SIGTERM or SIGINT."""
    from highlander.signstate.server import SignStateNode

    config = load_config(config_path)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s %(levelname)s node={config.node} %(message)s"
    )
    node = SignStateNode(config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: node.stop())
    node.serve()


def read_state_file(path: Path, kind: str) -> formats.SignState:
    parse = formats.parse_cometbft if kind == "cometbft" else formats.parse_tmkms
    try:
        return parse(path.read_text())
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    except formats.StateFileError as exc:
        raise StateFileError(f"{path}: {exc}") from None


def render_state(kind: str, hrs: HRS) -> str:
    """A state file at ``hrs`` with no sign bytes: the signer refuses that
    exact mark (it cannot prove it is the same vote) and signs above it."""
    if kind == "cometbft":
        return formats.dump_cometbft(formats.SignState(hrs))
    return formats.dump_tmkms(formats.SignState(hrs, block_id=formats.nil_block_id()))


def raised_mark(hwm: HRS, height_margin: int) -> HRS:
    """The mark a signer's state file is raised to after a promotion, from
    the register's high-water mark and a height margin (FilePV mode).

    With a margin: precommit of round 0 at ``height_margin`` heights above
    the mark, so the new signer signs nothing below that height, nor its
    round 0, where the previous signer may have signed in its unchecked
    window. Without one, or before anything was signed: the mark itself.
    """
    if not height_margin or not hwm.height:
        return hwm
    return HRS(hwm.height + height_margin, 0, 3)


def raise_state_file(path: Path, kind: str, hrs: HRS) -> HRS:
    """Make the state file at ``path`` say at least ``hrs``; never lower it.

    Returns the mark the file holds afterwards. A missing file is created.
    """
    current = read_state_file(path, kind).hrs if path.exists() else ZERO
    if hrs <= current:
        return current
    formats.write_atomically(path, render_state(kind, hrs))
    return hrs


def import_state_file(store_dir: Path, key: KeyId, path: Path, kind: str) -> Record:
    """Raise the local replica's record for ``key`` to the mark in a state file.

    For a replica whose record was damaged, or a cluster that starts from a
    validator that signed before: run it with the daemon stopped.
    """
    state = read_state_file(path, kind)
    if state.hrs == ZERO:
        raise StateFileError(f"{path}: nothing was signed yet; there is nothing to import")
    store = Store(store_dir)
    claim = store.claim()
    try:
        return Replica(store).restore(key, Record(0, state.hrs, formats.digest_of(state)))
    finally:
        os.close(claim)
