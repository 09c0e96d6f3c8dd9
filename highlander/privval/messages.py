"""Framing and building privval messages, without I/O.

Every message on a privval connection (and every sign-bytes blob) is a
protobuf message prefixed with its length as an unsigned varint. Readers
here are given a ``read_exact`` function so the same code parses a socket,
a SecretConnection or a byte string.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import DecodeError, Message

from highlander.privval import schema

# The node reads at most 10 KiB per message; a request whose answer would not
# fit that is useless, and anything much larger is hostile.
MAX_MESSAGE = 16 * 1024
ERROR_CODE = 0  # CometBFT's own signer answers every refusal with code 0 (ERRORS_UNKNOWN)


class FrameError(ValueError):
    """Bytes that are not a well-formed privval message; the text says why."""


def uvarint(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"a uvarint cannot hold {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(read_exact: Callable[[int], bytes]) -> int:
    value = 0
    for index in range(10):
        byte = read_exact(1)[0]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if value >= 1 << 64:
                break
            return value
    raise FrameError("length prefix is not a valid varint")


def encode(message: Message) -> bytes:
    """The length-delimited encoding CometBFT writes (nullable=false fields present)."""
    body = schema.fill_non_nullable(message).SerializeToString()
    return uvarint(len(body)) + body


def read_body(read_exact: Callable[[int], bytes], limit: int = MAX_MESSAGE) -> bytes:
    length = read_uvarint(read_exact)
    if length > limit:
        raise FrameError(f"message of {length} bytes is larger than the {limit} bytes allowed")
    return read_exact(length) if length else b""


def split(data: bytes, limit: int = MAX_MESSAGE) -> bytes:
    """The body of one delimited message that must fill ``data`` exactly."""
    position = 0

    def take(n: int) -> bytes:
        nonlocal position
        if position + n > len(data):
            raise FrameError("delimited message is cut short")
        position += n
        return data[position - n : position]

    body = read_body(take, limit)
    if position != len(data):
        raise FrameError(f"{len(data) - position} bytes after the delimited message")
    return body


def parse(kind: type[Message], body: bytes) -> Message:
    message = kind()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise FrameError(f"not a valid {message.DESCRIPTOR.name}: {exc}") from None
    return message


def wrap(field: str, inner: Message) -> Message:
    """A ``privval.Message`` carrying ``inner`` in its oneof ``field``."""
    message = schema.PrivvalMessage()
    getattr(message, field).CopyFrom(inner)
    return message


def remote_error(description: str) -> Message:
    return schema.RemoteSignerError(code=ERROR_CODE, description=description)


def pub_key_response(public_key: bytes) -> Message:
    """Both spellings: ``pub_key`` for CometBFT 0.37/0.38, type and bytes for 1.0."""
    response = schema.PubKeyResponse(pub_key_bytes=public_key, pub_key_type="ed25519")
    response.pub_key.ed25519 = public_key
    return wrap("pub_key_response", response)


# The answer to each request, for refusals.
RESPONSE_OF = {
    "pub_key_request": ("pub_key_response", schema.PubKeyResponse),
    "sign_vote_request": ("signed_vote_response", schema.SignedVoteResponse),
    "sign_proposal_request": ("signed_proposal_response", schema.SignedProposalResponse),
    "sign_bytes_request": ("sign_bytes_response", schema.SignBytesResponse),
}


def refusal(request_kind: str, description: str) -> Message:
    """The response to a ``request_kind`` request that carries only an error."""
    field, kind = RESPONSE_OF[request_kind]
    return wrap(field, kind(error=remote_error(description)))


def is_refusal(response: Message) -> bool:
    """Whether a response to a sign request carries an error instead of a signature."""
    field = response.WhichOneof("sum")
    return field is not None and getattr(response, field).HasField("error")
