"""Keeping a connection to every configured CometBFT node.

One thread per node dials it, redials with a short backoff when the
connection drops or the node is not there yet (a node gives its signer
about three seconds at start), and answers its requests through the one
:class:`~highlander.privval.signer.Signer`. Every way a connection can go
wrong ends in one log line and a redial; nothing a node sends stops the
others from being served.
"""

from __future__ import annotations

import logging
import threading
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from highlander.privval import messages, schema
from highlander.privval.config import NodeAddress
from highlander.privval.secretconn import SecretConnectionError
from highlander.privval.signer import Signer
from highlander.privval.transport import Connection, dial

log = logging.getLogger("highlander.privval")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 1.0
# A node's listener serves one signer at a time. A signer that may not sign
# hangs up after refusing a signature and stays away this long, so that a
# promoted signer waiting in the node's accept queue gets the node.
YIELD_SECONDS = 3.0
YIELD_POLL = 0.05  # how soon a yielding signer notices it was promoted
SIGN_REQUESTS = ("sign_vote_request", "sign_proposal_request")
STOP_GRACE = 2.0  # seconds for links to finish the request they are answering


class NodeLink:
    """The signer's side of one node's privval listener."""

    def __init__(
        self,
        address: NodeAddress,
        signer: Signer,
        identity: Ed25519PrivateKey,
        timeout: float,
        stopping: threading.Event,
    ) -> None:
        self.address = address
        self.signer = signer
        self.identity = identity
        self.timeout = timeout
        self.stopping = stopping
        self._connection: Connection | None = None
        self._yielding = False
        self._thread = threading.Thread(target=self._run, name=f"privval {address}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def interrupt(self) -> None:
        """Unblock a read in progress (on stop)."""
        connection = self._connection
        if connection is not None:
            connection.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff, failing = BACKOFF_FIRST, False
        while not self.stopping.is_set():
            try:
                connection = dial(self.address, self.identity, self.timeout)
            except (OSError, ValueError) as exc:  # refused, unreachable, or a broken handshake
                if not failing:  # one line per outage, not one per attempt
                    log.warning("event=dial-failed node=%s error=%r (retrying)", self.address, str(exc))
                failing = True
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            failing, backoff = False, BACKOFF_FIRST
            if not self._yielding:
                log.info("event=connected node=%s", self.address)
            self._connection = connection
            yielded = False
            try:
                yielded = self._serve(connection)
            except Exception:  # a bug must cost one connection, never the node's link
                log.exception("event=internal-error node=%s (connection dropped)", self.address)
                self.stopping.wait(backoff)
            finally:
                self._connection = None
                connection.close()
            if yielded:
                self._stay_away()

    def _stay_away(self) -> None:
        """After yielding: :data:`YIELD_SECONDS`, or less once this signer may
        sign (promoted meanwhile: a failover must not wait for the yield)."""
        deadline = time.monotonic() + YIELD_SECONDS
        while time.monotonic() < deadline and not self.signer.may_sign():
            if self.stopping.wait(YIELD_POLL):
                return

    def _serve(self, connection: Connection) -> bool:
        """Answer requests until the connection ends; True when it was
        given up for a signer that may sign."""
        node = str(self.address)
        while not self.stopping.is_set():
            try:
                body = connection.read_body()
                request = messages.parse(schema.PrivvalMessage, body)
            except TimeoutError:
                log.warning("event=dropped node=%s reason=%r", node, f"no request for {self.timeout:g} s")
                return False
            except (messages.FrameError, SecretConnectionError) as exc:
                log.warning("event=dropped node=%s reason=%r", node, f"malformed message: {exc}")
                return False
            except OSError as exc:
                if not self.stopping.is_set():
                    log.warning("event=dropped node=%s reason=%r", node, str(exc) or type(exc).__name__)
                return False
            answer = self.signer.handle(request, node)
            try:
                connection.write_message(answer)
            except OSError as exc:
                log.warning("event=dropped node=%s reason=%r", node, f"cannot answer: {exc}")
                return False
            if request.WhichOneof("sum") in SIGN_REQUESTS:
                # Only a refusal hangs up: after a signature the connection stays
                # even if this signer was demoted meanwhile; its next request is refused.
                if not messages.is_refusal(answer) or self.signer.may_sign():
                    self._yielding = False
                    continue
                if not self._yielding:  # one line when it starts, not one per cycle
                    log.info(
                        "event=yielding node=%s reason=%r",
                        node,
                        "this signer may not sign; hanging up after each refusal so that one that may gets the node",
                    )
                self._yielding = True
                return True
        return False


class Service:
    """Every node's link, started and stopped together."""

    def __init__(self, signer: Signer, nodes: tuple[NodeAddress, ...], timeout: float) -> None:
        self.stopping = threading.Event()
        identity = Ed25519PrivateKey.generate()  # CometBFT 0.38 pins no signer identity
        self.links = [NodeLink(node, signer, identity, timeout, self.stopping) for node in nodes]

    def start(self) -> None:
        for link in self.links:
            link.start()

    def connected(self) -> list[str]:
        """The nodes with a connection right now."""
        return [str(link.address) for link in self.links if link.connected]

    def stop(self) -> None:
        self.stopping.set()
        for link in self.links:
            link.interrupt()

    def wait(self) -> None:
        """Block until :meth:`stop` (from a signal handler or another thread)."""
        while not self.stopping.wait(1.0):
            pass
        # A link still dialing (a node that does not answer its handshake)
        # would hold the exit for a whole timeout; it is a daemon thread and
        # signs nothing, so it is left behind after a short grace.
        deadline = time.monotonic() + STOP_GRACE
        for link in self.links:
            link.join(max(0.0, deadline - time.monotonic()))
