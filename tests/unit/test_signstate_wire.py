"""Messages between sign-state nodes and the local signer API's lines.

Everything a peer or a signer sends is parsed strictly: each malformed field
is a :class:`WireError` whose text says which field and what was wrong, and
frames are bounded on both ends. Frames travel over a real socket pair here.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from highlander.signstate.register import HRS, KeyId, Record, Reply
from highlander.signstate.wire import (
    HEADER,
    MAX_FRAME,
    MAX_LINE,
    VERSION,
    Request,
    WireError,
    decode_line,
    encode_line,
    error_document,
    parse_key,
    parse_mark,
    parse_record,
    parse_reply,
    parse_request,
    read_frame,
    record_document,
    reply_document,
    request_document,
    write_frame,
)

KEY = KeyId("cosmoshub-4", "validator-1")
DIGEST = "0123456789abcdef" * 4
ADVANCE = Request(17, "advance", KEY, 3, HRS(100, 1, 2), DIGEST)


def advance_document(**changes: object) -> dict[str, object]:
    document = request_document(ADVANCE)
    document.update(changes)
    return {k: v for k, v in document.items() if v is not DROP}


DROP = object()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


# --- requests: round trip ------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        ADVANCE,
        Request(1, "promise", KEY, 1),
        Request(2, "status", KEY),
        Request(2**63 - 1, "advance", KeyId("c" * 64, "k" * 64), 2**63 - 1, HRS(2**63 - 1, 2**63 - 1, 3), "f" * 128),
        Request(0, "advance", KEY, 1, HRS(1, 0, 1), "0"),
    ],
    ids=["advance", "promise", "status", "largest", "smallest"],
)
def test_request_round_trip(request_: Request) -> None:
    document = request_document(request_)
    assert document["v"] == VERSION
    assert parse_request(json.loads(json.dumps(document))) == request_


def test_status_and_promise_carry_only_their_fields() -> None:
    assert set(request_document(Request(1, "status", KEY))) == {"v", "id", "op", "chain_id", "key_id"}
    assert set(request_document(Request(1, "promise", KEY, 4))) == {"v", "id", "op", "chain_id", "key_id", "epoch"}


def test_fields_an_op_does_not_use_are_ignored() -> None:
    document = request_document(Request(5, "status", KEY))
    document.update(epoch=-1, height="x", extra=[1])
    assert parse_request(document) == Request(5, "status", KEY)


# --- requests: every field error --------------------------------------------------------


@pytest.mark.parametrize("document", [None, [], "advance", 1, 1.5, True], ids=repr)
def test_request_must_be_an_object(document: object) -> None:
    with pytest.raises(WireError, match="a request must be a JSON object"):
        parse_request(document)


@pytest.mark.parametrize("version", [DROP, 0, 2, "1", None, [1], 1.5], ids=repr)
def test_request_with_another_protocol_version(version: object) -> None:
    with pytest.raises(WireError, match=r"protocol version .* is not supported \(this node speaks 1\)"):
        parse_request(advance_document(v=version))


@pytest.mark.parametrize("op", [DROP, "", "ADVANCE", "sign", "restore", "promote", None, 1, ["advance"]], ids=repr)
def test_request_with_an_unknown_op(op: object) -> None:
    with pytest.raises(WireError) as caught:
        parse_request(advance_document(op=op))
    assert str(caught.value).startswith("op must be one of promise, advance, status, got ")


INTEGER_FIELDS = ["id", "epoch", "height", "round", "step"]
NOT_INTEGERS = [DROP, None, "5", 5.0, 5.5, True, False, [5], {"n": 5}, 2**63, 2**64 + 1]


@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
@pytest.mark.parametrize("field", INTEGER_FIELDS)
def test_integer_fields_must_be_integers_in_range(field: str, value: object) -> None:
    with pytest.raises(WireError) as caught:
        parse_request(advance_document(**{field: value}))
    assert str(caught.value).startswith(f"{field} must be an integer from ")
    assert "2^63-1" in str(caught.value)


@pytest.mark.parametrize("field", INTEGER_FIELDS)
def test_negative_integers_are_refused(field: str) -> None:
    with pytest.raises(WireError, match=f"^{field} must be an integer from"):
        parse_request(advance_document(**{field: -1}))


@pytest.mark.parametrize("op", ["promise", "advance"])
def test_epoch_zero_is_refused(op: str) -> None:
    with pytest.raises(WireError, match=r"^epoch must be an integer from 1 to 2\^63-1, got 0"):
        parse_request(advance_document(op=op, epoch=0))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"height": 0}, "height must be at least 1"),
        ({"step": 0}, "step must be 1 (propose), 2 (prevote) or 3 (precommit), got 0"),
        ({"step": 4}, "step must be 1 (propose), 2 (prevote) or 3 (precommit), got 4"),
        ({"digest": ""}, "digest must be 1 to 128 lower-case hex digits"),
        ({"digest": "ABCDEF"}, "digest must be 1 to 128 lower-case hex digits"),
        ({"digest": "xyz"}, "digest must be 1 to 128 lower-case hex digits"),
        ({"digest": "0x12"}, "digest must be 1 to 128 lower-case hex digits"),
        ({"digest": "ab cd"}, "digest must be 1 to 128 lower-case hex digits"),
        ({"digest": "a" * 129}, "digest must be 1 to 128 lower-case hex digits"),
        ({"digest": "١٢"}, "digest must be 1 to 128 lower-case hex digits"),
        ({"digest": 1234}, "digest must be a string, got 1234"),
        ({"digest": None}, "digest must be a string, got None"),
        ({"digest": DROP}, "digest must be a string, got None"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_advance_mark_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_request(advance_document(**changes))
    assert message in str(caught.value)


@pytest.mark.parametrize("field", ["chain_id", "key_id"])
@pytest.mark.parametrize(
    "value, message",
    [
        (DROP, "must be a string, got None"),
        (None, "must be a string, got None"),
        (7, "must be a string, got 7"),
        (["a"], "must be a string, got ['a']"),
        ("", "must be 1 to 64 of"),
        ("x" * 65, "must be 1 to 64 of"),
        ("../etc", "must be 1 to 64 of"),
        (".hidden", "must be 1 to 64 of"),
        ("a b", "must be 1 to 64 of"),
    ],
    ids=repr,
)
def test_key_errors(field: str, value: object, message: str) -> None:
    for op in ("status", "promise", "advance"):
        with pytest.raises(WireError) as caught:
            parse_request(advance_document(op=op, **{field: value}))
        assert str(caught.value).startswith(field)
        assert message in str(caught.value)


def test_parse_key_and_mark_directly() -> None:
    assert parse_key({"chain_id": "c", "key_id": "k"}) == KeyId("c", "k")
    assert parse_mark({"height": 1, "round": 0, "step": 3, "digest": "ab"}) == (HRS(1, 0, 3), "ab")


# --- records and replies -------------------------------------------------------------------


def test_reply_round_trip() -> None:
    reply = Reply("REGRESSION", Record(4, HRS(9, 1, 2), "ab"))
    assert parse_reply(json.loads(json.dumps(reply_document(17, reply))), 17) == reply
    assert parse_record(record_document(Record(0, HRS(0, 0, 0), ""))) == Record(0, HRS(0, 0, 0), "")


@pytest.mark.parametrize("status", ["OK", "REFUSED", "STALE_EPOCH", "REGRESSION", "CONFLICT"])
def test_every_replica_status_is_accepted(status: str) -> None:
    document = reply_document(3, Reply(status, Record(1, HRS(1, 0, 1), "aa")))
    assert parse_reply(document, 3).status == status


@pytest.mark.parametrize("got", [16, None, "17", DROP], ids=repr)
def test_reply_to_another_request_is_refused(got: object) -> None:
    document = reply_document(17, Reply("OK", Record(1, HRS(1, 0, 1), "aa")))
    if got is DROP:
        del document["id"]
        got = None
    else:
        document["id"] = got
    with pytest.raises(WireError, match=rf"^reply to request {got!r}, expected 17$"):
        parse_reply(document, 17)


def test_error_reply_carries_the_peers_message() -> None:
    with pytest.raises(WireError, match="^peer refused the request: epoch must be"):
        parse_reply(error_document(5, "epoch must be an integer"), 5)


def test_error_reply_to_another_request_is_an_id_mismatch() -> None:
    with pytest.raises(WireError, match="reply to request None, expected 5"):
        parse_reply(error_document(None, "frame refused"), 5)


@pytest.mark.parametrize("status", [None, "NO_QUORUM", "ok", "", 1])
def test_unknown_reply_status(status: object) -> None:
    with pytest.raises(WireError, match="unknown status"):
        parse_reply({"id": 1, "status": status, "record": record_document(Record(1, HRS(1, 0, 1), "a"))}, 1)


@pytest.mark.parametrize("document", [None, [], "x"], ids=repr)
def test_reply_must_be_an_object(document: object) -> None:
    with pytest.raises(WireError, match="a reply must be a JSON object"):
        parse_reply(document, 1)


@pytest.mark.parametrize(
    "record, field",
    [
        (None, "record must be a JSON object"),
        ([], "record must be a JSON object"),
        ({"promised_epoch": 1, "height": 1, "round": 0, "step": 1}, "digest must be a string"),
        ({"promised_epoch": -1, "height": 1, "round": 0, "step": 1, "digest": ""}, "promised_epoch must be"),
        ({"promised_epoch": 1, "height": "1", "round": 0, "step": 1, "digest": ""}, "height must be"),
        ({"promised_epoch": 1, "height": 1, "round": 0, "digest": ""}, "step must be"),
    ],
)
def test_reply_with_a_malformed_record(record: object, field: str) -> None:
    with pytest.raises(WireError, match=field):
        parse_reply({"id": 1, "status": "OK", "record": record}, 1)


# --- frames ----------------------------------------------------------------------------------


def test_frames_round_trip_over_a_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    documents: list[dict[str, object]] = [request_document(ADVANCE), {"x": "é"}, error_document(None, "bye")]
    for document in documents:
        write_frame(a, document)
    assert [read_frame(b) for _ in documents] == documents


def test_frame_header_is_the_big_endian_length(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    write_frame(a, {"a": 1})
    assert b.recv(100) == b"\x00\x00\x00\x07" + b'{"a":1}'


def _largest_document() -> dict[str, str]:
    """A document whose compact JSON is exactly MAX_FRAME bytes."""
    document = {"pad": ""}
    document["pad"] = "x" * (MAX_FRAME - len(json.dumps(document, separators=(",", ":"))))
    return document


def test_frame_of_exactly_the_limit_passes(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    document: dict[str, object] = {**_largest_document()}
    write_frame(a, document)
    assert read_frame(b) == document


def test_writing_a_frame_over_the_limit_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    document = _largest_document()
    document["pad"] += "x"
    with pytest.raises(WireError, match="exceeds the frame limit"):
        write_frame(a, {**document})
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(1)  # nothing was sent


@pytest.mark.parametrize("length", [0, MAX_FRAME + 1, 2**32 - 1])
def test_reading_a_frame_announcing_a_bad_length_is_refused(
    pair: tuple[socket.socket, socket.socket], length: int
) -> None:
    a, b = pair
    a.sendall(HEADER.pack(length))  # the body is never sent: the header alone is refused
    with pytest.raises(WireError, match=rf"^frame of {length} bytes refused \(limit {MAX_FRAME}\)$"):
        read_frame(b)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{", b'{"a":1}}', b"\xff\xfe\xfd", b'"\xc3\x28"', b"\x00" * 8],
    ids=["text", "open", "trailing", "binary", "bad-utf8", "zeros"],
)
def test_frame_that_is_not_json_is_refused(pair: tuple[socket.socket, socket.socket], body: bytes) -> None:
    a, b = pair
    a.sendall(HEADER.pack(len(body)) + body)
    with pytest.raises(WireError, match="^frame is not valid UTF-8 JSON$"):
        read_frame(b)


def test_frame_nested_too_deep_is_a_wire_error(pair: tuple[socket.socket, socket.socket]) -> None:
    # 16 KiB of "[" is a legal frame size; json raises RecursionError on it,
    # which is not a WireError and escapes every handler that catches one.
    a, b = pair
    body = b"[" * 8_000 + b"]" * 8_000
    assert len(body) <= MAX_FRAME
    a.sendall(HEADER.pack(len(body)) + body)
    with pytest.raises(WireError):
        read_frame(b)


def test_connection_closed_before_a_frame(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.close()
    with pytest.raises(EOFError, match="^connection closed$"):
        read_frame(b)


@pytest.mark.parametrize(
    "sent",
    [b"\x00\x00", HEADER.pack(100), HEADER.pack(100) + b'{"id":1,'],
    ids=["half-header", "header-only", "half-body"],
)
def test_truncated_frame(pair: tuple[socket.socket, socket.socket], sent: bytes) -> None:
    a, b = pair
    a.sendall(sent)
    a.close()
    with pytest.raises(EOFError, match="^connection closed mid-frame$"):
        read_frame(b)


def test_a_stalled_frame_is_bounded_by_the_socket_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(HEADER.pack(100) + b"{")
    b.settimeout(0.2)
    with pytest.raises(TimeoutError):
        read_frame(b)


def test_a_frame_arriving_in_pieces_is_reassembled(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    data = json.dumps(request_document(ADVANCE)).encode()
    wire = HEADER.pack(len(data)) + data

    def dribble() -> None:
        for i in range(len(wire)):
            a.send(wire[i : i + 1])

    sender = threading.Thread(target=dribble)
    sender.start()
    try:
        assert parse_request(read_frame(b)) == ADVANCE
    finally:
        sender.join()


# --- lines of the local API ----------------------------------------------------------------


def test_line_round_trip() -> None:
    document = {"op": "advance", "id": "x", "n": 1}
    line = encode_line(document)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_line(line) == document


def test_line_of_exactly_the_limit_passes() -> None:
    document = {"pad": ""}
    document["pad"] = "x" * (MAX_LINE - len(json.dumps(document)))
    line = json.dumps(document).encode()
    assert len(line) == MAX_LINE
    assert decode_line(line) == document


def test_line_over_the_limit_is_refused() -> None:
    with pytest.raises(WireError, match=f"^line longer than {MAX_LINE} bytes refused$"):
        decode_line(b"x" * (MAX_LINE + 1))


@pytest.mark.parametrize(
    "line",
    [b"", b"\n", b"garbage\n", b"[1, 2]\n", b'"op"\n', b"null\n", b"\xff\xfe\n", b'{"op": "status"\n'],
    ids=["empty", "newline", "garbage", "list", "string", "null", "binary", "unclosed"],
)
def test_line_that_is_not_one_object_is_refused(line: bytes) -> None:
    with pytest.raises(WireError, match="^a line must be one JSON object$"):
        decode_line(line)


def test_line_nested_too_deep_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        decode_line(b"[" * 10_000 + b"\n")
