"""The built-in backend: three replicas, one on each node of the trio.

Each request of a signer goes to the local replica (in-process) and to both
peers (over their links) at once; the register's tallies decide as soon as a
majority answered, and a peer that has not answered within ``timeout``
counts as missing. This node's replica answers the other two nodes'
coordinators on a TCP listener with mutual TLS: a peer must present a
certificate of the cluster CA naming one of the configured peers, and may
act only at ballots it owns. A connection holds nothing before it has
authenticated: handshakes in progress are capped, and when the cap is
reached the oldest unauthenticated one is dropped, so a flood of
connections that never authenticate cannot keep a peer out.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable

from highlander.signstate import pki, register
from highlander.signstate.backends import Backend, BackendError, Outcome
from highlander.signstate.config import NodeConfig
from highlander.signstate.peers import Outbox, PeerError, PeerLink, read_frame, tune
from highlander.signstate.register import (
    HRS,
    NO_BALLOT,
    NO_QUORUM,
    OK,
    RECOVERING,
    REFUSED,
    Advance,
    Ballot,
    KeyId,
    Promotion,
    Record,
    Repair,
    Reply,
)
from highlander.signstate.replica import Replica
from highlander.signstate.wire import (
    Page,
    Request,
    WireError,
    encode_frame,
    error_document,
    page_document,
    parse_page,
    parse_reply,
    parse_request,
    reply_document,
    request_document,
)

log = logging.getLogger("highlander.signstate")

PROMOTION_ATTEMPTS = 5
HANDSHAKE_TIMEOUT = 5.0
MAX_HANDSHAKES = 128  # unauthenticated connections at once; the oldest goes when another arrives
MAX_LINKS_PER_PEER = 4  # a peer keeps one; more are left over from its restarts
BACKLOG = 512
PEER_BACKLOG_LIMIT = 4 << 20  # replies a peer does not read: it is gone


class TrioBackend(Backend):
    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config.node)
        self.config = config
        self.timeout = config.timeout
        self.replica = Replica(config.node, config.state_dir)
        self.replica.open()
        client = pki.client_context(config.pki_dir, config.node)
        self.server_context = pki.server_context(config.pki_dir, config.node)
        self.links = {
            name: PeerLink(name, address, client, config.timeout) for name, address in sorted(config.peers.items())
        }
        self.replicas = (config.node, *self.links)
        # Per key, the highest ballot any replica reported: advances below it
        # are refused at once, so a superseded signer never signs again.
        self._newest: dict[KeyId, Ballot] = {}
        self._handshakes: OrderedDict[asyncio.StreamWriter, None] = OrderedDict()
        self._peer_links: dict[str, list[asyncio.StreamWriter]] = {name: [] for name in config.peers}
        self._listener: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        listen = self.config.listen
        self._listener = await asyncio.start_server(
            self._peer_connected, listen.host, listen.port, backlog=BACKLOG, reuse_address=True
        )
        if self.replica.lost:
            log.error("event=recovering reason=%r", self.replica.lost)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for link in self.links.values():
            await link.close()
        self.replica.close()

    def recovering(self) -> str:
        return self.replica.lost

    def peers(self) -> list[tuple[str, bool, float]]:
        now = time.monotonic()
        return [
            (name, link.reachable, now - link.last_answer if link.last_answer else now)
            for name, link in self.links.items()
        ]

    # --- sending ---

    def _send(self, replica: str, request: Request) -> asyncio.Future[object]:
        """One replica's answer: a Reply or Page (local) or a reply document (peer)."""
        if replica == self.node:
            return self.replica.submit(request, self.node)  # type: ignore[return-value]
        return self.links[replica].send(request_document(request))

    async def _fan_out(self, request: Request, on_reply: Callable[[str, Reply], object]) -> dict[str, str]:
        """Send to every replica until ``on_reply`` decides (returns something other
        than None) or the time is up; what went wrong with those that did not answer."""
        decided = asyncio.get_running_loop().create_future()
        # The peers first: their frames leave in this turn of the loop, before
        # the local replica's sync (which may run on the loop) holds it.
        order = sorted(self.replicas, key=lambda name: name == self.node)
        futures = {name: self._send(name, request) for name in order}
        problems: dict[str, str] = {}
        heard: set[str] = set()

        def arrived(name: str, future: asyncio.Future[object]) -> None:
            if decided.done() or future.cancelled():
                return
            heard.add(name)
            try:
                answer = future.result()
                reply = answer if isinstance(answer, Reply) else parse_reply(answer)
            except (PeerError, WireError) as exc:
                problems[name] = str(exc)
            else:
                if reply.status == RECOVERING:
                    problems[name] = "recovering: its state is lost until it is rejoined"
                self._note(request.key, reply.record.promised)
                if on_reply(name, reply) is not None:
                    decided.set_result(None)
                    return
            if len(heard) == len(futures):
                decided.set_result(None)

        for name, future in futures.items():
            future.add_done_callback(lambda f, name=name: arrived(name, f))  # type: ignore[misc]
        try:
            await asyncio.wait_for(decided, self.timeout)
        except asyncio.TimeoutError:
            for name, future in futures.items():
                if not future.done():
                    problems[name] = f"no answer within {self.timeout:g} s"
        finally:
            for future in futures.values():
                future.cancel()  # a late reply is not waited for; the request itself went out
        return problems

    def _note(self, key: KeyId, ballot: Ballot) -> None:
        if ballot > self._newest.get(key, NO_BALLOT):
            self._newest[key] = ballot

    # --- the signer's operations ---

    def newest_known(self, key: KeyId) -> Ballot:
        return self._newest.get(key, NO_BALLOT)

    async def promised_here(self, key: KeyId) -> Ballot | None:
        """What the local replica promised (it survives a restart of this daemon)."""
        return self.replica.store.get(key).promised if self.replica.store is not None else None

    async def _advance(self, key: KeyId, ballot: Ballot, hrs: HRS, digest: str) -> Outcome:
        return await self._run_advance(Advance(key, ballot, hrs, digest, self.replicas), "advance")

    async def _run_advance(self, tally: Advance, event: str) -> Outcome:
        request = Request(0, "advance", tally.key, tally.ballot, tally.hrs, tally.digest)
        problems = await self._fan_out(request, tally.on_reply)
        status = tally.outcome or tally.give_up()
        if status == OK and event == "advance":  # the common case: thousands a second, nothing to explain
            log.debug("event=advance key=%s ballot=%s hrs=%s outcome=OK", tally.key, tally.ballot, tally.hrs)
            return Outcome(OK, tally.ballot, _best_record(tally.replies))
        detail = self._explain(tally.replies, problems, status)
        log.info(
            "event=%s key=%s ballot=%s hrs=%s outcome=%s %s", event, tally.key, tally.ballot, tally.hrs, status, detail
        )
        if status == register.CONFLICT:
            log.error("event=conflict key=%s hrs=%s: another digest was accepted at this mark", tally.key, tally.hrs)
        return Outcome(status, tally.ballot, _best_record(tally.replies), detail)

    async def _promote(self, key: KeyId) -> Outcome:
        """A new ballot of this node promised by a majority, and their highest
        mark written back to a majority."""
        seen = max(self._newest.get(key, NO_BALLOT), await self.promised_here(key) or NO_BALLOT)
        ballot = register.next_ballot(seen, self.node)
        for _ in range(PROMOTION_ATTEMPTS):
            promotion = Promotion(key, ballot, self.replicas)
            problems = await self._fan_out(Request(0, "promise", key, ballot), promotion.on_reply)
            status = promotion.outcome or promotion.give_up()
            if status == REFUSED:
                ballot = register.next_ballot(max(ballot, promotion.highest_ballot), self.node)
                continue
            if status != OK:
                detail = self._explain(promotion.replies, problems, status)
                log.warning("event=promote key=%s ballot=%s outcome=%s %s", key, ballot, status, detail)
                return Outcome(status, ballot, detail=detail)
            best = promotion.best
            if best.hwm != register.ZERO:
                repair = await self._run_advance(Repair(key, ballot, best.hwm, best.digest, self.replicas), "repair")
                if repair.status != OK:
                    return Outcome(repair.status, ballot, best, f"read repair failed: {repair.detail}")
            log.info("event=promote key=%s ballot=%s outcome=OK hwm=%s", key, ballot, best.hwm)
            return Outcome(OK, ballot, best._replace(promised=ballot))
        return Outcome(REFUSED, ballot, detail=f"ballot refused {PROMOTION_ATTEMPTS} times: another node is promoting")

    async def reset(self, key: KeyId, hrs: HRS) -> Outcome:
        """Lower (or set) ``key``'s mark to ``hrs`` on a majority, behind a fresh promotion.

        For a mark that a faulty signer pushed where nothing can follow. The
        promotion supersedes the key's signer, wherever it runs.
        """
        promoted = await self.promote(key)
        if promoted.status != OK:
            return promoted._replace(detail=f"not reset: the promotion failed: {promoted.detail}")
        replies: dict[str, Reply] = {}
        request = Request(0, "reset", key, promoted.ballot, hrs)
        problems = await self._fan_out(request, lambda name, reply: replies.setdefault(name, reply) and None)
        applied = sorted(name for name, reply in replies.items() if reply.status == OK)
        status = OK if len(applied) >= register.majority(len(self.replicas)) else NO_QUORUM
        detail = self._explain(replies, problems, status)
        log.warning("event=reset key=%s ballot=%s hrs=%s outcome=%s %s", key, promoted.ballot, hrs, status, detail)
        missing = [name for name in self.replicas if name not in applied]
        if status == OK and missing:
            detail += f"; not applied on {', '.join(missing)}: run the reset again when it is back"
        return Outcome(status, promoted.ballot, Record(promoted.ballot, hrs, ""), detail)

    async def status(self, key: KeyId) -> dict[str, Record | str]:
        """Every replica's record for ``key``, or why it did not answer."""
        results: dict[str, Record | str] = {}

        def collect(name: str, reply: Reply) -> None:
            results[name] = reply.record if reply.status != RECOVERING else "recovering"

        problems = await self._fan_out(Request(0, "status", key), collect)
        results.update((name, problem) for name, problem in problems.items() if name not in results)
        return results

    # --- rejoin ---

    async def rejoin(self) -> str:
        """Rebuild a recovering local replica from both other replicas.

        Safe because every answer this replica gave before its loss that
        counted lives on a majority, and every majority of three that held it
        also holds one of the other two: their merged records are at least
        what it lost. Both must answer (one alone may be the one that lagged).
        """
        if not self.replica.lost:
            return f"the replica of {self.node} is healthy; nothing to rejoin"
        merged: dict[KeyId, list[Record]] = {}
        for name, link in self.links.items():
            try:
                for key, record in await self._dump(link):
                    merged.setdefault(key, []).append(record)
            except (PeerError, WireError, asyncio.TimeoutError) as exc:
                raise BackendError(
                    f"cannot rejoin: {name} did not give its records ({str(exc) or type(exc).__name__}); "
                    "both other replicas must be up and healthy"
                ) from None
        records = [(key, register.merge(found)) for key, found in merged.items()]
        await self.replica.install(records)
        log.warning("event=rejoined node=%s keys=%d from=%s", self.node, len(records), ",".join(self.links))
        return f"rejoined {self.node} from {', '.join(self.links)}: {len(records)} key(s)"

    async def _dump(self, link: PeerLink) -> list[tuple[KeyId, Record]]:
        records: list[tuple[KeyId, Record]] = []
        after = KeyId("", "")
        while True:
            answer = await asyncio.wait_for(link.send(request_document(Request(0, "dump", after))), self.timeout)
            if isinstance(answer, dict) and answer.get("status") == RECOVERING:
                raise WireError("it is recovering too (a new cluster needs 'highlander signstate init' on each node)")
            page: Page = parse_page(answer)
            records.extend(page.records)
            if not page.more or not page.records:
                return records
            after = page.records[-1][0]

    # --- reporting ---

    def _explain(self, replies: dict[str, Reply], problems: dict[str, str], status: str) -> str:
        """One line for logs and signers: who answered what, who did not and why."""
        answered = ", ".join(f"{name}={reply.status}" for name, reply in sorted(replies.items()))
        needed = register.majority(len(self.replicas))
        text = f"{len(replies)} of {len(self.replicas)} replicas answered, {needed} needed"
        text += f": {answered}" if answered else ""
        text += "".join(f"; {name}: {problem}" for name, problem in sorted(problems.items()))
        return f"no majority answered ({text})" if status == NO_QUORUM else f"({text})"

    # --- the replica's listener for the peers ---

    async def _peer_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        where = "%s:%s" % writer.get_extra_info("peername")[:2]
        self._handshakes[writer] = None
        if len(self._handshakes) > MAX_HANDSHAKES:
            oldest = next(iter(self._handshakes))
            log.warning("event=dropped reason=too-many-handshakes oldest=%s", _peer(oldest))
            self._handshakes.pop(oldest)
            oldest.transport.abort()
        try:
            await writer.start_tls(self.server_context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
            name = pki.peer_name(writer.get_extra_info("ssl_object"))
        except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError, pki.PKIError) as exc:
            log.warning("event=rejected peer=%s reason=%r", where, str(exc) or type(exc).__name__)
            writer.transport.abort()
            return
        finally:
            self._handshakes.pop(writer, None)
        if name not in self.config.peers:
            log.warning("event=rejected peer=%s name=%s reason=not-a-configured-peer", where, name)
            writer.transport.abort()
            return
        tune(writer)
        links = self._peer_links[name]
        links.append(writer)
        if len(links) > MAX_LINKS_PER_PEER:
            links.pop(0).transport.abort()
        try:
            await self._serve_peer(reader, writer, name)
        finally:
            if writer in links:
                links.remove(writer)
            writer.transport.abort()

    async def _serve_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        """Read frames and answer each once it is durable, in whatever order that happens
        (the answers that are ready in one turn of the loop go out in one write)."""
        outbox = Outbox()
        outbox.writer = writer
        while True:
            try:
                document = await read_frame(reader)
            except (EOFError, OSError, ssl.SSLError):
                return
            except WireError as exc:  # the framing is lost: say why, then hang up
                log.warning("event=bad-frame peer=%s reason=%r", name, str(exc))
                writer.write(encode_frame(error_document(None, str(exc))))
                await writer.drain()
                return
            self._answer_peer(outbox, name, document)
            if writer.transport.get_write_buffer_size() > PEER_BACKLOG_LIMIT:
                log.warning("event=dropped peer=%s reason=does-not-read-its-replies", name)
                return

    def _answer_peer(self, outbox: Outbox, name: str, document: object) -> None:
        request_id = document.get("id") if isinstance(document, dict) else None
        request_id = request_id if type(request_id) is int else None
        try:
            request = parse_request(document)
        except WireError as exc:
            log.warning("event=bad-request peer=%s reason=%r", name, str(exc))
            outbox.put(encode_frame(error_document(request_id, str(exc))))
            return

        def send(answer: asyncio.Future[object]) -> None:
            try:
                reply = answer.result()
                frame = (
                    page_document(request.id, reply) if isinstance(reply, Page) else reply_document(request.id, reply)
                )  # type: ignore[arg-type]
            except WireError as exc:
                log.warning("event=bad-request peer=%s reason=%r", name, str(exc))
                frame = error_document(request.id, str(exc))
            outbox.put(encode_frame(frame))

        self.replica.submit(request, name).add_done_callback(send)  # type: ignore[arg-type]


def _best_record(replies: dict[str, Reply]) -> Record:
    return max((r.record for r in replies.values()), key=lambda rec: rec.hwm, default=register.EMPTY)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername") or ("?", "?")
    return "%s:%s" % peer[:2]
