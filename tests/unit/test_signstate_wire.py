"""Messages between sign-state nodes and the local signer API's lines.

Everything a peer or a signer sends is parsed strictly: each malformed field
is a :class:`WireError` whose text says which field and what was wrong,
duplicate names and deep nesting are refused, every integer is bounded by
the register's maxima, and frames and lines are bounded in size.
"""

from __future__ import annotations

import json

import pytest

from highlander.signstate.register import (
    EMPTY,
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
    reset,
)
from highlander.signstate.wire import (
    DUMP_PAGE,
    HEADER,
    MAX_DEPTH,
    MAX_FRAME,
    MAX_LINE,
    REPLICA_OPS,
    REPLY_STATUSES,
    VERSION,
    Page,
    Request,
    WireError,
    decode_line,
    encode_frame,
    encode_line,
    error_document,
    frame_length,
    loads,
    page_document,
    parse_ballot,
    parse_key,
    parse_mark,
    parse_page,
    parse_record,
    parse_reply,
    parse_request,
    record_document,
    reply_document,
    reply_id,
    request_document,
)

KEY = KeyId("cosmoshub-4", "validator-1")
DIGEST = "0123456789abcdef" * 4
BALLOT = Ballot(3, "node-a")
ADVANCE = Request(17, "advance", KEY, BALLOT, HRS(100, 1, 2), DIGEST)
RECORD = Record(Ballot(4, "node-b"), HRS(9, 1, 2), "ab")
LARGEST_KEY = KeyId("c" * 64, "k" * 64)
LARGEST_RECORD = Record(Ballot(MAX_COUNTER, "n" * 64), HRS(MAX_HEIGHT, MAX_ROUND, 3), "f" * 128)
DROP = object()


def wire(document: dict[str, object]) -> object:
    """``document`` as a peer receives it."""
    return loads(json.dumps(document).encode())


def advance_document(op: str = "advance", **changes: object) -> dict[str, object]:
    """A valid request of ``op`` (all of an advance's fields), with ``changes``; DROP removes a field."""
    document = request_document(ADVANCE)
    document["op"] = op
    document.update(changes)
    return {k: v for k, v in document.items() if v is not DROP}


def refused(document: object) -> str:
    """The WireError text parse_request gives ``document``."""
    with pytest.raises(WireError) as caught:
        parse_request(document)
    return str(caught.value)


# --- strict JSON --------------------------------------------------------------------------


def test_loads_reads_json_from_bytes_and_text() -> None:
    assert loads(b'{"a": [1, "x", null, true]}') == {"a": [1, "x", None, True]}
    assert loads('{"é": "ü"}') == {"é": "ü"}


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'{"a": 1, "a": 2}', "a"),
        (b'{"a": 1, "b": 2, "a": 1}', "a"),
        (b'{"x": {"b": 1, "b": 1}}', "b"),
        (b'[{"ok": 1}, {"c": 1, "c": 2}]', "c"),
        (b'{"ballot": [1, "n"], "ballot": [2, "n"]}', "ballot"),
    ],
)
def test_a_name_given_twice_is_refused_not_last_wins(data: bytes, name: str) -> None:
    with pytest.raises(WireError, match=f"^the name '{name}' appears twice$"):
        loads(data)


def test_a_duplicate_name_in_a_request_is_refused_even_with_equal_values() -> None:
    text = json.dumps(request_document(ADVANCE))
    with pytest.raises(WireError, match="^the name 'op' appears twice$"):
        loads(text[:-1] + ', "op": "advance"}')


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"{", b'{"a":1}}', b"\xff\xfe\xfd", b'"\xc3\x28"', b"\x00" * 8, b"[1,]"],
    ids=["empty", "text", "open", "trailing", "binary", "bad-utf8", "zeros", "trailing-comma"],
)
def test_loads_refuses_what_is_not_json(data: bytes) -> None:
    with pytest.raises(WireError, match="^not valid UTF-8 JSON$"):
        loads(data)


