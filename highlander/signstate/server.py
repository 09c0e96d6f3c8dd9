"""``highlander signstate serve``: one node's replica and coordinator.

Two listeners:

- TCP with mutual TLS for the other two replicas' coordinators. A peer must
  present a certificate of the cluster CA naming one of the configured
  peers; anything else is dropped before a byte of it is read.
- A Unix socket for signers on this host (one JSON object per line):

  ``{"op": "promote", "chain_id": C, "key_id": K}``
      -> ``{"status": "OK", "epoch": E, "height": H, "round": R, "step": S, "digest": D}``
      (the mark to continue above), or a failure status with ``detail``.
  ``{"op": "advance", "chain_id": C, "key_id": K, "epoch": E, "height": H, "round": R, "step": S, "digest": D}``
      -> ``{"status": "OK"}``: sign now. ``STALE_EPOCH``: another node took
      over, stop signing for good. ``CONFLICT``: another digest was signed at
      this mark: refuse and alert. ``REGRESSION``: the mark is behind.
      ``NO_QUORUM``: a majority did not answer: do not sign.
  ``{"op": "status", "chain_id": C, "key_id": K}``
      -> ``{"status": "OK", "replicas": {NODE: {record} | {"error": text}}}``
  ``{"op": "ping"}`` -> ``{"status": "OK", "node": NODE}`` (the daemon answers)

  An ``"id"`` in a request is echoed in its answer. Errors answer
  ``{"status": "ERROR", "error": text}`` and change nothing.

Every read has a timeout, every message a size limit, and the number of
connections is bounded. SIGTERM closes the listeners and lets requests in
progress finish.
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import socketserver
import ssl
import threading

from highlander.signstate import pki
from highlander.signstate.config import NodeConfig
from highlander.signstate.coordinator import Coordinator, Outcome, PeerLink
from highlander.signstate.replica import Replica
from highlander.signstate.store import Store, StoreError
from highlander.signstate.wire import (
    MAX_LINE,
    WireError,
    decode_line,
    encode_line,
    error_document,
    integer,
    parse_key,
    parse_mark,
    parse_request,
    read_frame,
    record_document,
    reply_document,
    write_frame,
)

log = logging.getLogger("highlander.signstate")

HANDSHAKE_TIMEOUT = 5.0
IDLE_TIMEOUT = 300.0
MAX_CONNECTIONS = 64
SIGNER_OPS = ("promote", "advance", "status", "ping")


class _Bounded(socketserver.ThreadingMixIn):
    """Thread per connection, at most MAX_CONNECTIONS at once."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        if not self.slots.acquire(blocking=False):
            log.warning("event=refused reason=too-many-connections peer=%s", client_address)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)  # type: ignore[misc]

    def process_request_thread(self, request, client_address):  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self.slots.release()


class PeerServer(_Bounded, socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, node: SignStateNode) -> None:
        _Bounded.__init__(self)
        self.node = node
        self.address_family = socket.AF_INET6 if ":" in node.config.listen.host else socket.AF_INET
        socketserver.TCPServer.__init__(self, (node.config.listen.host, node.config.listen.port), PeerHandler)


class PeerHandler(socketserver.BaseRequestHandler):
    server: PeerServer

    def handle(self) -> None:
        node = self.server.node
        where = "%s:%s" % self.client_address[:2]
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = node.server_context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.warning("event=rejected peer=%s reason=%r", where, str(exc))
            return
        try:
            name = pki.peer_name(tls)
            if name not in node.config.peers:
                log.warning("event=rejected peer=%s name=%s reason=not-a-configured-peer", where, name)
                return
            tls.settimeout(IDLE_TIMEOUT)
            while self._serve_one(tls, name):
                pass
        finally:
            tls.close()

    def _serve_one(self, tls: ssl.SSLSocket, name: str) -> bool:
        """Answer one frame; False ends the connection."""
        try:
            document = read_frame(tls)
        except (EOFError, TimeoutError, OSError):
            return False
        except WireError as exc:  # the framing is lost: say why, then hang up
            log.warning("event=bad-frame peer=%s reason=%r", name, str(exc))
            write_frame(tls, error_document(None, str(exc)))
            return False
        request_id = document.get("id") if isinstance(document, dict) else None
        try:
            request = parse_request(document)
            reply = self.server.node.replica.handle(request)
        except (WireError, StoreError) as exc:
            log.warning("event=bad-request peer=%s reason=%r", name, str(exc))
            answer = error_document(request_id if isinstance(request_id, int) else None, str(exc))
        except Exception as exc:  # log it, answer it, keep serving
            log.exception("event=internal-error peer=%s", name)
            answer = error_document(None, f"internal error: {type(exc).__name__}")
        else:
            answer = reply_document(request.id, reply)
        write_frame(tls, answer)
        return True


