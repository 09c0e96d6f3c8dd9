"""What the backends on an external store share: one record per key, changed atomically.

etcd and PostgreSQL are replicated, linearizable stores of their own: the
register needs no majority of its own there, only that every change of a
key's record is a read, the register's pure rule (:mod:`..register`), and a
write that happens only if nobody changed the record in between. Each store
says how with :meth:`ExternalBackend._update`; promotion, advance, reset and
import are written once here on top of it, so the verdicts are the trio's:
``STALE_EPOCH``, ``REGRESSION``, ``CONFLICT`` from the rule, ``NO_QUORUM``
when the store cannot be reached, has no quorum or does not answer in time
(nothing may be signed then: the change may or may not have happened, and
the next request finds out).

There is no read repair: a promotion's read is linearizable, so the mark it
returns is the highest one accepted, and the promise it writes is seen by
every later advance.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable

from highlander.signstate import register
from highlander.signstate.backends import Backend, BackendError, Outcome
from highlander.signstate.register import (
    CONFLICT,
    HRS,
    NO_QUORUM,
    OK,
    REGRESSION,
    STALE_EPOCH,
    Ballot,
    KeyId,
    Record,
    Reply,
)

log = logging.getLogger("highlander.signstate")

# A change of one record: the register's rule applied to what the store holds.
Change = Callable[[Record], tuple[Record, Reply]]

ATTEMPTS = 20  # reads and conditional writes of one change before contention counts as no answer


class Unavailable(Exception):
    """The store did not answer in time, has no quorum, or the connection broke."""


class ExternalBackend(Backend):
    """A register kept as one record per key in a store that replicates itself."""

    store_name = "store"  # how status names the one place that holds a record

    def __init__(self, node: str, timeout: float) -> None:
        super().__init__(node)
        self.timeout = timeout

    @abstractmethod
    async def _read(self, key: KeyId) -> Record:
        """``key``'s record as the store holds it now (linearizable); EMPTY when there is none."""

    @abstractmethod
    async def _update(self, key: KeyId, change: Change) -> Reply:
        """Apply ``change`` to ``key``'s current record atomically: the record it
        read is the one it replaces, and it writes only when the record changed."""

    async def _run(self, key: KeyId, ballot: Ballot, change: Change, event: str) -> Outcome:
        """One change as an outcome: NO_QUORUM when the store does not answer."""
        try:
            reply = await self._update(key, change)
        except Unavailable as exc:
            detail = f"{self.store_name} did not answer: {exc}"
            log.warning("event=%s key=%s ballot=%s outcome=NO_QUORUM %s", event, key, ballot, detail)
            return Outcome(NO_QUORUM, ballot, detail=detail)
        except BackendError as exc:
            log.error("event=%s key=%s ballot=%s outcome=ERROR %s", event, key, ballot, exc)
            raise
        return Outcome(reply.status, ballot, reply.record, _explain(reply, ballot))

    async def promised_here(self, key: KeyId) -> Ballot | None:
        return (await self._read(key)).promised

    async def advance(self, key: KeyId, counter: int, hrs: HRS, digest: str) -> Outcome:
        """As every backend does; when this daemon has to ask the store whether the
        epoch was promoted here (after a restart) and it does not answer: NO_QUORUM."""
        try:
            return await super().advance(key, counter, hrs, digest)
        except Unavailable as exc:
            return Outcome(NO_QUORUM, Ballot(counter, self.node), detail=f"{self.store_name} did not answer: {exc}")

    async def _promote(self, key: KeyId) -> Outcome:
        """A ballot of this node above the one the store holds, promised in one change."""
        chosen: list[Ballot] = []

        def promise(record: Record) -> tuple[Record, Reply]:
            ballot = register.next_ballot(record.promised, self.node)
            chosen.append(ballot)
            return register.promise(record, ballot)

        outcome = await self._run(key, Ballot(0, self.node), promise, "promote")
        if chosen:
            outcome = outcome._replace(ballot=chosen[-1])
        log.info(
            "event=promote key=%s ballot=%s outcome=%s hwm=%s %s",
            key,
            outcome.ballot,
            outcome.status,
            outcome.record.hwm,
            outcome.detail,
        )
        return outcome

    async def _advance(self, key: KeyId, ballot: Ballot, hrs: HRS, digest: str) -> Outcome:
        outcome = await self._run(key, ballot, lambda record: register.advance(record, ballot, hrs, digest), "advance")
        if outcome.status == OK:
            log.debug("event=advance key=%s ballot=%s hrs=%s outcome=OK", key, ballot, hrs)
        elif outcome.status != NO_QUORUM:
            log.info(
                "event=advance key=%s ballot=%s hrs=%s outcome=%s %s", key, ballot, hrs, outcome.status, outcome.detail
            )
        if outcome.status == CONFLICT:
            log.error("event=conflict key=%s hrs=%s: another digest was accepted at this mark", key, hrs)
        return outcome

    async def reset(self, key: KeyId, hrs: HRS) -> Outcome:
        """Set ``key``'s mark to ``hrs`` behind a fresh promotion (which supersedes its signer)."""
        promoted = await self.promote(key)
        if promoted.status != OK:
            return promoted._replace(detail=f"not reset: the promotion failed: {promoted.detail}")
        ballot = promoted.ballot
        outcome = await self._run(key, ballot, lambda record: register.reset(record, ballot, hrs), "reset")
        log.warning(
            "event=reset key=%s ballot=%s hrs=%s outcome=%s %s", key, ballot, hrs, outcome.status, outcome.detail
        )
        return outcome

    async def raise_mark(self, key: KeyId, hwm: HRS, digest: str) -> Record:
        """Raise ``key``'s mark to at least ``hwm`` (importing a signer's state file);
        never lower it. A different digest at the same mark is refused."""

        def raised(record: Record) -> tuple[Record, Reply]:
            if record.hwm == hwm and record.digest and digest and record.digest != digest:
                return record, Reply(CONFLICT, record)
            merged = register.merge((record, Record(record.promised, hwm, digest)))
            return merged, Reply(OK, merged)

        outcome = await self._run(key, register.NO_BALLOT, raised, "import")
        if outcome.status == CONFLICT:
            raise BackendError(
                f"the mark {hwm} of {key} has another digest in {self.store_name}: two different "
                "signatures at one height/round/step; investigate before importing"
            )
        if outcome.status != OK:
            raise BackendError(outcome.detail)
        return outcome.record

    async def status(self, key: KeyId) -> dict[str, Record | str]:
        try:
            return {self.store_name: await self._read(key)}
        except Unavailable as exc:
            return {self.store_name: f"did not answer: {exc}"}


def _explain(reply: Reply, ballot: Ballot) -> str:
    """Why the rule refused (empty when it did not)."""
    held = reply.record
    if reply.status == STALE_EPOCH:
        return f"ballot {held.promised} superseded {ballot}"
    if reply.status == REGRESSION:
        return f"the mark is already at {held.hwm}"
    if reply.status == CONFLICT:
        return f"the mark {held.hwm} was accepted with another digest"
    if reply.status == register.REFUSED:
        return f"ballot {ballot} is not acceptable next to {held.promised}"
    return ""
