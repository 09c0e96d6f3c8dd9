"""The coordinator: runs promotions and advances over the three replicas.

It lives in every node's daemon and serves the local signer. Each request
goes to the local replica (in-process) and to both peers (over their mutual
TLS links) at the same time; the register's tallies decide as soon as a
majority answered, and a coordinator gives up on a peer after ``timeout``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import NamedTuple

from highlander.signstate import register
from highlander.signstate.config import Address
from highlander.signstate.register import (
    HRS,
    OK,
    REFUSED,
    Advance,
    KeyId,
    Promotion,
    Record,
    Repair,
    Reply,
)
from highlander.signstate.replica import Replica
from highlander.signstate.store import StoreError
from highlander.signstate.wire import (
    Request,
    WireError,
    parse_reply,
    read_frame,
    request_document,
    write_frame,
)

log = logging.getLogger("highlander.signstate")

PROMOTION_ATTEMPTS = 5


class PeerError(RuntimeError):
    """A peer did not answer usefully; the coordinator counts it as missing."""


class PeerLink:
    """One persistent mutual-TLS connection to one peer, one request at a time."""

    def __init__(self, name: str, address: Address, context: ssl.SSLContext, timeout: float) -> None:
        self.name = name
        self.address = address
        self.context = context
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: ssl.SSLSocket | None = None
        self._next_id = 0

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.address.host, self.address.port), timeout=self.timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self.context.wrap_socket(raw, server_hostname=self.name)
        except BaseException:
            raw.close()
            raise

    def call(self, request: Request) -> Reply:
        """One request and its reply. A connection kept from earlier may have
        died with a peer's restart: then the request is sent once more on a
        fresh one (advance and status are idempotent; a promise sent twice is
        at worst refused, and the promotion retries with a higher epoch)."""
        with self._lock:
            for attempt in (1, 2):
                reused = self._sock is not None
                self._next_id += 1
                request = request._replace(id=self._next_id)
                try:
                    if self._sock is None:
                        self._sock = self._connect()
                    self._sock.settimeout(self.timeout)
                    write_frame(self._sock, request_document(request))
                    return parse_reply(read_frame(self._sock), request.id)
                except (OSError, EOFError, WireError, ssl.SSLError) as exc:
                    self.close_locked()
                    if not (reused and attempt == 1 and not isinstance(exc, (WireError, TimeoutError))):
                        raise PeerError(f"{self.address}: {exc or type(exc).__name__}") from None
            raise AssertionError("unreachable")

    def close_locked(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


class Outcome(NamedTuple):
    """What the coordinator tells the signer."""

    status: str
    epoch: int = 0
    record: Record = register.EMPTY
    detail: str = ""


class Coordinator:
    def __init__(self, node: str, replica: Replica, links: dict[str, PeerLink], timeout: float) -> None:
        self.node = node
        self.replica = replica
        self.links = links
        self.timeout = timeout
        self.replicas = (node, *links)
        self._pool = ThreadPoolExecutor(max_workers=4 * len(self.replicas), thread_name_prefix="fan-out")
        # Per key, the highest epoch any replica reported: advances below it
        # are refused at once, so a superseded signer never signs again.
        self._newest: dict[KeyId, int] = {}
        self._guard = threading.Lock()

    def _call(self, replica: str, request: Request) -> Reply:
        if replica == self.node:
            return self.replica.handle(request)
        return self.links[replica].call(request)

    def _fan_out(self, request: Request, on_reply: Callable[[str, Reply], object]) -> dict[str, str]:
        """Send to every replica until ``on_reply`` decides (returns something
        other than None); what went wrong with the replicas that did not answer."""
        futures: dict[Future[Reply], str] = {
            self._pool.submit(self._call, name, request): name for name in self.replicas
        }
        problems: dict[str, str] = {}
        pending = set(futures)
        deadline = time.monotonic() + self.timeout
        while pending:
            done, pending = wait(pending, timeout=max(deadline - time.monotonic(), 0), return_when=FIRST_COMPLETED)
            if not done:
                problems.update((futures[f], f"no answer within {self.timeout:g} s") for f in pending)
                break
            decided = False
            for future in done:
                name = futures[future]
                try:
                    reply = future.result()
                except (PeerError, StoreError) as exc:
                    problems[name] = str(exc)
                    continue
                except Exception as exc:  # a replica that fails counts as missing, with the reason
                    log.exception("event=replica-error replica=%s", name)
                    problems[name] = f"internal error: {type(exc).__name__}: {exc}"
                    continue
                self._note_epoch(request.key, reply.record.promised_epoch)
                decided = on_reply(name, reply) is not None or decided
            if decided:
                break
        return problems

    def _note_epoch(self, key: KeyId, epoch: int) -> None:
        with self._guard:
            if epoch > self._newest.get(key, 0):
                self._newest[key] = epoch

    def newest_epoch(self, key: KeyId) -> int:
        with self._guard:
            return self._newest.get(key, 0)

    def advance(self, key: KeyId, epoch: int, hrs: HRS, digest: str) -> Outcome:
        """Ask a majority to accept ``hrs``/``digest`` before it is signed.

        Only an epoch that was promoted is accepted: a signer must not push
        the replicas to an epoch nobody promised, which would lock every
        later promotion out.
        """
        newest = self.newest_epoch(key)
        if epoch < newest:
            return Outcome(register.STALE_EPOCH, epoch, detail=f"epoch {newest} superseded {epoch}")
        if epoch > newest:
            newest = max(newest, self.replica.handle(Request(0, "status", key)).record.promised_epoch)
            if epoch > newest:
                return Outcome(register.REFUSED, epoch, detail=f"epoch {epoch} was never promoted; run promote first")
        return self._run_advance(Advance(key, epoch, hrs, digest, self.replicas), "advance")

    def _run_advance(self, tally: Advance, event: str) -> Outcome:
        request = Request(0, "advance", tally.key, tally.epoch, tally.hrs, tally.digest)
        problems = self._fan_out(request, tally.on_reply)
        status = tally.outcome or tally.give_up()
        detail = self._explain(tally.replies, problems, status)
        log.info("event=%s key=%s epoch=%d hrs=%s outcome=%s %s", event, tally.key, tally.epoch, tally.hrs, status, detail)
        if status == register.CONFLICT:
            log.error("event=conflict key=%s hrs=%s: another digest was accepted at this mark", tally.key, tally.hrs)
        return Outcome(status, tally.epoch, _best_record(tally.replies), detail)

    def promote(self, key: KeyId) -> Outcome:
        """Make this node the signer for ``key``: a new epoch promised by a
        majority, and their highest mark written back to a majority."""
        epoch = register.next_epoch(self.newest_epoch(key))
        for _ in range(PROMOTION_ATTEMPTS):
            promotion = Promotion(key, epoch, self.replicas)
            problems = self._fan_out(Request(0, "promise", key, epoch), promotion.on_reply)
            status = promotion.outcome or promotion.give_up()
            if status == REFUSED:
                epoch = register.next_epoch(max(epoch, promotion.highest_epoch))
                continue
            if status != OK:
                detail = self._explain(promotion.replies, problems, status)
                log.warning("event=promote key=%s epoch=%d outcome=%s %s", key, epoch, status, detail)
                return Outcome(status, epoch, detail=detail)
            best = promotion.best
            if best.hwm != register.ZERO:
                repair = self._run_advance(Repair(key, epoch, best.hwm, best.digest, self.replicas), "repair")
                if repair.status != OK:
                    return Outcome(repair.status, epoch, best, f"read repair failed: {repair.detail}")
            log.info("event=promote key=%s epoch=%d outcome=OK hwm=%s", key, epoch, best.hwm)
            return Outcome(OK, epoch, best._replace(promised_epoch=epoch))
        return Outcome(REFUSED, epoch, detail=f"epoch refused {PROMOTION_ATTEMPTS} times: another node is promoting")

    def status(self, key: KeyId) -> dict[str, Record | str]:
        """Every replica's record for ``key``, or why it did not answer."""
        results: dict[str, Record | str] = {}

        def collect(name: str, reply: Reply) -> None:
            results[name] = reply.record

        results.update(self._fan_out(Request(0, "status", key), collect))
        return results

    def _explain(self, replies: dict[str, Reply], problems: dict[str, str], status: str) -> str:
        """One line for logs and signers: who answered what, who did not and why."""
        answered = ", ".join(f"{name}={reply.status}" for name, reply in sorted(replies.items()))
        needed = register.majority(len(self.replicas))
        text = f"{len(replies)} of {len(self.replicas)} replicas answered, {needed} needed"
        text += f": {answered}" if answered else ""
        text += "".join(f"; {name}: {problem}" for name, problem in sorted(problems.items()))
        return f"no majority answered ({text})" if status == register.NO_QUORUM else f"({text})"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for link in self.links.values():
            link.close()


def _best_record(replies: dict[str, Reply]) -> Record:
    return max((r.record for r in replies.values()), key=lambda rec: rec.hwm, default=register.EMPTY)

