"""The register as a node's signers see it, behind one interface.

Patroni puts etcd, Consul, ZooKeeper and its own Raft behind one ``dcs``
interface; here the built-in trio of replicas (:mod:`.trio`) is one backend
of :class:`Backend`, and a store an operator already runs can be another.
The local signer API (:mod:`highlander.signstate.server`) serves any of
them and does not know which one it talks to.

What every backend shares is here, once: a signer gets an *epoch* (the
counter of a ballot) from a promotion on this node, and its advances are
forwarded only at the ballot that node owns and was promised, so a signer
cannot borrow another node's epoch nor push the register to one nobody
promoted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

from highlander.signstate import register
from highlander.signstate.register import HRS, NO_BALLOT, OK, REFUSED, STALE_EPOCH, Ballot, KeyId, Record


class Outcome(NamedTuple):
    """What a backend tells the signer."""

    status: str
    ballot: Ballot = NO_BALLOT
    record: Record = register.EMPTY
    detail: str = ""


class BackendError(RuntimeError):
    """An operation this backend cannot do now; the message says what is missing."""


class Backend(ABC):
    """The register's operations for the signers of ``node``."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._promoted: dict[KeyId, Ballot] = {}  # the ballot of this node's latest promotion, per key

    async def start(self) -> None:
        """Open what the backend serves or connects to (before the signer API opens)."""

    async def close(self) -> None:
        """Release what :meth:`start` opened; changes in progress are finished or safely dropped."""

    async def promote(self, key: KeyId) -> Outcome:
        """Make this node the signer for ``key``: a new ballot of this node that
        supersedes every older one, and the highest mark to continue above."""
        outcome = await self._promote(key)
        if outcome.status == OK:
            self._promoted[key] = outcome.ballot
        return outcome

    async def advance(self, key: KeyId, counter: int, hrs: HRS, digest: str) -> Outcome:
        """Accept ``hrs``/``digest`` before it is signed, at the epoch ``counter``
        this node's promotion returned."""
        ballot = Ballot(counter, self.node)
        newest = self.newest_known(key)
        if ballot < newest:
            return Outcome(STALE_EPOCH, ballot, detail=f"ballot {newest} superseded {ballot}")
        if ballot != self._promoted.get(key) and ballot != await self.promised_here(key):
            return Outcome(REFUSED, ballot, detail=f"epoch {counter} was not promoted on {self.node}; promote first")
        return await self._advance(key, ballot, hrs, digest)

    def newest_known(self, key: KeyId) -> Ballot:
        """The newest ballot this node has heard of for ``key`` (NO_BALLOT: none)."""
        return NO_BALLOT

    @abstractmethod
    async def promised_here(self, key: KeyId) -> Ballot | None:
        """The ballot the register holds as promised to this node, if it can tell
        (so that a signer's epoch survives a restart of this daemon)."""

    @abstractmethod
    async def _promote(self, key: KeyId) -> Outcome: ...

    @abstractmethod
    async def _advance(self, key: KeyId, ballot: Ballot, hrs: HRS, digest: str) -> Outcome: ...

    @abstractmethod
    async def status(self, key: KeyId) -> dict[str, Record | str]:
        """Each place that holds ``key``'s record, or why it did not answer."""

    @abstractmethod
    async def reset(self, key: KeyId, hrs: HRS) -> Outcome:
        """Set ``key``'s mark to ``hrs``, even lower, behind a fresh promotion (root's recovery path)."""

    async def rejoin(self) -> str:
        """Rebuild this node's lost part of the register, where the backend has one."""
        raise BackendError(f"the {type(self).__name__} has nothing on this node to rejoin")

    def recovering(self) -> str:
        """Why this node's part of the register cannot answer ("" when it can)."""
        return ""

    def peers(self) -> list[tuple[str, bool, float]]:
        """The other places this node talks to: (name, reachable, seconds since their last answer)."""
        return []