def test_loads_accepts_the_deepest_message_allowed() -> None:
    for inner in ("1", "[]", "{}"):
        assert loads("[" * MAX_DEPTH + inner + "]" * MAX_DEPTH) is not None
    assert loads('{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH) is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 5_000, 100_000])
def test_deep_nesting_is_a_clean_wire_error(depth: int) -> None:
    # json raises RecursionError on a deep document, which no WireError handler catches.
    for opener, closer in (("[", "]"), ('{"a":', "}")):
        with pytest.raises(WireError, match="^the message is nested too deeply$") as caught:
            loads((opener * depth + "1" + closer * depth).encode())
        error = caught.value  # no RecursionError chained into the logs
        assert error.__context__ is None or error.__suppress_context__


def test_an_unclosed_deep_document_is_a_clean_wire_error() -> None:
    with pytest.raises(WireError):
        loads(b"[" * 100_000)


# --- requests: round trip ------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        ADVANCE,
        Request(1, "promise", KEY, BALLOT),
        Request(2, "status", KEY),
        Request(3, "dump", KeyId("", "")),
        Request(4, "dump", KEY),
        Request(5, "reset", KEY, BALLOT, HRS(7, 0, 3)),
        Request(6, "reset", KEY, BALLOT, ZERO),
        Request(
            MAX_COUNTER, "advance", LARGEST_KEY, Ballot(MAX_COUNTER, "n" * 64), HRS(MAX_HEIGHT, MAX_ROUND, 3), "f" * 128
        ),
        Request(0, "advance", KeyId("c", "k"), Ballot(1, "n"), HRS(1, 0, 1), "0"),
    ],
    ids=["advance", "promise", "status", "dump", "dump-after", "reset", "reset-zero", "largest", "smallest"],
)
def test_request_round_trip(request_: Request) -> None:
    document = request_document(request_)
    assert document["v"] == VERSION
    assert parse_request(wire(document)) == request_


def test_each_op_carries_only_its_fields() -> None:
    base = {"v", "id", "op", "chain_id", "key_id"}
    assert set(request_document(Request(1, "status", KEY))) == base
    assert set(request_document(Request(1, "promise", KEY, BALLOT))) == base | {"ballot"}
    assert set(request_document(ADVANCE)) == base | {"ballot", "height", "round", "step", "digest"}
    assert set(request_document(Request(1, "reset", KEY, BALLOT, ZERO))) == base | {"ballot", "height", "round", "step"}
    assert set(request_document(Request(1, "dump", KeyId("", "")))) == {"v", "id", "op"}
    assert request_document(Request(1, "dump", KEY))["after"] == {"chain_id": KEY.chain_id, "key_id": KEY.key_id}


def test_a_ballot_travels_as_counter_and_owner() -> None:
    assert request_document(ADVANCE)["ballot"] == [3, "node-a"]


def test_fields_an_op_does_not_use_are_ignored() -> None:
    document = request_document(Request(5, "status", KEY))
    document.update(ballot=[0, ""], height="x", extra=[1])
    assert parse_request(document) == Request(5, "status", KEY)
    dump = request_document(Request(6, "dump", KeyId("", "")))
    dump.update(chain_id="../x", ballot=None)
    assert parse_request(dump) == Request(6, "dump", KeyId("", ""))


# --- requests: every field error --------------------------------------------------------


@pytest.mark.parametrize("document", [None, [], "advance", 1, 1.5, True], ids=repr)
def test_request_must_be_an_object(document: object) -> None:
    assert refused(document) == "a request must be a JSON object"


@pytest.mark.parametrize("version", [DROP, 0, 1, 3, "2", None, [2], 2.0, True], ids=repr)
def test_request_with_another_protocol_version(version: object) -> None:
    message = refused(advance_document(v=version))
    assert message.startswith("protocol version ")
    assert message.endswith(f" is not supported (this node speaks {VERSION})")


def test_the_version_is_checked_before_anything_else() -> None:
    assert refused({"v": 1, "op": "sign", "id": -1}).startswith("protocol version 1 ")


@pytest.mark.parametrize(
    "op", [DROP, "", "ADVANCE", "sign", "restore", "promote", "rejoin", None, 1, ["advance"], {"op": 1}], ids=repr
)
def test_request_with_an_unknown_op(op: object) -> None:
    assert REPLICA_OPS == ("promise", "advance", "status", "dump", "reset")
    assert refused(advance_document(op=op)).startswith("op must be one of promise, advance, status, dump, reset, got ")


