"""One node's replica: the register's rules over its durable store.

It runs on the daemon's event loop. A request is decided in memory at once
(one thread applies every rule, so requests for a key are ordered without
locks) and its reply is released only when every change it depends on is on
disk. The changes that arrive while a sync runs are written together by the
next one: group commit, one sync for all keys instead of one per request.

Where the sync runs depends on the disk. A fast one (a sync within
:data:`INLINE_SYNC_LIMIT`) is synced on the loop itself, after the turn that
queued the change (so the frames to the peers go out first): handing a
sync of ~0.1 ms to a thread and back costs more CPU and latency than the
sync. A slower sync moves to a thread of its own, so that the loop keeps
reading peers and answering what is already durable; a fast one brings it
back.

A replica whose state is lost (see :mod:`highlander.signstate.store`) is
*recovering*: it answers every request with RECOVERING until :meth:`install`
gives it the state merged from the other replicas.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from highlander.signstate import register, store
from highlander.signstate.register import EMPTY, OK, RECOVERING, KeyId, Record, Reply
from highlander.signstate.store import Store, StoreError
from highlander.signstate.wire import DUMP_PAGE, Page, Request, WireError

log = logging.getLogger("highlander.signstate")

RETRY_FAILED_SYNC = 0.5  # seconds between attempts while the disk refuses writes
INLINE_SYNC_LIMIT = 0.001  # seconds: a sync this fast runs on the loop, a slower one in a thread


class Replica:
    def __init__(self, node: str, directory: Path) -> None:
        self.node = node
        self.directory = Path(directory)
        self.store: Store | None = None
        self.lost = ""  # why the replica is recovering; "" when it is healthy
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tickets = 0
        self._syncing = False
        self._inline = True  # the last sync was fast enough to run on the loop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync")

    def open(self) -> None:
        """Load the state; a lost one makes the replica recovering (config errors raise)."""
        candidate = Store(self.directory, self.node)
        try:
            candidate.open()
        except store.Lost as exc:
            self.lost = str(exc)
            log.error("event=recovering reason=%r", self.lost)
            return
        self.store = candidate

    # --- requests ---

    def handle(self, request: Request, sender: str) -> tuple[Reply | Page, int]:
        """Apply one request now: the reply and the change it must wait for.

        ``sender`` is the node the request comes from (the peer's TLS name, or
        this node for its own coordinator): it must own the request's ballot.
        """
        if self.store is None:
            return Reply(RECOVERING, EMPTY), 0
        if request.op == "dump":
            return self._page(request.key), self.store.seq
        key = request.key
        current = self.store.get(key)
        if request.op == "status":
            return Reply(OK, current), self.store.last_change.get(key, 0)
        problem = register.check_sender(request.ballot, sender)
        if problem:
            raise WireError(problem)
        if request.op == "promise":
            updated, reply = register.promise(current, request.ballot)
        elif request.op == "advance":
            updated, reply = register.advance(current, request.ballot, request.hrs, request.digest)
        else:
            updated, reply = register.reset(current, request.ballot, request.hrs)
            if updated != current:
                log.warning("event=reset key=%s from=%s to=%s by=%s", key, current.hwm, request.hrs, sender)
        if updated != current:
            return reply, self.store.put(key, updated)
        return reply, self.store.last_change.get(key, 0)

    def _page(self, after: KeyId) -> Page:
        assert self.store is not None
        keys = [k for k in self.store.keys() if k > after]
        return Page([(k, self.store.get(k)) for k in keys[:DUMP_PAGE]], len(keys) > DUMP_PAGE)

    def submit(self, request: Request, sender: str) -> asyncio.Future[Reply | Page]:
        """The reply, once what it depends on is durable (WireError: refused)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Reply | Page] = loop.create_future()
        try:
            reply, seq = self.handle(request, sender)
        except WireError as exc:
            answer.set_exception(exc)
            return answer
        durable = self.synced(seq)
        durable.add_done_callback(lambda _: answer.done() or answer.set_result(reply))
        return answer

    # --- group commit ---

    def synced(self, seq: int) -> asyncio.Future[None]:
        """Done when change ``seq`` is on disk."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.store is None or seq <= self.store.durable:
            future.set_result(None)
            return future
        self._tickets += 1
        heapq.heappush(self._waiters, (seq, self._tickets, future))
        self._sync()
        return future

    def _sync(self) -> None:
        if self._syncing or self.store is None or not self.store.pending():
            return
        self._syncing = True
        loop = asyncio.get_running_loop()
        if self._inline:
            loop.call_soon(self._after_sync, self._timed_flush)
        else:
            future = loop.run_in_executor(self._executor, self._timed_flush)
            future.add_done_callback(lambda done: self._after_sync(done.result))

    def _timed_flush(self) -> int:
        """Flush the store; note whether the next sync may run on the loop."""
        assert self.store is not None
        started = time.monotonic()
        try:
            return self.store.flush()
        finally:
            self._inline = time.monotonic() - started < INLINE_SYNC_LIMIT

    def _after_sync(self, flushed: Callable[[], int]) -> None:
        """Release what ``flushed()`` (the flush, or its result from the thread) made durable."""
        self._syncing = False
        try:
            durable = flushed()
        except StoreError as exc:
            log.error("event=write-failed reason=%r (retrying; nothing is answered meanwhile)", str(exc))
            asyncio.get_running_loop().call_later(RETRY_FAILED_SYNC, self._sync)
            return
        while self._waiters and self._waiters[0][0] <= durable:
            future = heapq.heappop(self._waiters)[2]
            if not future.done():
                future.set_result(None)
        self._sync()

    # --- rejoin ---

    async def install(self, records: Iterable[tuple[KeyId, Record]]) -> None:
        """Become healthy again with ``records`` (merged from the other replicas)."""
        loop = asyncio.get_running_loop()
        fresh = await loop.run_in_executor(self._executor, store.create, self.directory, self.node, list(records))
        self.store, self.lost = fresh, ""

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self.store is not None:
            if self.store.pending():
                try:
                    self.store.flush()
                except StoreError as exc:
                    log.error("event=write-failed reason=%r", str(exc))
            self.store.close()
