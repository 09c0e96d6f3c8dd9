"""What the sign-state process tests share: speaking to a daemon the plain way.

Not a test module. A peer or signer written in any language would open a
socket, wrap it in TLS with a node's certificate and exchange length-prefixed
JSON frames; these helpers do exactly that, without the daemon's own code.
"""

from __future__ import annotations

import json
import socket
import ssl

from highlander.signstate import pki
from highlander.signstate.localtrio import LocalTrio
from highlander.signstate.wire import HEADER

TIMEOUT = 10.0


def tcp(trio: LocalTrio, node: str = "node-a") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", trio.ports[node]), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tls(trio: LocalTrio, context: ssl.SSLContext, node: str = "node-a") -> ssl.SSLSocket:
    raw = tcp(trio, node)
    try:
        return context.wrap_socket(raw, server_hostname=node)
    except BaseException:
        raw.close()
        raise


def as_peer(trio: LocalTrio, sender: str = "node-b", node: str = "node-a") -> ssl.SSLSocket:
    """Mutual TLS to ``node`` with the cluster certificate of ``sender``."""
    return tls(trio, pki.client_context(trio.pki_dir, sender), node)


def frame(document: object) -> bytes:
    data = json.dumps(document, separators=(",", ":")).encode()
    return HEADER.pack(len(data)) + data


def read_frame(sock: socket.socket) -> object:
    """One frame from the daemon (EOFError when it hangs up)."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return data

    (length,) = HEADER.unpack(exactly(HEADER.size))
    return json.loads(exactly(length))


def exchange(sock: socket.socket, data: bytes) -> dict[str, object]:
    sock.sendall(data)
    answer = read_frame(sock)
    assert isinstance(answer, dict)
    return answer