def test_an_error_never_echoes_a_huge_value() -> None:
    message = refused(advance_document(op="x" * 100_000))
    assert len(message) < 200 and message.endswith("...")


NOT_INTEGERS = [DROP, None, "5", 5.0, 5.5, float("nan"), float("inf"), True, False, [5], {"n": 5}, -1]


@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
@pytest.mark.parametrize(
    ("field", "low", "high"),
    [("id", 0, MAX_COUNTER), ("height", 0, MAX_HEIGHT), ("round", 0, MAX_ROUND), ("step", 0, 9)],
)
def test_integer_fields_must_be_integers_in_range(field: str, low: int, high: int, value: object) -> None:
    assert refused(advance_document(**{field: value})).startswith(
        f"{field} must be an integer from {low} to {high}, got "
    )


@pytest.mark.parametrize(
    ("field", "too_big"),
    [
        ("id", MAX_COUNTER + 1),
        ("height", MAX_HEIGHT + 1),
        ("round", MAX_ROUND + 1),
        ("height", 2**63 - 1),
        ("height", 2**64),
    ],
)
def test_integers_above_the_registers_maxima_are_refused(field: str, too_big: int) -> None:
    assert refused(advance_document(**{field: too_big})).startswith(f"{field} must be an integer from 0 to ")


@pytest.mark.parametrize(
    ("field", "value"), [("id", MAX_COUNTER), ("height", MAX_HEIGHT), ("round", MAX_ROUND), ("id", 0)]
)
def test_integers_at_the_maxima_pass(field: str, value: int) -> None:
    assert getattr(parse_request(advance_document(**{field: value})), "id" if field == "id" else "hrs") is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"height": 0}, "height must be 1 to"),
        ({"step": 0}, "step must be 1 (propose), 2 (prevote) or 3 (precommit), got 0"),
        ({"step": 4}, "step must be 1 (propose), 2 (prevote) or 3 (precommit), got 4"),
        ({"step": 10}, "step must be an integer from 0 to 9, got 10"),
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
    assert message in refused(advance_document(**changes))


def test_a_peer_advance_may_carry_a_floor() -> None:
    """A mark without sign bytes (set by a reset or an import) travels in a read repair."""
    assert parse_request(advance_document(digest="")).digest == ""


def test_parse_mark_directly() -> None:
    assert parse_mark({"height": 1, "round": 0, "step": 3, "digest": "ab"}) == (HRS(1, 0, 3), "ab")


@pytest.mark.parametrize(
    ("changes", "hrs"),
    [({"height": 0, "round": 0, "step": 0}, ZERO), ({"height": 7, "round": 2, "step": 3}, HRS(7, 2, 3))],
)
def test_a_reset_carries_a_mark_without_a_digest(changes: dict[str, object], hrs: HRS) -> None:
    request = parse_request(advance_document("reset", digest=DROP, **changes))
    assert (request.op, request.ballot, request.hrs, request.digest) == ("reset", BALLOT, hrs, "")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"step": 4}, "step must be an integer from 0 to 3, got 4"),
        ({"height": -1}, f"height must be an integer from 0 to {MAX_HEIGHT}, got -1"),
        ({"height": MAX_HEIGHT + 1}, f"height must be an integer from 0 to {MAX_HEIGHT}"),
        ({"round": "0"}, f"round must be an integer from 0 to {MAX_ROUND}, got '0'"),
        ({"ballot": [0, ""]}, "a ballot is a counter from 1 to"),
    ],
)
def test_reset_errors(changes: dict[str, object], message: str) -> None:
    assert message in refused(advance_document("reset", **changes))


@pytest.mark.parametrize("field", ["chain_id", "key_id"])
@pytest.mark.parametrize(
    ("value", "message"),
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
        ("a\nb", "must be 1 to 64 of"),
    ],
    ids=repr,
)
def test_key_errors(field: str, value: object, message: str) -> None:
    for op in ("status", "promise", "advance", "reset"):
        text = refused(advance_document(op, **{field: value}))
        assert text.startswith(field)
        assert message in text


