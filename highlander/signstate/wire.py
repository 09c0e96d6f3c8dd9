"""Messages between sign-state nodes, and the local signer API's lines.

Between nodes: length-prefixed JSON frames (4-byte big-endian length, then
UTF-8 JSON) inside mutual TLS. Signers on the same host: one JSON object per
line on a Unix socket, so any language can speak it. Both directions are
bounded in size and parsed strictly: anything malformed is a
:class:`WireError` with a message saying what was wrong, and changes nothing.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import NamedTuple

from highlander.signstate.register import HRS, KeyId, Record, Reply, check_mark
from highlander.signstate.store import check_key

VERSION = 1
MAX_FRAME = 16 * 1024  # a request is ~200 bytes; anything near this is hostile
MAX_LINE = 16 * 1024
HEADER = struct.Struct(">I")
REPLICA_OPS = ("promise", "advance", "status")


class WireError(ValueError):
    """A message that cannot be accepted; the text is sent back to the peer."""


class Request(NamedTuple):
    """A replica operation, as one coordinator sends it to every replica."""

    id: int
    op: str
    key: KeyId
    epoch: int = 0
    hrs: HRS = HRS(0, 0, 0)
    digest: str = ""


def integer(document: dict[str, object], name: str, minimum: int = 0) -> int:
    """A field that must be an integer in [minimum, 2^63): what every replica stores."""
    value = document.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or value >= 2**63:
        raise WireError(f"{name} must be an integer from {minimum} to 2^63-1, got {value!r}")
    return value


def _text(document: dict[str, object], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise WireError(f"{name} must be a string, got {value!r}")
    return value


def parse_key(document: dict[str, object]) -> KeyId:
    key = KeyId(_text(document, "chain_id"), _text(document, "key_id"))
    problem = check_key(key)
    if problem:
        raise WireError(problem)
    return key


def parse_mark(document: dict[str, object]) -> tuple[HRS, str]:
    hrs = HRS(integer(document, "height"), integer(document, "round"), integer(document, "step"))
    digest = _text(document, "digest")
    problem = check_mark(hrs, digest)
    if problem:
        raise WireError(problem)
    return hrs, digest


def parse_request(document: object) -> Request:
    """A replica request from a peer, checked field by field."""
    if not isinstance(document, dict):
        raise WireError("a request must be a JSON object")
    if type(document.get("v")) is not int or document.get("v") != VERSION:
        raise WireError(f"protocol version {document.get('v')!r} is not supported (this node speaks {VERSION})")
    op = document.get("op")
    if op not in REPLICA_OPS:
        raise WireError(f"op must be one of {', '.join(REPLICA_OPS)}, got {op!r}")
    request = Request(integer(document, "id"), str(op), parse_key(document))
    if op == "promise":
        return request._replace(epoch=integer(document, "epoch", 1))
    if op == "advance":
        hrs, digest = parse_mark(document)
        return request._replace(epoch=integer(document, "epoch", 1), hrs=hrs, digest=digest)
    return request


def request_document(request: Request) -> dict[str, object]:
    document: dict[str, object] = {
        "v": VERSION,
        "id": request.id,
        "op": request.op,
        "chain_id": request.key.chain_id,
        "key_id": request.key.key_id,
    }
    if request.op in ("promise", "advance"):
        document["epoch"] = request.epoch
    if request.op == "advance":
        h, r, s = request.hrs
        document.update(height=h, round=r, step=s, digest=request.digest)
    return document


def record_document(record: Record) -> dict[str, object]:
    h, r, s = record.hwm
    return {"promised_epoch": record.promised_epoch, "height": h, "round": r, "step": s, "digest": record.digest}


def parse_record(document: object) -> Record:
    if not isinstance(document, dict):
        raise WireError("record must be a JSON object")
    hwm = HRS(integer(document, "height"), integer(document, "round"), integer(document, "step"))
    return Record(integer(document, "promised_epoch"), hwm, _text(document, "digest"))


def reply_document(request_id: int, reply: Reply) -> dict[str, object]:
    return {"id": request_id, "status": reply.status, "record": record_document(reply.record)}


def error_document(request_id: int | None, message: str) -> dict[str, object]:
    return {"id": request_id, "status": "ERROR", "error": message}


def parse_reply(document: object, expected_id: int) -> Reply:
    if not isinstance(document, dict):
        raise WireError("a reply must be a JSON object")
    if document.get("id") != expected_id:
        raise WireError(f"reply to request {document.get('id')!r}, expected {expected_id}")
    status = document.get("status")
    if status == "ERROR":
        raise WireError(f"peer refused the request: {document.get('error')}")
    if status not in ("OK", "REFUSED", "STALE_EPOCH", "REGRESSION", "CONFLICT"):
        raise WireError(f"unknown status {status!r}")
    return Reply(str(status), parse_record(document.get("record")))


# --- frames between nodes -------------------------------------------------------


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = sock.recv(min(left, 65536))
        if not chunk:
            raise EOFError("connection closed mid-frame" if chunks or size != HEADER.size else "connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> object:
    """One JSON document; the socket's timeout bounds every read."""
    (length,) = HEADER.unpack(_read_exactly(sock, HEADER.size))
    if length == 0 or length > MAX_FRAME:
        raise WireError(f"frame of {length} bytes refused (limit {MAX_FRAME})")
    try:
        return json.loads(_read_exactly(sock, length))
    except (UnicodeDecodeError, ValueError):
        raise WireError("frame is not valid UTF-8 JSON") from None
    except RecursionError:
        raise WireError("frame is nested too deeply") from None


def write_frame(sock: socket.socket, document: dict[str, object]) -> None:
    data = json.dumps(document, separators=(",", ":")).encode()
    if len(data) > MAX_FRAME:
        raise WireError(f"message of {len(data)} bytes exceeds the frame limit")
    sock.sendall(HEADER.pack(len(data)) + data)


# --- lines of the local signer API -------------------------------------------------


def decode_line(line: bytes) -> dict[str, object]:
    if len(line) > MAX_LINE:
        raise WireError(f"line longer than {MAX_LINE} bytes refused")
    try:
        document = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise WireError("a line must be one JSON object") from None
    except RecursionError:
        raise WireError("the line is nested too deeply") from None
    if not isinstance(document, dict):
        raise WireError("a line must be one JSON object")
    return document


def encode_line(document: dict[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"
