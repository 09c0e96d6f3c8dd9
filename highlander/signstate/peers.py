"""Links between sign-state nodes: frames over mutual TLS, many requests in flight.

A :class:`PeerLink` is this node's one connection to one peer. Every request
gets an id and a future, the frames queued in one turn of the event loop go
out in one write, and a reader resolves the futures as replies arrive, in
any order. Nothing waits on a peer: a frozen peer costs the requests that
needed it one timeout each, and never delays a majority formed by the
others. A peer that stops reading (its buffer fills) or cannot be reached
fails its requests at once, and is tried again after a short back-off.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time

from highlander.signstate.config import Address
from highlander.signstate.wire import HEADER, WireError, encode_frame, frame_length, loads, reply_id

log = logging.getLogger("highlander.signstate")

WRITE_HIGH_WATER = 1 << 20  # bytes queued to a peer that does not read: it is not answering
MAX_IN_FLIGHT = 8192
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0


class PeerError(RuntimeError):
    """A peer did not answer usefully; the coordinator counts it as missing."""


async def read_frame(reader: asyncio.StreamReader) -> object:
    """One frame's document (EOFError at a clean end, WireError when malformed)."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        raise EOFError("connection closed" if not exc.partial else "connection closed mid-frame") from None
    length = frame_length(header)
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise EOFError("connection closed mid-frame") from None
    return loads(body, "frame is not valid UTF-8 JSON")


def tune(writer: asyncio.StreamWriter) -> None:
    """No Nagle delay for small frames; keepalive so a vanished peer is noticed."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


class Outbox:
    """Frames queued during one turn of the loop, written together."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self._frames: list[bytes] = []
        self._scheduled = False

    def put(self, frame: bytes) -> None:
        self._frames.append(frame)
        if not self._scheduled and self.writer is not None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self.writer is not None and self._frames and not self.writer.is_closing():
            self.writer.write(b"".join(self._frames))
            self._frames = []

    def backlog(self) -> int:
        """Bytes written but not yet taken by the peer."""
        if self.writer is None or self.writer.transport is None:
            return 0
        return self.writer.transport.get_write_buffer_size()

    def clear(self) -> None:
        self._frames = []


class PeerLink:
    def __init__(self, name: str, address: Address, context: ssl.SSLContext, timeout: float) -> None:
        self.name = name
        self.address = address
        self.context = context
        self.timeout = timeout
        self._outbox = Outbox()
        self._pending: dict[int, tuple[asyncio.Future[object], bytes, bool]] = {}
        self._next_id = 0
        self._connecting: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        self._last_error = ""
        self.last_answer = 0.0  # monotonic time of the last reply
        self._unanswered_since: float | None = None  # first request sent after the last reply

    @property
    def reachable(self) -> bool:
        """Connected, and answering: nothing sent since its last answer has waited
        longer than the timeout (an idle link is reachable)."""
        waiting = self._unanswered_since
        stalled = waiting is not None and time.monotonic() - waiting > self.timeout
        return self._outbox.writer is not None and not stalled

    def send(self, document: dict[str, object]) -> asyncio.Future[object]:
        """Send a request (its ``id`` is set here); the future gets the reply document.

        Fails at once with PeerError when the peer is unreachable or does not
        read. Cancelling the future forgets the request.
        """
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if time.monotonic() < self._retry_at and self._outbox.writer is None:
            future.set_exception(PeerError(f"{self.address}: {self._last_error} (retrying shortly)"))
            return future
        if self._outbox.backlog() > WRITE_HIGH_WATER or len(self._pending) >= MAX_IN_FLIGHT:
            future.set_exception(PeerError(f"{self.address}: not reading its connection (frozen?)"))
            return future
        self._next_id += 1
        request_id = self._next_id
        frame = encode_frame({**document, "id": request_id})
        self._pending[request_id] = (future, frame, False)
        if self._unanswered_since is None:
            self._unanswered_since = time.monotonic()
        future.add_done_callback(lambda _: self._pending.pop(request_id, None))
        self._outbox.put(frame)
        if self._outbox.writer is None and self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())
        return future

    async def _connect(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.address.host,
                    self.address.port,
                    ssl=self.context,
                    server_hostname=self.name,
                    ssl_handshake_timeout=self.timeout,
                ),
                self.timeout,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            self._connecting = None
            self._last_error = f"cannot connect: {str(exc) or type(exc).__name__}"
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            self._outbox.clear()
            self._fail_all(self._last_error)
            return
        tune(writer)
        self._connecting = None
        self._backoff = BACKOFF_FIRST
        self._outbox.writer = writer
        self._reader_task = asyncio.create_task(self._read(reader, writer))
        self._outbox.flush()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason = "connection closed"
        try:
            while True:
                document = await read_frame(reader)
                entry = self._pending.get(reply_id(document) or 0)
                self.last_answer = time.monotonic()
                self._unanswered_since = None
                if entry is not None and not entry[0].done():
                    entry[0].set_result(document)
        except (EOFError, OSError, ssl.SSLError, WireError) as exc:
            reason = str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            reason = "link closed"
            raise
        finally:
            self._outbox.writer = None
            writer.close()
            self._lost(reason)

    def _lost(self, reason: str) -> None:
        """The connection died: requests that were on it go once more on a new one
        (advance, status, dump and reset are idempotent; a repeated promise is at
        worst refused, and the promotion retries above it); then they fail."""
        self._outbox.clear()  # what was queued for the dead connection is queued again below
        resent = 0
        for request_id, (future, frame, retried) in list(self._pending.items()):
            if future.done():
                continue
            if retried:
                future.set_exception(PeerError(f"{self.address}: {reason}"))
            else:
                self._pending[request_id] = (future, frame, True)
                self._outbox.put(frame)
                resent += 1
        if resent:
            log.info("event=reconnect peer=%s reason=%r resending=%d", self.name, reason, resent)
            if self._connecting is None:
                self._connecting = asyncio.create_task(self._connect())

    def _fail_all(self, reason: str) -> None:
        for future, _, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(PeerError(f"{self.address}: {reason}"))

    async def close(self) -> None:
        for task in (self._connecting, self._reader_task):
            if task is not None:
                task.cancel()
        self._fail_all("link closed")
        if self._outbox.writer is not None:
            self._outbox.writer.close()
