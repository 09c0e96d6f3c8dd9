#!/usr/bin/env python3
"""A sign-state daemon whose register answers at once: a reference for the breakdown.

``privval_sign.py --breakdown`` points ``highlander privval`` at it to time
the signer's own share of a signature. The signer talks to the same daemon
code as in production (:class:`SignStateNode`: the socket, the parsing, the
epoch checks), and only the backend behind it differs: it neither replicates
nor writes, and accepts every advance of the epoch it promoted. It exists to
be measured against and must never stand behind a signer that signs for a
chain: nothing it accepts survives it.

Usage: ``instant_register.py SOCKET`` (until SIGTERM or SIGINT).
"""

from __future__ import annotations

import sys
from pathlib import Path

from highlander.signstate.backends import Backend, Outcome
from highlander.signstate.config import NodeConfig
from highlander.signstate.register import HRS, OK, REFUSED, Ballot, KeyId, Record
from highlander.signstate.server import SignStateNode

NODE = "bench"


class InstantBackend(Backend):
    """Every promotion succeeds with the next ballot; every advance at it is OK."""

    async def promised_here(self, key: KeyId) -> Ballot | None:
        return self._promoted.get(key)

    async def _promote(self, key: KeyId) -> Outcome:
        counter = self._promoted[key].counter + 1 if key in self._promoted else 1
        return Outcome(OK, Ballot(counter, self.node))

    async def _advance(self, key: KeyId, ballot: Ballot, hrs: HRS, digest: str) -> Outcome:
        return Outcome(OK, ballot, Record(ballot, hrs, digest))

    async def status(self, key: KeyId) -> dict[str, Record | str]:
        return {self.node: "an instant register keeps nothing"}

    async def reset(self, key: KeyId, hrs: HRS) -> Outcome:
        return Outcome(REFUSED, detail="an instant register keeps nothing to reset")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    config = NodeConfig(
        node=NODE, listen=None, peers={}, state_dir=None, pki_dir=None, socket=Path(sys.argv[1]), backend="instant"
    )
    SignStateNode(config, InstantBackend(NODE)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
