"""The signer's own last signature, durable across restarts.

FilePV's rule hands out the stored signature when the node asks again for
the same height/round/step, so the signature and its sign bytes must survive
a restart. The file is CometBFT's own ``priv_validator_state.json`` format
(height, round, step, signature, sign bytes), written durably (temporary
file, fsync, rename, fsync of the directory) and only ever raised.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from highlander.adapters.files import write_file
from highlander.privval.rules import NOTHING, LastSigned
from highlander.signstate import formats
from highlander.signstate.register import ZERO

log = logging.getLogger("highlander.privval")


class StateError(RuntimeError):
    """The state file cannot be read or written; the message names it and the fix."""


class StateFile:
    """One key's last signature at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> LastSigned:
        """The stored state; NOTHING when the file does not exist yet. A damaged
        file is an error, never "nothing signed" (that is how validators double-sign)."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(formats.MAX_SIZE + 1)
        except FileNotFoundError:
            return NOTHING
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            state = formats.parse_state(data, "cometbft", str(self.path))
        except formats.StateFileError as exc:
            raise StateError(f"{exc}; restore the file or import a higher one, never delete it") from None
        return LastSigned(state.hrs, state.signbytes or b"", state.signature or b"")

    def save(self, current: LastSigned, new: LastSigned) -> None:
        """Replace ``current`` (what this process holds) by ``new``, durably."""
        if new.hrs < current.hrs:
            raise StateError(f"{self.path}: refusing to lower the last signed mark from {current.hrs} to {new.hrs}")
        state = formats.SignState(new.hrs, new.signature or None, new.sign_bytes or None)
        if new.hrs == ZERO:
            raise StateError(f"{self.path}: nothing to save at {ZERO}")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_file(self.path, formats.dump_cometbft(state), mode=0o600)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot write: {exc.strerror or exc}") from None


class Saver:
    """Saves a key's newest signature in its state file, in a thread of its own.

    Only the newest signature matters: when signatures come faster than the
    disk takes them, the ones in between are never written (each save is a
    whole file and two syncs, and on a validator's disk they compete with the
    register's). A failed save is logged and the next one tries again; the
    register still guards every mark (see :mod:`highlander.privval.signer`).
    """

    def __init__(self, state: StateFile, saved: LastSigned, key_id: str) -> None:
        self.state = state
        self.key_id = key_id
        self._saved = saved  # what the file holds; only the saving thread changes it
        self._pending: LastSigned | None = None
        self._closing = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="state", daemon=True)
        self._thread.start()

    def submit(self, signed: LastSigned) -> None:
        """Save ``signed`` soon, replacing any older signature not yet written."""
        with self._changed:
            self._pending = signed
            self._changed.notify()

    def close(self) -> None:
        """Wait until the newest signature submitted is in the file (or failed)."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._pending is None and not self._closing:
                    self._changed.wait()
                signed, self._pending = self._pending, None
                if signed is None:
                    return
            try:
                self.state.save(self._saved, signed)
            except StateError as exc:
                log.error("event=state-not-saved key=%s at=%s error=%r", self.key_id, signed.hrs, str(exc))
                continue
            self._saved = signed