class SignerServer(_Bounded, socketserver.UnixStreamServer):
    def __init__(self, node: SignStateNode) -> None:
        _Bounded.__init__(self)
        self.node = node
        path = node.config.socket
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a socket left by a killed daemon
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly open to all
        try:
            socketserver.UnixStreamServer.__init__(self, str(path), SignerHandler)
        finally:
            os.umask(old_umask)
        if node.config.socket_group:
            os.chown(path, -1, grp.getgrnam(node.config.socket_group).gr_gid)


class SignerHandler(socketserver.StreamRequestHandler):
    server: SignerServer

    def handle(self) -> None:
        self.connection.settimeout(IDLE_TIMEOUT)
        while True:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except (TimeoutError, OSError):
                return
            if not line:
                return
            if len(line) > MAX_LINE:
                self.wfile.write(encode_line({"status": "ERROR", "error": f"line longer than {MAX_LINE} bytes"}))
                return
            self.wfile.write(encode_line(self.server.node.answer_signer(line)))


class SignStateNode:
    """The replica, the coordinator and both listeners of one node."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        store = Store(config.state_dir)
        self._claim = store.claim()
        self.replica = Replica(store)
        client = pki.client_context(config.pki_dir, config.node)
        self.server_context = pki.server_context(config.pki_dir, config.node)
        links = {
            name: PeerLink(name, address, client, config.timeout) for name, address in sorted(config.peers.items())
        }
        self.coordinator = Coordinator(config.node, self.replica, links, config.timeout)
        self._servers: list[socketserver.BaseServer] = []
        self._stopped = threading.Event()

    def answer_signer(self, line: bytes) -> dict[str, object]:
        """One request of the local signer API, answered."""
        request_id: object = None
        try:
            document = decode_line(line)
            request_id = document.get("id")
            op = document.get("op")
            if op not in SIGNER_OPS:
                raise WireError(f"op must be one of {', '.join(SIGNER_OPS)}, got {op!r}")
            if op == "ping":
                return {"status": "OK", "node": self.config.node, **({"id": request_id} if request_id is not None else {})}
            key = parse_key(document)
            if op == "promote":
                answer = _outcome_document(self.coordinator.promote(key))
            elif op == "advance":
                epoch = integer(document, "epoch", 1)
                hrs, digest = parse_mark(document)
                answer = _outcome_document(self.coordinator.advance(key, epoch, hrs, digest))
            else:
                replicas = {
                    name: record_document(found) if not isinstance(found, str) else {"error": found}
                    for name, found in self.coordinator.status(key).items()
                }
                answer = {"status": "OK", "replicas": replicas}
        except (WireError, StoreError) as exc:
            answer = {"status": "ERROR", "error": str(exc)}
        except Exception as exc:  # the signer gets an answer, whatever broke
            log.exception("event=internal-error")
            answer = {"status": "ERROR", "error": f"internal error: {type(exc).__name__}: {exc}"}
        if request_id is not None:
            answer["id"] = request_id
        return answer

    def serve(self) -> None:
        """Serve until :meth:`stop`; the listeners are closed on the way out."""
        self._servers = [PeerServer(self), SignerServer(self)]
        threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}) for s in self._servers]
        for thread in threads:
            thread.start()
        log.info(
            "event=serving node=%s listen=%s socket=%s peers=%s",
            self.config.node, self.config.listen, self.config.socket, ",".join(self.config.peers),
        )  # fmt: skip
        try:
            self._stopped.wait()
        finally:
            for server in self._servers:
                server.shutdown()
                server.server_close()
            for thread in threads:
                thread.join()
            self.config.socket.unlink(missing_ok=True)
            self.coordinator.close()
            log.info("event=stopped node=%s", self.config.node)

    def stop(self) -> None:
        self._stopped.set()


def _outcome_document(outcome: Outcome) -> dict[str, object]:
    answer: dict[str, object] = {"status": outcome.status, "epoch": outcome.epoch}
    answer.update(record_document(outcome.record))
    answer.pop("promised_epoch")
    if outcome.detail:
        answer["detail"] = outcome.detail
    return answer