def test_parse_key_directly() -> None:
    assert parse_key({"chain_id": "c", "key_id": "k"}) == KeyId("c", "k")


def test_a_dump_continues_after_a_valid_key_only() -> None:
    with pytest.raises(WireError, match="^chain_id "):
        parse_request({"v": VERSION, "id": 1, "op": "dump", "after": {"chain_id": "../x", "key_id": "k"}})
    with pytest.raises(WireError, match="^key_id must be a string"):
        parse_request({"v": VERSION, "id": 1, "op": "dump", "after": {"chain_id": "c"}})


@pytest.mark.parametrize("after", ["cosmoshub-4/validator-1", 5], ids=["text", "number"])
def test_a_dump_with_a_malformed_after_is_refused(after: object) -> None:
    # A malformed continuation silently restarting from the first key is not strict parsing.
    with pytest.raises(WireError):
        parse_request({"v": VERSION, "id": 1, "op": "dump", "after": after})


# --- ballots --------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["promise", "advance", "reset"])
@pytest.mark.parametrize(
    ("ballot", "message"),
    [
        (DROP, "ballot must be [counter, node], got None"),
        (None, "ballot must be [counter, node], got None"),
        (3, "ballot must be [counter, node], got 3"),
        ("3@node-a", "ballot must be [counter, node], got '3@node-a'"),
        ([3], "ballot must be [counter, node], got [3]"),
        ([3, "node-a", "x"], "ballot must be [counter, node]"),
        ([3, 4], "ballot must be [counter, node], got [3, 4]"),
        ([3, None], "ballot must be [counter, node]"),
        ({"counter": 3, "owner": "node-a"}, "ballot must be [counter, node]"),
        (["3", "node-a"], f"ballot must be an integer from 0 to {MAX_COUNTER}, got '3'"),
        ([3.0, "node-a"], f"ballot must be an integer from 0 to {MAX_COUNTER}, got 3.0"),
        ([True, "node-a"], f"ballot must be an integer from 0 to {MAX_COUNTER}, got True"),
        ([-1, "node-a"], f"ballot must be an integer from 0 to {MAX_COUNTER}, got -1"),
        ([MAX_COUNTER + 1, "node-a"], f"ballot must be an integer from 0 to {MAX_COUNTER}"),
        ([0, ""], f"a ballot is a counter from 1 to {MAX_COUNTER} and the node it belongs to, got 0"),
        ([0, "node-a"], "a ballot is a counter from 1 to"),
        ([3, ""], "a ballot is a counter from 1 to"),
    ],
    ids=repr,
)
def test_ballot_errors_in_requests(op: str, ballot: object, message: str) -> None:
    assert message in refused(advance_document(op, ballot=ballot))


def test_the_largest_ballot_passes() -> None:
    assert parse_ballot([MAX_COUNTER, "node-a"]) == Ballot(MAX_COUNTER, "node-a")


def test_the_empty_ballot_only_where_an_empty_record_may_appear() -> None:
    assert parse_ballot([0, ""], empty=True) == NO_BALLOT
    with pytest.raises(WireError, match="a ballot is a counter from 1 to"):
        parse_ballot([0, ""])
    # empty=True allows exactly [0, ""], nothing halfway.
    for half in ([0, "node-a"], [1, ""]):
        with pytest.raises(WireError, match="a ballot is a counter from 1 to"):
            parse_ballot(half, empty=True)


# --- records and replies -------------------------------------------------------------------


def test_record_document_and_parse_record_round_trip() -> None:
    for record in (RECORD, EMPTY, LARGEST_RECORD, Record(Ballot(2, "n"), HRS(5, 0, 1), "")):
        assert parse_record(wire(record_document(record))) == record


def test_reply_round_trip() -> None:
    reply = Reply("REGRESSION", RECORD)
    document = reply_document(17, reply)
    assert parse_reply(wire(document)) == reply
    assert reply_id(wire(document)) == 17


