"""``highlander signstate serve``: one node's part of the register and its signer API.

The register is a backend (:mod:`highlander.signstate.backends`; the
built-in trio also listens for its peers). Signers on this host use a Unix
socket, one JSON object per line, on one event loop:

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
import signal
import socket
import stat
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

from highlander.signstate.backends import Backend, BackendError, Outcome
from highlander.signstate.config import NodeConfig
from highlander.signstate.register import HRS, MAX_ROUND, OK, ZERO, KeyId, check_mark
from highlander.signstate.store import StoreError
from highlander.signstate.wire import (
    MAX_LINE,
    WireError,
    decode_line,
    encode_line,
    integer,
    parse_key,
    parse_mark,
    record_document,
)

if TYPE_CHECKING:
    from highlander.adapters.metrics import SignstateMetrics

log = logging.getLogger("highlander.signstate")

MAX_SIGNERS = 1024
BACKLOG = 512
SIGNER_OPS = ("promote", "advance", "status", "ping", "rejoin", "reset")
ROOT_OPS = ("rejoin", "reset")


class SignStateNode:
    """One node's backend and the signer API in front of it."""

    def __init__(self, config: NodeConfig, backend: Backend, metrics: SignstateMetrics | None = None) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        self.marks: dict[KeyId, tuple[int, int]] = {}  # per key, the ballot counter and height last answered OK
        self._signers = 0
        self._stopped: asyncio.Event | None = None

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
        except (WireError, StoreError, BackendError) as exc:
            answer = {"status": "ERROR", "error": str(exc)}
        except Exception as exc:  # the signer gets an answer, whatever broke
            log.exception("event=internal-error")
            answer = {"status": "ERROR", "error": f"internal error: {type(exc).__name__}: {exc}"}
        if request_id is not None:
            answer["id"] = request_id
        return answer

    async def _signer_op(self, op: str, document: dict[str, object]) -> dict[str, object]:
        if op == "ping":
            return {"status": "OK", "node": self.config.node, "recovering": self.backend.recovering()}
        if op == "rejoin":
            return {"status": "OK", "detail": await self.backend.rejoin()}
        key = parse_key(document)
        if op == "promote":
            return self._answered(op, key, time.perf_counter(), await self.backend.promote(key))
        if op == "advance":
            epoch = integer(document, "epoch", 1)
            hrs, digest = parse_mark(document)
            started = time.perf_counter()
            return self._answered(op, key, started, await self.backend.advance(key, epoch, hrs, digest))
        if op == "reset":
            hrs = HRS(
                integer(document, "height", 0),
                integer(document, "round", 0, MAX_ROUND),
                integer(document, "step", 0, 3),
            )
            problem = check_mark(hrs, "", floor=True)
            if hrs != ZERO and problem:
                raise WireError(f"reset: {problem} (or 0/0/0: nothing signed)")
            return self._answered(op, key, time.perf_counter(), await self.backend.reset(key, hrs))
        replicas = {
            name: record_document(found) if not isinstance(found, str) else {"error": found}
            for name, found in (await self.backend.status(key)).items()
        }
        return {"status": "OK", "replicas": replicas}

    def _answered(self, op: str, key: KeyId, started: float, outcome: Outcome) -> dict[str, object]:
        """The answer to a signer, counted in the metrics when they are on."""
        if self.metrics is not None:
            self.metrics.answered(op, outcome.status, started)
            if outcome.status == OK:
                self.marks[key] = (outcome.ballot.counter, outcome.record.hwm.height)
        return _outcome_document(outcome)

    def scraped(self):  # type: ignore[no-untyped-def]
        """This node's view of the register, as Prometheus reads it at each scrape."""
        yield (
            "highlander_signstate_recovering",
            "1 while this node's part of the register lost its state and waits to be rejoined.",
            [],
            [([], float(bool(self.backend.recovering())))],
        )
        marks = list(self.marks.items())
        yield (
            "highlander_signstate_ballot",
            "The ballot counter (epoch) of the last OK answer, per key.",
            ["chain_id", "key_id"],
            [([k.chain_id, k.key_id], float(b)) for k, (b, _) in marks],
        )
        yield (
            "highlander_signstate_hwm_height",
            "The height of the last mark answered OK, per key.",
            ["chain_id", "key_id"],
            [([k.chain_id, k.key_id], float(h)) for k, (_, h) in marks],
        )
        peers = self.backend.peers()
        yield (
            "highlander_signstate_peer_up",
            "1 when this node reaches the peer's replica.",
            ["peer"],
            [([name], float(up)) for name, up, _ in peers],
        )
        yield (
            "highlander_signstate_peer_last_answer_seconds",
            "Seconds since the peer's replica last answered.",
            ["peer"],
            [([name], age) for name, _, age in peers],
        )

    # --- running ---

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT: a daemon's main loop."""

        async def serve_until_signalled() -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop)
            await self.serve()

        asyncio.run(serve_until_signalled())

    async def serve(self) -> None:
        """Serve until :meth:`stop`; everything is closed on the way out."""
        self._stopped = asyncio.Event()
        await self.backend.start()
        signers = await self._signer_server()
        recovering = self.backend.recovering()
        log.info(
            "event=serving node=%s backend=%s socket=%s%s",
            self.config.node,
            type(self.backend).__name__,
            self.config.socket,
            f" recovering={recovering!r}" if recovering else "",
        )
        try:
            await self._stopped.wait()
        finally:
            signers.close()
            self.config.socket.unlink(missing_ok=True)
            await self.backend.close()
            log.info("event=stopped node=%s", self.config.node)

    async def _signer_server(self) -> asyncio.AbstractServer:
        path = self.config.socket
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _clear_stale_socket(path)
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly open to all
        try:
            server = await asyncio.start_unix_server(
                self._signer_connected, str(path), limit=MAX_LINE + 1, backlog=BACKLOG
            )
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


def _outcome_document(outcome: Outcome) -> dict[str, object]:
    answer: dict[str, object] = {"status": outcome.status, "epoch": outcome.ballot.counter}
    answer.update(record_document(outcome.record))
    answer.pop("ballot")
    if outcome.detail:
        answer["detail"] = outcome.detail
    return answer
