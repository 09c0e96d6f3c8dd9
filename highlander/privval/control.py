"""The running signer's control socket: promote, demote, status.

Pacemaker's promotable agent (or an operator) drives a running
``highlander privval`` through a Unix socket only its owner may use (mode
0600), one JSON object per line each way:

``{"op": "promote"}``
    -> ``{"status": "OK", "epoch": E, "mark": "H/R/S"}``: signing from now on,
    strictly above the register's mark; or ``{"status": "REFUSED", "detail": ...}``
    (no majority, the register unreachable): not signing.
``{"op": "demote"}``
    -> ``{"status": "OK"}`` once no signature is being made; none is made after.
``{"op": "status"}``
    -> ``{"status": "OK", "promoted": bool, "superseded": bool, "last": "H/R/S",
    "connected": [NODE, ...]}``

Anything else answers ``{"status": "ERROR", "error": ...}`` and changes nothing.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path

from highlander.privval.signer import Signer
from highlander.signstate.client import Refused

MAX_LINE = 1024


def answer(signer: Signer, connected: Callable[[], list[str]], line: bytes) -> dict[str, object]:
    """The control answer to one request line."""
    try:
        request = json.loads(line)
        op = request["op"]
    except (ValueError, TypeError, KeyError):
        return {"status": "ERROR", "error": 'expected a JSON object with "op": promote, demote or status'}
    if op == "promote":
        try:
            session = signer.promote()
        except (Refused, ConnectionError) as exc:
            return {"status": "REFUSED", "detail": str(exc)}
        return {"status": "OK", "epoch": session.epoch, "mark": str(session.hwm)}
    if op == "demote":
        signer.demote()
        return {"status": "OK"}
    if op == "status":
        return {
            "status": "OK",
            "promoted": signer.session is not None,
            "superseded": signer.superseded,
            "last": str(signer.last.hrs),
            "connected": connected(),
        }
    return {"status": "ERROR", "error": f"unknown op {op!r}: use promote, demote or status"}


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self) -> None:
        server: ControlServer = self.server  # type: ignore[assignment]
        for line in iter(lambda: self.rfile.readline(MAX_LINE + 1), b""):
            if len(line) > MAX_LINE:
                reply: dict[str, object] = {"status": "ERROR", "error": f"request longer than {MAX_LINE} bytes"}
            else:
                reply = answer(server.signer, server.connected, line)
            self.wfile.write(json.dumps(reply).encode() + b"\n")


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, signer: Signer, connected: Callable[[], list[str]]) -> None:
        self.signer, self.connected = signer, connected
        path = Path(path)
        if path.is_socket():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # left by a process that died
            else:
                raise OSError(f"{path} is in use by a running signer; stop it first")
            finally:
                probe.close()
        previous = os.umask(0o177)  # the socket is born 0600
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(previous)
        self._thread = threading.Thread(target=self.serve_forever, name="privval control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        Path(self.server_address).unlink(missing_ok=True)  # type: ignore[arg-type]


def request(path: Path, op: str, timeout: float = 30.0) -> dict[str, object]:
    """Send one control request to the signer at ``path`` and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ConnectionError(f"no signer answers at {path}: {exc.strerror or exc}") from None
        sock.sendall(json.dumps({"op": op}).encode() + b"\n")
        with sock.makefile("rb") as reader:
            line = reader.readline(64 * 1024)
    if not line:
        raise ConnectionError(f"the signer at {path} closed the control connection")
    reply: dict[str, object] = json.loads(line)
    return reply