@pytest.mark.parametrize("status", ["OK", "REFUSED", "STALE_EPOCH", "REGRESSION", "CONFLICT", "RECOVERING"])
def test_every_replica_status_is_accepted(status: str) -> None:
    assert status in REPLY_STATUSES
    assert parse_reply(wire(reply_document(3, Reply(status, RECORD)))).status == status


def test_a_recovering_reply_carries_the_empty_record() -> None:
    assert parse_reply(wire(reply_document(3, Reply("RECOVERING", EMPTY)))) == Reply("RECOVERING", EMPTY)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"id": 17}, 17),
        ({"id": 0}, 0),
        ({"id": "17"}, None),
        ({"id": True}, None),
        ({"id": 17.0}, None),
        ({"id": None}, None),
        ({}, None),
        ([17], None),
        (None, None),
    ],
    ids=repr,
)
def test_reply_id(document: object, expected: int | None) -> None:
    assert reply_id(document) == expected


def test_error_reply_carries_the_peers_message() -> None:
    with pytest.raises(WireError, match="^peer refused the request: 'ballot must be"):
        parse_reply(wire(error_document(5, "ballot must be [counter, node], got None")))
    assert reply_id(error_document(5, "x")) == 5
    assert reply_id(error_document(None, "x")) is None


def test_an_error_replys_message_is_shortened() -> None:
    with pytest.raises(WireError) as caught:
        parse_reply(error_document(5, "x" * 100_000))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("status", [None, "NO_QUORUM", "ok", "", 1, ["OK"]], ids=repr)
def test_unknown_reply_status(status: object) -> None:
    with pytest.raises(WireError, match="^unknown status "):
        parse_reply({"id": 1, "status": status, "record": record_document(RECORD)})


@pytest.mark.parametrize("document", [None, [], "x", 1], ids=repr)
def test_reply_must_be_an_object(document: object) -> None:
    with pytest.raises(WireError, match="^a reply must be a JSON object$"):
        parse_reply(document)


GOOD_RECORD = record_document(RECORD)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (None, "record must be a JSON object"),
        ([], "record must be a JSON object"),
        ({**GOOD_RECORD, "digest": None}, "digest must be a string"),
        ({k: v for k, v in GOOD_RECORD.items() if k != "digest"}, "digest must be a string"),
        ({**GOOD_RECORD, "ballot": -1}, "ballot must be [counter, node]"),
        ({**GOOD_RECORD, "ballot": [-1, "n"]}, "ballot must be an integer from 0 to"),
        ({**GOOD_RECORD, "ballot": [MAX_COUNTER + 1, "n"]}, "ballot must be an integer from 0 to"),
        ({**GOOD_RECORD, "ballot": [0, "n"]}, "a ballot is a counter from 1 to"),
        ({**GOOD_RECORD, "height": "1"}, "height must be an integer"),
        ({**GOOD_RECORD, "height": MAX_HEIGHT + 1}, "height must be an integer"),
        ({**GOOD_RECORD, "round": MAX_ROUND + 1}, "round must be an integer"),
        ({**GOOD_RECORD, "step": 4}, "step must be an integer from 0 to 3"),
        ({k: v for k, v in GOOD_RECORD.items() if k != "step"}, "step must be an integer"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_reply_with_a_malformed_record(record: object, message: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_reply({"id": 1, "status": "OK", "record": record})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"digest": "ab cd"},
        {"digest": "ab\ncd"},
        {"digest": "XYZ"},
        {"digest": "f" * 129},
        {"ballot": [4, "node b"]},
        {"ballot": [4, "node\nb"]},
    ],
    ids=["digest-space", "digest-newline", "digest-upper-case", "digest-too-long", "owner-space", "owner-newline"],
)
def test_a_record_no_replica_could_hold_is_refused(changes: dict[str, object]) -> None:
    """A record's digest is empty or what check_mark accepts, its owner a node
    name. A peer's record ends up in the local log (a promotion's read repair,
    a rejoin), and one with a space or a line break in a field makes that log
    unreadable after the next restart."""
    with pytest.raises(WireError):
        parse_record({**GOOD_RECORD, **changes})


