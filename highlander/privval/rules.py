"""FilePV's double-sign rule, and the limits the register adds, as pure
decisions.

What CometBFT's own file signer (``privval/file.go``) guarantees, and so
what any remote signer must keep, given the last thing it signed:

- a height/round/step below the last one is refused;
- the same HRS with the same sign bytes gets the stored signature again;
- the same HRS where only the timestamp differs gets the stored signature
  and the stored timestamp (the node puts it back into its vote);
- anything else at the same HRS is a conflict: a double sign attempt.

A fresh signature (a new HRS) must in addition be strictly above the mark
the register held when this signer was promoted (another signer may have
signed there), and not so far above the last mark that one forged request
could push the register out of reach of the real chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from google.protobuf.message import Message

from highlander.privval.signbytes import timestamp_only_difference
from highlander.signstate.register import HRS, ZERO


class LastSigned(NamedTuple):
    """What the signer signed last; survives restarts (see :mod:`state`)."""

    hrs: HRS
    sign_bytes: bytes = b""
    signature: bytes = b""


NOTHING = LastSigned(ZERO)


@dataclass(frozen=True)
class Sign:
    """A new HRS: may be signed once the register accepts it."""


@dataclass(frozen=True)
class Reuse:
    """Hand out the stored signature; ``timestamp`` replaces the request's when set."""

    signature: bytes
    timestamp: Message | None = None


@dataclass(frozen=True)
class Refuse:
    reason: str
    conflict: bool = False  # a double sign was attempted: raise the alarm


Decision = Sign | Reuse | Refuse


def decide(last: LastSigned, hrs: HRS, sign_bytes: bytes) -> Decision:
    """FilePV's rule for a request at ``hrs`` whose sign bytes are ``sign_bytes``."""
    if hrs < last.hrs:
        return Refuse(f"{hrs} is below the last signed {last.hrs} (height/round/step regression)")
    if hrs > last.hrs:
        return Sign()
    if not last.sign_bytes or not last.signature:
        return Refuse(f"{hrs} was signed before but its sign bytes are not on record; refusing to sign it again")
    if sign_bytes == last.sign_bytes:
        return Reuse(last.signature)
    timestamp = timestamp_only_difference(hrs.step, last.sign_bytes, sign_bytes)
    if timestamp is not None:
        return Reuse(last.signature, timestamp)
    return Refuse(f"conflicting data at {hrs}: already signed something else there", conflict=True)


def check_fresh(hrs: HRS, promoted_at: HRS, last: HRS, max_height_gap: int) -> str | None:
    """Why a new signature at ``hrs`` must not be made, or None.

    ``promoted_at`` is the register's mark when this signer was promoted;
    ``last`` the higher of that and this signer's own last signature.
    """
    if hrs <= promoted_at:
        return (
            f"{hrs} is not above the register's mark {promoted_at} at promotion: another signer may have signed there"
        )
    if last.height > 0 and hrs.height > last.height + max_height_gap:
        return (
            f"height {hrs.height} is more than {max_height_gap} above the last mark {last}: refusing a jump that "
            "would lock the register above the chain (raise max_height_gap if the chain really moved that far)"
        )
    return None
