"""Messages between sign-state nodes, and the local signer API's lines.

Between nodes: length-prefixed JSON frames (4-byte big-endian length, then
UTF-8 JSON) inside mutual TLS; requests carry an ``id`` that the reply
echoes, so many requests can be in flight on one connection. Signers on the
same host: one JSON object per line on a Unix socket, so any language can
speak it. Both directions are bounded in size and parsed strictly (no
duplicate names, no deep nesting, integers within the register's limits):
anything malformed is a :class:`WireError` with a message saying what was
wrong, and changes nothing.
"""

from __future__ import annotations

import json
import struct
from typing import NamedTuple

from highlander.signstate.register import (
    HRS,
    MAX_COUNTER,
    MAX_HEIGHT,
    MAX_ROUND,
    NO_BALLOT,
    ZERO,
    Ballot,
    KeyId,
    Record,
    Reply,
    check_ballot,
    check_digest,
    check_mark,
)
from highlander.signstate.store import check_key

VERSION = 2
MAX_FRAME = 16 * 1024  # a request is ~200 bytes, a page of records ~8 KiB
MAX_LINE = 16 * 1024
HEADER = struct.Struct(">I")
MAX_DEPTH = 8  # every message is at most four levels deep
REPLICA_OPS = ("promise", "advance", "status", "dump", "reset")
REPLY_STATUSES = ("OK", "REFUSED", "STALE_EPOCH", "REGRESSION", "CONFLICT", "RECOVERING")
DUMP_PAGE = 24  # records per dump reply: even the largest fit in a frame


class WireError(ValueError):
    """A message that cannot be accepted; the text is sent back to the peer."""


class Request(NamedTuple):
    """A replica operation, as one coordinator sends it to every replica.

    ``hrs`` is the mark of an advance or a reset; ``after`` is where a dump
    continues (the last key of the previous page).
    """

    id: int
    op: str
    key: KeyId
    ballot: Ballot = NO_BALLOT
    hrs: HRS = ZERO
    digest: str = ""


class Page(NamedTuple):
    """One reply to a dump: records in key order, and whether more follow."""

    records: list[tuple[KeyId, Record]]
    more: bool


# --- strict JSON --------------------------------------------------------------------------


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        names = [name for name, _ in pairs]
        raise WireError(f"the name {next(n for n in names if names.count(n) > 1)!r} appears twice")
    return document


def _depth(document: object, limit: int) -> bool:
    """Whether ``document`` nests at most ``limit`` levels."""
    if limit < 0:
        return False
    if isinstance(document, dict):
        return all(_depth(value, limit - 1) for value in document.values())
    if isinstance(document, list):
        return all(_depth(value, limit - 1) for value in document)
    return True


# Made once: json.loads and json.dumps build a new decoder or encoder per call when given options.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique)
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def loads(data: bytes | str, invalid: str = "not valid UTF-8 JSON") -> object:
    """JSON with every name once and at most MAX_DEPTH levels, else WireError
    (``invalid`` says what is wrong with data that is not JSON at all)."""
    try:
        document = _DECODER.decode(data.decode() if isinstance(data, bytes) else data)
    except WireError:
        raise
    except RecursionError:
        raise WireError("the message is nested too deeply") from None
    except (UnicodeDecodeError, ValueError):
        raise WireError(invalid) from None
    text = data if isinstance(data, bytes) else data.encode()
    # A request opens three brackets at most: only more can nest too deeply.
    if text.count(b"[") + text.count(b"{") > MAX_DEPTH and not _depth(document, MAX_DEPTH):
        raise WireError("the message is nested too deeply")
    return document


# --- fields -------------------------------------------------------------------------------


def integer(document: dict[str, object], name: str, minimum: int = 0, maximum: int = MAX_HEIGHT) -> int:
    value = document.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise WireError(f"{name} must be an integer from {minimum} to {maximum}, got {_short(value)}")
    return value