def test_the_read_repair_of_a_reset_mark_crosses_the_wire() -> None:
    """After a reset to a mark (not 0/0/0), the record holds that mark without a
    digest; the next promotion writes it back to a majority with an advance
    that every peer must be able to parse, or no promotion of the key succeeds."""
    lowered, _ = reset(Record(Ballot(3, "node-a"), HRS(9, 0, 1), DIGEST), Ballot(4, "node-a"), HRS(5, 0, 1))
    repair = Request(0, "advance", KEY, Ballot(5, "node-b"), lowered.hwm, lowered.digest)
    assert parse_request(wire(request_document(repair))) == repair


# --- dump pages --------------------------------------------------------------------------------


def page_of(count: int, key: KeyId = KEY, record: Record = RECORD) -> Page:
    return Page([(KeyId(key.chain_id, f"{key.key_id[:-4]}{i:04d}"), record) for i in range(count)], True)


def test_page_round_trip() -> None:
    page = Page([(KEY, RECORD), (KeyId("osmosis-1", "v"), EMPTY)], False)
    assert parse_page(wire(page_document(9, page))) == page
    assert reply_id(page_document(9, page)) == 9


def test_an_empty_page() -> None:
    assert parse_page(wire(page_document(1, Page([], False)))) == Page([], False)


def test_a_page_of_the_largest_records_fits_in_one_frame() -> None:
    """DUMP_PAGE records with every field at its largest allowed value:
    a page that does not fit a frame cannot be sent, and a rejoin needs them all."""
    page = page_of(DUMP_PAGE, LARGEST_KEY, LARGEST_RECORD)
    frame = encode_frame(page_document(MAX_COUNTER, page))
    assert parse_page(loads(frame[HEADER.size :])) == page


