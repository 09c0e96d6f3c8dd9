"""The Python client of the local signer API (see :mod:`highlander.signstate.server`).

A signer promotes once when it becomes active, then calls :meth:`advance`
before every signature and signs only on ``OK``::

    with SignerClient("/run/highlander/signstate.sock") as client:
        session = client.promote(key)            # raises Refused without a majority
        ...
        client.advance(key, session.epoch, hrs, digest)   # raises before a bad signature
        sign(...)

Every failure is an exception whose class says what the signer must do:
:class:`Superseded` stop for good, :class:`Conflict` refuse and alert,
:class:`Refused` do not sign now (no majority, regression, bad request).
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NamedTuple

from highlander.signstate.register import HRS, MAX_COUNTER, OK, KeyId, Record
from highlander.signstate.wire import MAX_LINE, WireError, encode_line, integer, loads, parse_hwm, parse_record

DEFAULT_SOCKET = Path("/run/highlander/signstate.sock")


class Refused(RuntimeError):
    """The register did not allow the operation; ``status`` and ``detail`` say why."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if detail else status)
        self.status = status
        self.detail = detail


class Superseded(Refused):
    """STALE_EPOCH: another node was promoted. Stop signing, for good."""


class Conflict(Refused):
    """CONFLICT: a different digest was already accepted at this mark."""


class Session(NamedTuple):
    """What promote returns: the epoch to advance with and the mark to continue above."""

    epoch: int
    hwm: HRS
    digest: str


def _raise_for(answer: dict[str, object]) -> None:
    status = str(answer.get("status"))
    if status == OK:
        return
    detail = str(answer.get("detail") or answer.get("error") or "")
    error = {"STALE_EPOCH": Superseded, "CONFLICT": Conflict}.get(status, Refused)
    raise error(status, detail)


class SignerClient:
    """One connection to the local sign-state daemon."""

    def __init__(self, path: Path | str = DEFAULT_SOCKET, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None
        self._connect()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise ConnectionError(
                f"cannot reach the sign-state daemon at {self.path}: {exc.strerror or exc} "
                "(is 'highlander signstate serve' running?)"
            ) from None
        self._sock, self._reader = sock, sock.makefile("rb")

    def call(self, document: dict[str, object]) -> dict[str, object]:
        """Send one request, return the answer as it came. After a failure
        the connection is dropped; the next call opens a new one."""
        if self._sock is None:
            self._connect()
        assert self._sock is not None and self._reader is not None
        try:
            self._sock.sendall(encode_line(document))
            line = self._reader.readline(MAX_LINE + 1)
        except OSError as exc:
            self.close()
            raise ConnectionError(f"the sign-state daemon at {self.path} did not answer: {exc}") from None
        if not line:
            self.close()
            raise ConnectionError(f"the sign-state daemon at {self.path} closed the connection")
        answer = loads(line)
        if not isinstance(answer, dict):
            raise WireError("the daemon's answer is not a JSON object")
        return answer

    def promote(self, key: KeyId) -> Session:
        answer = self.call({"op": "promote", "chain_id": key.chain_id, "key_id": key.key_id})
        _raise_for(answer)
        hwm, digest = parse_hwm(answer)
        return Session(integer(answer, "epoch", 1, MAX_COUNTER), hwm, digest)

    def advance(self, key: KeyId, epoch: int, hrs: HRS, digest: str) -> None:
        h, r, s = hrs
        answer = self.call(
            {
                "op": "advance",
                "chain_id": key.chain_id,
                "key_id": key.key_id,
                "epoch": epoch,
                "height": h,
                "round": r,
                "step": s,
                "digest": digest,
            }
        )
        _raise_for(answer)

    def ping(self) -> tuple[str, str]:
        """The name of the node whose daemon answers, and why its replica is
        recovering ("" when it is healthy)."""
        answer = self.call({"op": "ping"})
        _raise_for(answer)
        return str(answer.get("node")), str(answer.get("recovering") or "")

    def rejoin(self) -> str:
        """Rebuild this node's recovering replica from the other two (root only)."""
        answer = self.call({"op": "rejoin"})
        _raise_for(answer)
        return str(answer.get("detail"))

    def reset(self, key: KeyId, hrs: HRS) -> str:
        """Set ``key``'s mark to ``hrs`` on a majority, even below it (root only)."""
        h, r, s = hrs
        answer = self.call(
            {"op": "reset", "chain_id": key.chain_id, "key_id": key.key_id, "height": h, "round": r, "step": s}
        )
        _raise_for(answer)
        return str(answer.get("detail") or "")

    def status(self, key: KeyId) -> dict[str, Record | str]:
        """Each replica's record, or why it did not answer."""
        answer = self.call({"op": "status", "chain_id": key.chain_id, "key_id": key.key_id})
        _raise_for(answer)
        replicas = answer.get("replicas")
        if not isinstance(replicas, dict):
            raise WireError("status answer without replicas")
        return {
            str(name): str(found["error"]) if "error" in found else parse_record(found)
            for name, found in replicas.items()
        }

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def __enter__(self) -> SignerClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
