"""The signer's own last signature, durable across restarts.

FilePV's rule hands out the stored signature when the node asks again for
the same height/round/step, so the signature and its sign bytes must survive
a restart. The file is CometBFT's own ``priv_validator_state.json`` format
(height, round, step, signature, sign bytes), written durably (temporary
file, fsync, rename, fsync of the directory) and only ever raised.
"""

from __future__ import annotations

from pathlib import Path

from highlander.adapters.files import write_file
from highlander.privval.rules import NOTHING, LastSigned
from highlander.signstate import formats
from highlander.signstate.register import ZERO


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