def _text(document: dict[str, object], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise WireError(f"{name} must be a string, got {_short(value)}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_key(document: dict[str, object]) -> KeyId:
    key = KeyId(_text(document, "chain_id"), _text(document, "key_id"))
    problem = check_key(key)
    if problem:
        raise WireError(problem)
    return key


def parse_mark(document: dict[str, object], floor: bool = False) -> tuple[HRS, str]:
    """A mark to advance to; ``floor``: its digest may be empty (see check_mark)."""
    hrs = HRS(integer(document, "height"), integer(document, "round", 0, MAX_ROUND), integer(document, "step", 0, 9))
    digest = _text(document, "digest")
    problem = check_mark(hrs, digest, floor)
    if problem:
        raise WireError(problem)
    return hrs, digest


def parse_ballot(value: object, *, empty: bool = False) -> Ballot:
    """``[counter, owner]``; ``[0, ""]`` only where an empty record may appear."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
        raise WireError(f"ballot must be [counter, node], got {_short(value)}")
    counter = integer({"ballot": value[0]}, "ballot", 0, MAX_COUNTER)
    ballot = Ballot(counter, value[1])
    if ballot != NO_BALLOT or not empty:
        problem = check_ballot(ballot)
        if problem:
            raise WireError(problem)
    return ballot


def parse_request(document: object) -> Request:
    """A replica request from a peer, checked field by field."""
    if not isinstance(document, dict):
        raise WireError("a request must be a JSON object")
    if type(document.get("v")) is not int or document.get("v") != VERSION:
        raise WireError(f"protocol version {_short(document.get('v'))} is not supported (this node speaks {VERSION})")
    op = document.get("op")
    if op not in REPLICA_OPS:
        raise WireError(f"op must be one of {', '.join(REPLICA_OPS)}, got {_short(op)}")
    request_id = integer(document, "id", 0, MAX_COUNTER)
    if op == "dump":
        after = document.get("after", {"chain_id": "", "key_id": ""})
        if not isinstance(after, dict):
            raise WireError(f"after must be the last key of the previous page, got {_short(after)}")
        key = parse_key(after) if after != {"chain_id": "", "key_id": ""} else KeyId("", "")
        return Request(request_id, "dump", key)
    request = Request(request_id, str(op), parse_key(document))
    if op == "status":
        return request
    request = request._replace(ballot=parse_ballot(document.get("ballot")))
    if op == "advance":
        hrs, digest = parse_mark(document, floor=True)
        return request._replace(hrs=hrs, digest=digest)
    if op == "reset":
        hrs = HRS(
            integer(document, "height"), integer(document, "round", 0, MAX_ROUND), integer(document, "step", 0, 3)
        )
        return request._replace(hrs=hrs)
    return request


def request_document(request: Request) -> dict[str, object]:
    document: dict[str, object] = {"v": VERSION, "id": request.id, "op": request.op}
    if request.op == "dump":
        if request.key.chain_id:
            document["after"] = {"chain_id": request.key.chain_id, "key_id": request.key.key_id}
        return document
    document.update(chain_id=request.key.chain_id, key_id=request.key.key_id)
    if request.op != "status":
        document["ballot"] = list(request.ballot)
    if request.op in ("advance", "reset"):
        h, r, s = request.hrs
        document.update(height=h, round=r, step=s)
    if request.op == "advance":
        document["digest"] = request.digest
    return document


# --- records and replies --------------------------------------------------------------------


def record_document(record: Record) -> dict[str, object]:
    h, r, s = record.hwm
    return {"ballot": list(record.promised), "height": h, "round": r, "step": s, "digest": record.digest}


def parse_hwm(document: dict[str, object]) -> tuple[HRS, str]:
    """A high-water mark and its digest, as records and promotions carry them (may be zero)."""
    hwm = HRS(integer(document, "height"), integer(document, "round", 0, MAX_ROUND), integer(document, "step", 0, 3))
    return hwm, _text(document, "digest")


def parse_record(document: object) -> Record:
    """A record as a replica may hold it: an empty one, or a mark (or floor) within bounds."""
    if not isinstance(document, dict):
        raise WireError("record must be a JSON object")
    hwm, digest = parse_hwm(document)
    problem = check_digest(digest) if hwm == ZERO else check_mark(hwm, digest, floor=True)
    if problem:
        raise WireError(f"record: {problem}")
    return Record(parse_ballot(document.get("ballot"), empty=True), hwm, digest)


def reply_document(request_id: int, reply: Reply) -> dict[str, object]:
    return {"id": request_id, "status": reply.status, "record": record_document(reply.record)}


def page_document(request_id: int, page: Page) -> dict[str, object]:
    records = [{"chain_id": k.chain_id, "key_id": k.key_id, **record_document(r)} for k, r in page.records]
    return {"id": request_id, "status": "OK", "records": records, "more": page.more}


def error_document(request_id: int | None, message: str) -> dict[str, object]:
    return {"id": request_id, "status": "ERROR", "error": message}


def reply_id(document: object) -> int | None:
    """The request a reply answers, or None when it names none."""
    if isinstance(document, dict) and type(document.get("id")) is int:
        return int(document["id"])  # type: ignore[call-overload]
    return None


def _checked_reply(document: object) -> dict[str, object]:
    if not isinstance(document, dict):
        raise WireError("a reply must be a JSON object")
    status = document.get("status")
    if status == "ERROR":
        raise WireError(f"peer refused the request: {_short(document.get('error'))}")
    if status not in REPLY_STATUSES:
        raise WireError(f"unknown status {_short(status)}")
    return document


def parse_reply(document: object) -> Reply:
    checked = _checked_reply(document)
    return Reply(str(checked["status"]), parse_record(checked.get("record")))


def parse_page(document: object) -> Page:
    checked = _checked_reply(document)
    records = checked.get("records")
    if not isinstance(records, list) or not isinstance(checked.get("more"), bool):
        raise WireError("a dump reply must hold records and more")
    if checked["status"] != "OK":
        raise WireError(f"the replica cannot be read: {checked['status']}")
    if not all(isinstance(r, dict) for r in records):
        raise WireError("every entry of a dump page must be a record")
    return Page([(parse_key(r), parse_record(r)) for r in records], bool(checked["more"]))


# --- frames between nodes -------------------------------------------------------------------


def encode_frame(document: dict[str, object]) -> bytes:
    data = _ENCODER.encode(document).encode()
    if len(data) > MAX_FRAME:
        raise WireError(f"message of {len(data)} bytes exceeds the frame limit")
    return HEADER.pack(len(data)) + data


def frame_length(header: bytes) -> int:
    """The body length a frame header announces; WireError when out of bounds."""
    (length,) = HEADER.unpack(header)
    if length == 0 or length > MAX_FRAME:
        raise WireError(f"frame of {length} bytes refused (limit {MAX_FRAME})")
    return length


# --- lines of the local signer API ------------------------------------------------------------


def decode_line(line: bytes) -> dict[str, object]:
    if len(line) > MAX_LINE:
        raise WireError(f"line longer than {MAX_LINE} bytes refused")
    document = loads(line, "a line must be one JSON object")
    if not isinstance(document, dict):
        raise WireError("a line must be one JSON object")
    return document


def encode_line(document: dict[str, object]) -> bytes:
    return _ENCODER.encode(document).encode() + b"\n"