def test_a_page_of_typical_records_fits_in_one_frame() -> None:
    typical = Record(Ballot(10**6, "node-b"), HRS(20_000_000, 3, 2), "e" * 64)
    page = page_of(DUMP_PAGE, KeyId("cosmoshub-4", "validator-0001"), typical)
    assert len(encode_frame(page_document(10**9, page))) <= MAX_FRAME + HEADER.size


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"id": 1, "status": "OK", "more": False}, "a dump reply must hold records and more"),
        ({"id": 1, "status": "OK", "records": {}, "more": False}, "a dump reply must hold records and more"),
        ({"id": 1, "status": "OK", "records": [], "more": 0}, "a dump reply must hold records and more"),
        ({"id": 1, "status": "OK", "records": []}, "a dump reply must hold records and more"),
        ({"id": 1, "status": "ERROR", "error": "nope"}, "peer refused the request: 'nope'"),
        ({"id": 1, "status": "RECOVERING", "records": [], "more": False}, "the replica cannot be read: RECOVERING"),
        ({"id": 1, "status": "DONE", "records": [], "more": False}, "unknown status 'DONE'"),
        (
            {"id": 1, "status": "OK", "records": [{**GOOD_RECORD, "chain_id": "c", "key_id": ".k"}], "more": False},
            "key_id '.k' must be 1 to 64 of",
        ),
        (
            {
                "id": 1,
                "status": "OK",
                "records": [{"chain_id": "c", "key_id": "k", **GOOD_RECORD, "step": 9}],
                "more": False,
            },
            "step must be an integer from 0 to 3",
        ),
    ],
)
def test_malformed_pages(document: dict[str, object], message: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_page(document)
    assert message in str(caught.value)


@pytest.mark.parametrize("entry", [None, "cosmoshub-4/validator-1"], ids=["null", "text"])
def test_a_page_with_an_entry_that_is_not_a_record_is_refused(entry: object) -> None:
    """An entry that is silently skipped is a key a rejoin never sees: read as
    "nothing signed yet" on the rejoined replica."""
    document = page_document(1, Page([(KEY, RECORD)], False))
    document["records"].append(entry)  # type: ignore[union-attr]
    with pytest.raises(WireError):
        parse_page(document)


# --- frames between nodes -----------------------------------------------------------------------


def test_a_frame_is_the_big_endian_length_then_compact_json() -> None:
    assert encode_frame({"a": 1}) == b"\x00\x00\x00\x07" + b'{"a":1}'
    assert HEADER.size == 4


def test_a_frame_carries_utf8() -> None:
    frame = encode_frame({"x": "é"})
    assert frame_length(frame[:4]) == len(frame) - 4
    assert loads(frame[4:]) == {"x": "é"}


def _largest_document(size: int = MAX_FRAME) -> dict[str, object]:
    """A document whose compact JSON is exactly ``size`` bytes."""
    document = {"pad": ""}
    document["pad"] = "x" * (size - len(json.dumps(document, separators=(",", ":"))))
    return dict(document)


def test_a_frame_of_exactly_the_limit_passes() -> None:
    frame = encode_frame(_largest_document())
    assert len(frame) == MAX_FRAME + HEADER.size
    assert frame_length(frame[: HEADER.size]) == MAX_FRAME


def test_a_frame_over_the_limit_is_refused() -> None:
    with pytest.raises(WireError, match=f"^message of {MAX_FRAME + 1} bytes exceeds the frame limit$"):
        encode_frame(_largest_document(MAX_FRAME + 1))


@pytest.mark.parametrize("length", [0, MAX_FRAME + 1, 2**31, 2**32 - 1])
def test_a_header_announcing_a_bad_length_is_refused(length: int) -> None:
    # The body is never read: the header alone is refused.
    with pytest.raises(WireError, match=rf"^frame of {length} bytes refused \(limit {MAX_FRAME}\)$"):
        frame_length(HEADER.pack(length))


@pytest.mark.parametrize("length", [1, 200, MAX_FRAME])
def test_a_header_within_the_limit_is_read(length: int) -> None:
    assert frame_length(HEADER.pack(length)) == length


def test_the_largest_request_and_reply_fit_a_frame() -> None:
    largest = Request(MAX_COUNTER, "advance", LARGEST_KEY, LARGEST_RECORD.promised, LARGEST_RECORD.hwm, "f" * 128)
    assert parse_request(loads(encode_frame(request_document(largest))[4:])) == largest
    reply = Reply("OK", LARGEST_RECORD)
    assert parse_reply(loads(encode_frame(reply_document(MAX_COUNTER, reply))[4:])) == reply


# --- lines of the local API ----------------------------------------------------------------


def test_line_round_trip() -> None:
    document = {"op": "advance", "id": "x", "n": 1}
    line = encode_line(document)
    assert line == b'{"op":"advance","id":"x","n":1}\n'
    assert decode_line(line) == document


def test_a_line_of_exactly_the_limit_passes() -> None:
    document = {"pad": ""}
    document["pad"] = "x" * (MAX_LINE - len(json.dumps(document)))
    line = json.dumps(document).encode()
    assert len(line) == MAX_LINE
    assert decode_line(line) == document


def test_a_line_over_the_limit_is_refused() -> None:
    with pytest.raises(WireError, match=f"^line longer than {MAX_LINE} bytes refused$"):
        decode_line(b"x" * (MAX_LINE + 1))


@pytest.mark.parametrize("line", [b"[1, 2]\n", b'"op"\n', b"null\n", b"42\n"], ids=["list", "string", "null", "number"])
def test_a_line_that_is_not_one_object_is_refused(line: bytes) -> None:
    with pytest.raises(WireError, match="^a line must be one JSON object$"):
        decode_line(line)


@pytest.mark.parametrize(
    "line",
    [b"", b"\n", b"garbage\n", b"\xff\xfe\n", b'{"op": "status"\n', b'{"a":1}{"b":2}\n'],
    ids=["empty", "newline", "garbage", "binary", "unclosed", "two-objects"],
)
def test_a_line_that_is_not_json_is_refused(line: bytes) -> None:
    with pytest.raises(WireError, match="^a line must be one JSON object$"):
        decode_line(line)


def test_a_line_with_a_name_given_twice_is_refused() -> None:
    with pytest.raises(WireError, match="^the name 'epoch' appears twice$"):
        decode_line(b'{"op": "advance", "epoch": 1, "epoch": 9}\n')


def test_a_line_nested_too_deep_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="^the message is nested too deeply$"):
        decode_line(b"[" * (MAX_LINE // 2) + b"]" * (MAX_LINE // 2))
