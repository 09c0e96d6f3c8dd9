"""Connections to a CometBFT node's privval listener: TCP with
SecretConnection, or a plain Unix socket.

The signer dials; the node listens. Each connection carries
length-delimited ``privval.Message``s, one request and one response at a
time.
"""

from __future__ import annotations

import socket

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from google.protobuf.message import Message

from highlander.privval import messages, secretconn
from highlander.privval.config import NodeAddress
from highlander.privval.secretconn import FrameCipher, SecretConnectionError

HANDSHAKE_LIMIT = 1024  # an ephemeral key or an AuthSigMessage is ~100 bytes


class Connection:
    """Delimited messages over a socket, sealed when ``ciphers`` are given."""

    def __init__(
        self, sock: socket.socket, ciphers: tuple[FrameCipher, FrameCipher] | None = None, remote_identity: bytes = b""
    ) -> None:
        self.sock = sock
        self._ciphers = ciphers  # (receive, send)
        self._buffer = bytearray()
        self.remote_identity = remote_identity

    def _recv_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the node closed the connection")
            data += chunk
        return bytes(data)

    def read_exact(self, n: int) -> bytes:
        if self._ciphers is None:
            return self._recv_exact(n)
        while len(self._buffer) < n:
            self._buffer += self._ciphers[0].open(self._recv_exact(secretconn.SEALED_SIZE))
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def write(self, data: bytes) -> None:
        self.sock.sendall(data if self._ciphers is None else self._ciphers[1].seal_all(data))

    def read_body(self, limit: int = messages.MAX_MESSAGE) -> bytes:
        return messages.read_body(self.read_exact, limit)

    def write_message(self, message: Message) -> None:
        self.write(messages.encode(message))

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def secure(sock: socket.socket, identity: Ed25519PrivateKey) -> Connection:
    """Run the SecretConnection handshake on a connected socket (either side)."""
    plain = Connection(sock)
    ephemeral = X25519PrivateKey.generate()
    plain.write(secretconn.ephemeral_message(secretconn.raw_public(ephemeral)))
    try:
        remote = secretconn.parse_ephemeral(plain.read_body(HANDSHAKE_LIMIT))
    except messages.FrameError as exc:
        raise SecretConnectionError(f"handshake: {exc}") from None
    session = secretconn.exchange(ephemeral, remote)
    sealed = Connection(sock, (FrameCipher(session.keys.receive), FrameCipher(session.keys.send)))
    sealed.write(secretconn.auth_message(identity, session.challenge))
    try:
        body = sealed.read_body(HANDSHAKE_LIMIT)
    except messages.FrameError as exc:
        raise SecretConnectionError(f"handshake: {exc}") from None
    sealed.remote_identity = secretconn.verify_auth(body, session.challenge)
    return sealed


def dial(address: NodeAddress, identity: Ed25519PrivateKey, timeout: float) -> Connection:
    """Connect to a node (and, over TCP, authenticate) within ``timeout`` seconds per step."""
    if address.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.path)
        except OSError:
            sock.close()
            raise
        return Connection(sock)
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return secure(sock, identity)
    except BaseException:
        sock.close()
        raise
