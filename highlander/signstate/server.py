"""``highlander signstate serve``: one node's replica and coordinator.

Two listeners, on one event loop:

- TCP with mutual TLS for the other two nodes' coordinators. A peer must
  present a certificate of the cluster CA naming one of the configured
  peers, and may act only at ballots it owns. A connection holds nothing
  before it has authenticated: handshakes in progress are capped, and when
  the cap is reached the oldest unauthenticated one is dropped, so a flood of
  connections that never authenticate cannot keep a peer out.
- A Unix socket for signers on this host (one JSON object per line):

  ``{"op": "promote", "chain_id": C, "key_id": K}``
      -> ``{"status": "OK", "epoch": E, "height": H, "round": R, "step": S, "digest": D}``
      (the mark to continue above), or a failure status with ``detail``.
  ``{"op": "advance", "chain_id": C, "key_id": K, "epoch": E, "height": H, "round": R, "step": S, "digest": D}``
      -> ``{"status": "OK"}``: sign now. ``STALE_EPOCH``: another node took
      over, stop signing for good. ``CONFLICT``: another digest was signed at
      this mark: refuse and alert. ``REGRESSION``: the mark is behind.
      ``NO_QUORUM``: a majority did not answer: do not sign. ``REFUSED``: the
      epoch was not promoted on this node.
  ``{"op": "status", "chain_id": C, "key_id": K}``
      -> ``{"status": "OK", "replicas": {NODE: {record} | {"error": text}}}``
  ``{"op": "ping"}`` -> ``{"status": "OK", "node": NODE, "recovering": reason or ""}``

  For root only (the connecting process's user is checked):
  ``{"op": "rejoin"}`` rebuilds a recovering replica from both others;
  ``{"op": "reset", "chain_id": C, "key_id": K, "height": H, "round": R, "step": S}``
  lowers a key's mark on a majority behind a fresh promotion.

  An ``"id"`` in a request is echoed in its answer. Errors answer
  ``{"status": "ERROR", "error": text}`` and change nothing.

Every read has a bound, every message a size limit. SIGTERM closes the
listeners, lets requests in progress finish and syncs what is queued.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import socket
import ssl
import stat
import struct
from collections import OrderedDict
from pathlib import Path

from highlander.signstate import pki
from highlander.signstate.config import NodeConfig
from highlander.signstate.coordinator import Coordinator, Outcome, RejoinError
from highlander.signstate.peers import Outbox, PeerLink, read_frame, tune
from highlander.signstate.register import HRS, MAX_ROUND, ZERO, check_mark
from highlander.signstate.replica import Replica
from highlander.signstate.store import StoreError
from highlander.signstate.wire import (
    MAX_LINE,
    Page,
    WireError,
    decode_line,
    encode_frame,
    encode_line,
    error_document,
    integer,
    page_document,
    parse_key,
    parse_mark,
    parse_request,
    record_document,
    reply_document,
)

log = logging.getLogger("highlander.signstate")

HANDSHAKE_TIMEOUT = 5.0
MAX_HANDSHAKES = 128  # unauthenticated connections at once; the oldest goes when another arrives
MAX_LINKS_PER_PEER = 4  # a peer keeps one; more are left over from its restarts
MAX_SIGNERS = 1024
BACKLOG = 512
SIGNER_OPS = ("promote", "advance", "status", "ping", "rejoin", "reset")
ROOT_OPS = ("rejoin", "reset")
PEER_BACKLOG_LIMIT = 4 << 20  # replies a peer does not read: it is gone


class SignStateNode:
    """The replica, the coordinator and both listeners of one node."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.replica = Replica(config.node, config.state_dir)
        self.replica.open()
        client = pki.client_context(config.pki_dir, config.node)
        self.server_context = pki.server_context(config.pki_dir, config.node)
        links = {name: PeerLink(name, address, client, config.timeout) for name, address in sorted(config.peers.items())}
        self.coordinator = Coordinator(config.node, self.replica, links, config.timeout)
        self._handshakes: OrderedDict[asyncio.StreamWriter, None] = OrderedDict()
        self._links: dict[str, list[asyncio.StreamWriter]] = {name: [] for name in config.peers}
        self._signers = 0
        self._stopped: asyncio.Event | None = None

    # --- peers ---

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
        links = self._links[name]
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
                frame = page_document(request.id, reply) if isinstance(reply, Page) else reply_document(request.id, reply)  # type: ignore[arg-type]
            except WireError as exc:
                log.warning("event=bad-request peer=%s reason=%r", name, str(exc))
                frame = error_document(request.id, str(exc))
            outbox.put(encode_frame(frame))

        self.replica.submit(request, name).add_done_callback(send)  # type: ignore[arg-type]

    # --- signers ---

    async def _signer_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._signers >= MAX_SIGNERS:
            log.warning("event=refused reason=too-many-signer-connections")
            writer.transport.abort()
            return
        self._signers += 1
        root = _peer_uid(writer) == 0
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    writer.write(encode_line({"status": "ERROR", "error": f"line longer than {MAX_LINE} bytes"}))
                    await writer.drain()
                    return
                writer.write(encode_line(await self.answer_signer(line, root)))
                await writer.drain()
        except (OSError, ConnectionError):
            return
        finally:
            self._signers -= 1
            writer.close()

    async def answer_signer(self, line: bytes, root: bool = False) -> dict[str, object]:
        """One request of the local signer API, answered."""
        request_id: object = None
        try:
            document = decode_line(line)
            request_id = document.get("id")
            op = document.get("op")
            if op not in SIGNER_OPS:
                raise WireError(f"op must be one of {', '.join(SIGNER_OPS)}, got {op!r}"[:200])
            if op in ROOT_OPS and not root:
                raise WireError(f"{op} is for root only")
            answer = await self._signer_op(str(op), document)
        except (WireError, StoreError, RejoinError) as exc:
            answer = {"status": "ERROR", "error": str(exc)}
        except Exception as exc:  # the signer gets an answer, whatever broke
            log.exception("event=internal-error")
            answer = {"status": "ERROR", "error": f"internal error: {type(exc).__name__}: {exc}"}
        if request_id is not None:
            answer["id"] = request_id
        return answer

    async def _signer_op(self, op: str, document: dict[str, object]) -> dict[str, object]:
        if op == "ping":
            return {"status": "OK", "node": self.config.node, "recovering": self.replica.lost}
        if op == "rejoin":
            return {"status": "OK", "detail": await self.coordinator.rejoin()}
        key = parse_key(document)
        if op == "promote":
            return _outcome_document(await self.coordinator.promote(key))
        if op == "advance":
            epoch = integer(document, "epoch", 1)
            hrs, digest = parse_mark(document)
            return _outcome_document(await self.coordinator.advance(key, epoch, hrs, digest))
        if op == "reset":
            hrs = HRS(integer(document, "height", 0), integer(document, "round", 0, MAX_ROUND),
                      integer(document, "step", 0, 3))  # fmt: skip
            problem = check_mark(hrs, "", floor=True)
            if hrs != ZERO and problem:
                raise WireError(f"reset: {problem} (or 0/0/0: nothing signed)")
            return _outcome_document(await self.coordinator.reset(key, hrs))
        replicas = {
            name: record_document(found) if not isinstance(found, str) else {"error": found}
            for name, found in (await self.coordinator.status(key)).items()
        }
        return {"status": "OK", "replicas": replicas}

    # --- running ---

    async def serve(self) -> None:
        """Serve until :meth:`stop`; the listeners are closed on the way out."""
        self._stopped = asyncio.Event()
        listen = self.config.listen
        peers = await asyncio.start_server(self._peer_connected, listen.host, listen.port, backlog=BACKLOG,
                                           reuse_address=True)  # fmt: skip
        signers = await self._signer_server()
        log.info("event=serving node=%s listen=%s socket=%s peers=%s%s", self.config.node, listen, self.config.socket,
                 ",".join(self.config.peers), f" recovering={self.replica.lost!r}" if self.replica.lost else "")  # fmt: skip
        try:
            await self._stopped.wait()
        finally:
            for server in (peers, signers):
                server.close()
            self.config.socket.unlink(missing_ok=True)
            await self.coordinator.close()
            self.replica.close()
            log.info("event=stopped node=%s", self.config.node)

    async def _signer_server(self) -> asyncio.AbstractServer:
        path = self.config.socket
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _clear_stale_socket(path)
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly open to all
        try:
            server = await asyncio.start_unix_server(self._signer_connected, str(path), limit=MAX_LINE + 1,
                                                     backlog=BACKLOG)  # fmt: skip
        finally:
            os.umask(old_umask)
        if self.config.socket_group:
            os.chown(path, -1, grp.getgrnam(self.config.socket_group).gr_gid)
        return server

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket a killed daemon left; refuse anything else at that path."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StoreError(f"socket {path} exists and is not a socket: choose another socket path or move the file away")
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody answers: a stale socket
        return
    finally:
        probe.close()
    raise StoreError(f"socket {path} is answered by a running process (another sign-state daemon?); stop it first")


def _peer_uid(writer: asyncio.StreamWriter) -> int:
    sock = writer.get_extra_info("socket")
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername") or ("?", "?")
    return "%s:%s" % peer[:2]


def _outcome_document(outcome: Outcome) -> dict[str, object]:
    answer: dict[str, object] = {"status": outcome.status, "epoch": outcome.ballot.counter}
    answer.update(record_document(outcome.record))
    answer.pop("ballot")
    if outcome.detail:
        answer["detail"] = outcome.detail
    return answer
