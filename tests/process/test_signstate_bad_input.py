"""Hostile and broken input against real sign-state daemons.

Three ``highlander signstate serve`` processes run on loopback (a
:class:`~highlander.lab.replicas.LoopbackReplicas`). The tests speak to node-a's peer port and to its local
signer socket directly, byte by byte, the way a buggy or malicious peer or
signer would:

- (a) as an authenticated peer (node-b's certificate): broken frames and
  requests with each field wrong are answered with ERROR and a message (or,
  when the framing is lost, the connection is dropped);
- (b) unauthenticated: plain TCP, TLS without a certificate, a certificate of
  another CA, a cluster certificate of a node that is not a peer: rejected;
- (c) replayed: the same advance sent again, an older one after a newer one,
  one of a superseded ballot: nothing moves;
- (d) afterwards the daemon still serves promote and advance.

Every attack carries a request that *would* move node-a's record if it were
accepted (a higher mark at a ballot of the sender's), and node-a's record is
compared before and after, both through the signer API and on disk (its
log's bytes: any change appends to it).
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from signstate_support import as_peer, exchange, frame, read_frame, tcp, tls

from highlander.adapters.waiting import wait_until
from highlander.lab.replicas import LoopbackReplicas
from highlander.signstate import pki
from highlander.signstate.client import SignerClient
from highlander.signstate.register import HRS, MAX_COUNTER, MAX_HEIGHT, Ballot, KeyId, Record
from highlander.signstate.wire import HEADER, MAX_FRAME, MAX_LINE, Request, request_document

pytestmark = pytest.mark.signstate

TARGET = "node-a"
TIMEOUT = 10.0
CHAIN = "bad-input-1"
_names = itertools.count(1)


# --- the replicas ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackReplicas]:
    """Three daemons for the whole module; stopped by PID even when a test fails."""
    replicas = LoopbackReplicas(tmp_path_factory.mktemp("signstate-bad-input"), timeout=2.0)
    try:
        replicas.start()
        yield replicas
    finally:
        replicas.stop()


class Marked(NamedTuple):
    """A key promoted and advanced through node-a's signer API, and its state then."""

    key: KeyId
    epoch: int
    hwm: HRS
    snapshot: tuple[object, ...]

    @property
    def ballot(self) -> Ballot:
        return Ballot(self.epoch, TARGET)


def log_file(replicas: LoopbackReplicas, node: str = TARGET) -> Path:
    return replicas.state_dir(node) / "log"


def snapshot(replicas: LoopbackReplicas, key: KeyId) -> tuple[object, ...]:
    """node-a's record as its signer API reports it, and its log's bytes."""
    with SignerClient(replicas.socket(TARGET), timeout=TIMEOUT) as client:
        records = client.status(key)
    return records[TARGET], log_file(replicas).read_bytes()


def assert_unchanged(replicas: LoopbackReplicas, marked: Marked) -> None:
    assert snapshot(replicas, marked.key) == marked.snapshot, "node-a's record changed"


def assert_serving(replicas: LoopbackReplicas) -> None:
    """node-a's process is alive, and promote + advance through it succeed."""
    process = replicas.processes[TARGET]
    assert process.poll() is None, f"node-a exited with {process.returncode}: {replicas.log_tail(TARGET)}"
    key = KeyId(CHAIN, f"alive-{next(_names)}")
    with SignerClient(replicas.socket(TARGET), timeout=TIMEOUT) as client:
        session = client.promote(key)
        client.advance(key, session.epoch, HRS(1, 0, 1), "01")
        client.advance(key, session.epoch, HRS(1, 0, 2), "02")
        assert client.status(key)[TARGET] == Record(Ballot(session.epoch, TARGET), HRS(1, 0, 2), "02")


@pytest.fixture
def marked(replicas: LoopbackReplicas) -> Iterator[Marked]:
    """A fresh key at mark 100/0/1; afterwards node-a must still serve."""
    key = KeyId(CHAIN, f"key-{next(_names)}")
    with SignerClient(replicas.socket(TARGET), timeout=TIMEOUT) as client:
        session = client.promote(key)
        client.advance(key, session.epoch, HRS(100, 0, 1), "aa")
    yield Marked(key, session.epoch, HRS(100, 0, 1), snapshot(replicas, key))
    assert_serving(replicas)


def log_text(replicas: LoopbackReplicas, node: str = TARGET) -> str:
    return replicas.log(node).read_text(errors="replace")


# --- speaking to node-a's peer port ----------------------------------------------------------


def advance_request(
    marked: Marked, request_id: int = 1, sender: str = "node-b", **changes: object
) -> dict[str, object]:
    """A valid advance from ``sender`` one step above ``marked``'s mark, at the
    sender's ballot of the same counter: it would move the record."""
    hrs = marked.hwm._replace(step=marked.hwm.step + 1)
    ballot = Ballot(marked.epoch, sender)
    document = request_document(Request(request_id, "advance", marked.key, ballot, hrs, "bb"))
    document.update(changes)
    return {k: v for k, v in document.items() if v is not DROP}


DROP = object()


def assert_dropped(sock: ssl.SSLSocket | socket.socket) -> None:
    """The daemon closes the connection: no further frame comes."""
    with pytest.raises((EOFError, OSError)):
        read_frame(sock)


# --- (a) an authenticated peer sending garbage ------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (HEADER.pack(8) + b'{"v":2,"', "frame is not valid UTF-8 JSON"),
        (HEADER.pack(9) + b"{not json", "frame is not valid UTF-8 JSON"),
        (HEADER.pack(4) + b"\xff\xfe\xfd\xfc", "frame is not valid UTF-8 JSON"),
        (HEADER.pack(MAX_FRAME + 1), f"frame of {MAX_FRAME + 1} bytes refused (limit {MAX_FRAME})"),
        (HEADER.pack(2**32 - 1), f"frame of {2**32 - 1} bytes refused (limit {MAX_FRAME})"),
        (HEADER.pack(0), f"frame of 0 bytes refused (limit {MAX_FRAME})"),
    ],
    ids=["json-fragment", "malformed-json", "not-utf8", "oversized", "oversized-4g", "empty"],
)
def test_framing_errors_are_answered_then_dropped(
    replicas: LoopbackReplicas, marked: Marked, data: bytes, message: str
) -> None:
    with as_peer(replicas) as sock:
        answer = exchange(sock, data)
        assert answer["id"] is None and answer["status"] == "ERROR" and message in str(answer["error"]), answer
        if "JSON" not in message:  # a whole frame that is not JSON keeps the framing; a bad length loses it
            assert_dropped(sock)
    assert_unchanged(replicas, marked)


def test_truncated_frame_then_close_changes_nothing(replicas: LoopbackReplicas, marked: Marked) -> None:
    body = json.dumps(advance_request(marked)).encode()
    with as_peer(replicas) as sock:
        sock.sendall(HEADER.pack(len(body)) + body[: len(body) // 2])
    # and a frame cut inside its header
    with as_peer(replicas) as sock:
        sock.sendall(HEADER.pack(len(body))[:2])
    assert_unchanged(replicas, marked)


def test_a_complete_frame_after_a_truncated_one_on_a_new_connection_works(
    replicas: LoopbackReplicas, marked: Marked
) -> None:
    body = json.dumps(advance_request(marked)).encode()
    with as_peer(replicas) as sock:
        sock.sendall(HEADER.pack(len(body)) + body[:-1])
    with as_peer(replicas) as sock:
        status = request_document(Request(7, "status", marked.key))
        answer = exchange(sock, frame(status))
    assert answer["status"] == "OK" and answer["id"] == 7
    assert_unchanged(replicas, marked)


def test_deeply_nested_frame_is_refused_cleanly(replicas: LoopbackReplicas, marked: Marked) -> None:
    before = log_text(replicas).count("Traceback")
    body = b"[" * 8000 + b"]" * 8000
    assert len(body) <= MAX_FRAME
    with as_peer(replicas) as sock:
        sock.sendall(HEADER.pack(len(body)) + body)
        try:
            answer = read_frame(sock)
        except (EOFError, OSError):
            answer = None  # dropped: allowed for a framing error
        if answer is not None:
            assert isinstance(answer, dict) and answer["status"] == "ERROR" and answer["error"]
    assert_unchanged(replicas, marked)
    # An ERROR answer or a quiet hang-up, not an unhandled exception in the daemon.
    # (A handler thread's traceback is printed after its socket is closed: give it time.)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert log_text(replicas).count("Traceback") == before, replicas.log_tail(TARGET, 30)
        time.sleep(0.05)


# Each of these is a valid advance above node-a's mark with one thing wrong.
M = MAX_COUNTER
BAD_REQUESTS: list[tuple[str, dict[str, object], str]] = [
    ("array", {"__document__": [1, 2, 3]}, "a request must be a JSON object"),
    ("string", {"__document__": "advance"}, "a request must be a JSON object"),
    ("version-1", {"v": 1}, "protocol version 1 is not supported (this node speaks 2)"),
    ("version-missing", {"v": DROP}, "protocol version None is not supported"),
    ("version-text", {"v": "2"}, "protocol version '2' is not supported"),
    ("op-unknown", {"op": "restore"}, "op must be one of promise, advance, status, dump, reset, got 'restore'"),
    ("op-signer", {"op": "promote"}, "op must be one of promise, advance, status, dump, reset, got 'promote'"),
    ("op-missing", {"op": DROP}, "op must be one of promise, advance, status, dump, reset, got None"),
    ("id-text", {"id": "1"}, f"id must be an integer from 0 to {M}, got '1'"),
    ("id-negative", {"id": -5}, f"id must be an integer from 0 to {M}, got -5"),
    ("ballot-int", {"ballot": 1}, "ballot must be [counter, node], got 1"),
    ("ballot-no-owner", {"ballot": [1]}, "ballot must be [counter, node], got [1]"),
    ("ballot-text", {"ballot": ["1", "node-b"]}, f"ballot must be an integer from 0 to {M}, got '1'"),
    ("ballot-float", {"ballot": [1.0, "node-b"]}, f"ballot must be an integer from 0 to {M}, got 1.0"),
    ("ballot-bool", {"ballot": [True, "node-b"]}, f"ballot must be an integer from 0 to {M}, got True"),
    ("ballot-negative", {"ballot": [-1, "node-b"]}, f"ballot must be an integer from 0 to {M}, got -1"),
    ("ballot-zero", {"ballot": [0, "node-b"]}, f"a ballot is a counter from 1 to {M}"),
    ("ballot-huge", {"ballot": [2**63 - 1, "node-b"]}, f"ballot must be an integer from 0 to {M}, got {2**63 - 1}"),
    ("ballot-no-node", {"ballot": [1, ""]}, f"a ballot is a counter from 1 to {M}"),
    ("ballot-missing", {"ballot": DROP}, "ballot must be [counter, node], got None"),
    ("ballot-of-node-c", {"ballot": [1, "node-c"]}, "ballot 1@node-c belongs to node-c, not to node-b"),
    ("ballot-of-node-a", {"ballot": [1, "node-a"]}, "ballot 1@node-a belongs to node-a, not to node-b"),
    ("height-text", {"height": "101"}, f"height must be an integer from 0 to {MAX_HEIGHT}, got '101'"),
    ("height-list", {"height": [101]}, f"height must be an integer from 0 to {MAX_HEIGHT}, got [101]"),
    ("height-zero", {"height": 0}, f"height must be 1 to {MAX_HEIGHT} and round 0 to"),
    ("height-huge", {"height": 2**63 - 1}, f"height must be an integer from 0 to {MAX_HEIGHT}"),
    ("round-negative", {"round": -1}, "round must be an integer from 0 to 2147483647, got -1"),
    ("step-zero", {"step": 0}, "step must be 1 (propose), 2 (prevote) or 3 (precommit), got 0"),
    ("step-four", {"step": 4}, "step must be 1 (propose), 2 (prevote) or 3 (precommit), got 4"),
    ("digest-upper", {"digest": "BB"}, "digest must be 1 to 128 lower-case hex digits"),
    ("digest-long", {"digest": "b" * 129}, "digest must be 1 to 128 lower-case hex digits"),
    ("digest-not-hex", {"digest": "zz"}, "digest must be 1 to 128 lower-case hex digits"),
    ("digest-number", {"digest": 187}, "digest must be a string, got 187"),
    ("chain-missing", {"chain_id": DROP}, "chain_id must be a string, got None"),
    ("key-traversal", {"key_id": "../../node-b/state"}, "key_id '../../node-b/state' must be 1 to 64 of"),
    ("key-number", {"key_id": 5}, "key_id must be a string, got 5"),
]


@pytest.mark.parametrize("changes, message", [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_is_answered_with_error_and_changes_nothing(
    replicas: LoopbackReplicas, marked: Marked, changes: dict[str, object], message: str
) -> None:
    document = changes["__document__"] if "__document__" in changes else advance_request(marked, 41, **changes)
    with as_peer(replicas) as sock:
        answer = exchange(sock, frame(document))
        assert answer["status"] == "ERROR"
        assert message in str(answer["error"]), answer
        # The id is echoed when it was a usable one, so a coordinator can match it.
        expected_id = document.get("id") if isinstance(document, dict) else None
        assert answer["id"] == (
            expected_id if isinstance(expected_id, int) and not isinstance(expected_id, bool) else None
        )
        # The connection stays usable: a request error does not lose the framing.
        status = exchange(sock, frame(request_document(Request(42, "status", marked.key))))
        assert status["status"] == "OK" and status["id"] == 42
    assert_unchanged(replicas, marked)


def test_many_bad_requests_on_one_connection(replicas: LoopbackReplicas, marked: Marked) -> None:
    with as_peer(replicas) as sock:
        for number, (_, changes, message) in enumerate(BAD_REQUESTS * 3):
            document = changes.get("__document__") or advance_request(marked, number, **changes)
            answer = exchange(sock, frame(document))
            assert answer["status"] == "ERROR" and message in str(answer["error"])
    assert_unchanged(replicas, marked)


# --- (b) unauthenticated ----------------------------------------------------------------------------


def _no_answer(sock: socket.socket, data: bytes) -> None:
    """Send ``data``; the daemon must hang up without any answer."""
    try:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    except (ssl.SSLError, OSError):
        return  # refused in the handshake, or reset
    assert b"status" not in received, f"an unauthenticated client got an answer: {received!r}"


def assert_rejected(replicas: LoopbackReplicas, connect: Callable[[], socket.socket], data: bytes) -> None:
    """``data`` sent over ``connect()`` gets no answer, and node-a logs that *it*
    rejected the client (not merely that the client gave up on its own)."""
    before = log_text(replicas).count("event=rejected")
    try:
        sock = connect()
    except (ssl.SSLError, OSError):
        pass  # refused during the handshake
    else:
        with sock:
            _no_answer(sock, data)
    wait_until(
        lambda: log_text(replicas).count("event=rejected") > before, timeout=TIMEOUT, what="node-a to log the rejection"
    )


def foreign_context(replicas: LoopbackReplicas, tmp_path: Path, node: str) -> ssl.SSLContext:
    """A client that trusts the cluster CA (so it does not abort first) but
    presents ``node``'s certificate issued by another CA."""
    other = tmp_path / "other-ca"
    pki.init_ca(other, "evil-cluster")
    pki.issue(other, node, addresses=["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cafile=str(replicas.pki_dir / "ca.crt"))
    key_path, cert_path = pki.node_paths(other, node)
    context.load_cert_chain(str(cert_path), str(key_path))
    return context


def no_certificate_context(replicas: LoopbackReplicas) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cafile=str(replicas.pki_dir / "ca.crt"))
    return context


def test_plain_tcp_is_rejected(replicas: LoopbackReplicas, marked: Marked) -> None:
    assert_rejected(replicas, lambda: tcp(replicas), frame(advance_request(marked)))
    assert_unchanged(replicas, marked)


def test_tls_without_a_client_certificate_is_rejected(replicas: LoopbackReplicas, marked: Marked) -> None:
    assert_rejected(replicas, lambda: tls(replicas, no_certificate_context(replicas)), frame(advance_request(marked)))
    assert_unchanged(replicas, marked)


def test_certificate_of_another_ca_is_rejected(replicas: LoopbackReplicas, marked: Marked, tmp_path: Path) -> None:
    context = foreign_context(replicas, tmp_path, "node-b")  # the right name, the wrong CA
    assert_rejected(replicas, lambda: tls(replicas, context), frame(advance_request(marked)))
    assert_unchanged(replicas, marked)
    assert "event=rejected" in log_text(replicas)


def test_cluster_certificate_of_a_node_that_is_not_a_peer_is_rejected(
    replicas: LoopbackReplicas, marked: Marked
) -> None:
    key_path, _ = pki.node_paths(replicas.pki_dir, "node-x")
    if not key_path.exists():
        pki.issue(replicas.pki_dir, "node-x", addresses=["127.0.0.1"])
    assert_rejected(replicas, lambda: as_peer(replicas, "node-x"), frame(advance_request(marked)))
    assert_unchanged(replicas, marked)
    assert "name=node-x reason=not-a-configured-peer" in log_text(replicas)


def test_the_nodes_own_certificate_is_not_a_peer(replicas: LoopbackReplicas, marked: Marked) -> None:
    assert_rejected(replicas, lambda: as_peer(replicas, "node-a"), frame(advance_request(marked)))
    assert_unchanged(replicas, marked)


def test_positive_control_the_same_request_from_a_peer_is_applied(replicas: LoopbackReplicas, marked: Marked) -> None:
    """What the rejected clients sent would have moved the record: the tests above can fail."""
    with as_peer(replicas, "node-c") as sock:
        answer = exchange(sock, frame(advance_request(marked, 5, sender="node-c")))
    assert answer["status"] == "OK" and answer["id"] == 5
    record, _ = snapshot(replicas, marked.key)
    assert record == Record(Ballot(marked.epoch, "node-c"), HRS(100, 0, 2), "bb")


# --- (c) replay ---------------------------------------------------------------------------------------


def test_replayed_advance_changes_nothing(replicas: LoopbackReplicas, marked: Marked) -> None:
    step2 = frame(advance_request(marked, 1))  # 100/0/2
    step3 = frame(advance_request(marked, 2, step=3))  # 100/0/3
    with as_peer(replicas) as sock:
        first = exchange(sock, step2)
        assert first["status"] == "OK"
        applied = snapshot(replicas, marked.key)
        assert applied[0] == Record(Ballot(marked.epoch, "node-b"), HRS(100, 0, 2), "bb")

        # The identical bytes again, on the same and on a new connection: an idempotent OK.
        assert exchange(sock, step2) == first
    with as_peer(replicas) as sock:
        assert exchange(sock, step2) == first
    assert snapshot(replicas, marked.key) == applied  # not even written again

    # An older request after a newer one: REGRESSION, nothing moves back.
    with as_peer(replicas) as sock:
        assert exchange(sock, step3)["status"] == "OK"
        newer = snapshot(replicas, marked.key)
        replay = exchange(sock, step2)
    assert replay["status"] == "REGRESSION"
    assert replay["record"]["step"] == 3  # type: ignore[index]
    assert snapshot(replicas, marked.key) == newer


def test_replay_from_a_superseded_ballot_changes_nothing(replicas: LoopbackReplicas, marked: Marked) -> None:
    captured = frame(advance_request(marked, 9, height=200))  # would jump ahead, at an old ballot of node-b
    promise = frame(request_document(Request(10, "promise", marked.key, Ballot(marked.epoch, "node-b"))))
    with SignerClient(replicas.socket(TARGET), timeout=TIMEOUT) as client:
        session = client.promote(marked.key)  # a failover: a newer ballot on a majority
    assert session.epoch > marked.epoch and session.hwm == marked.hwm
    promoted = snapshot(replicas, marked.key)
    with as_peer(replicas) as sock:
        stale = exchange(sock, captured)
        refused = exchange(sock, promise)
    assert stale["status"] == "STALE_EPOCH" and refused["status"] == "REFUSED"
    assert snapshot(replicas, marked.key) == promoted


def test_replayed_promise_changes_nothing(replicas: LoopbackReplicas, marked: Marked) -> None:
    promise = frame(request_document(Request(3, "promise", marked.key, Ballot(marked.epoch, "node-b"))))
    with as_peer(replicas) as sock:
        assert exchange(sock, promise)["status"] == "OK"  # node-b's ballot of that counter is newer
        promised = snapshot(replicas, marked.key)
        assert exchange(sock, promise)["status"] == "REFUSED"  # promised already
        assert exchange(sock, promise)["status"] == "REFUSED"
    assert snapshot(replicas, marked.key) == promised


# --- the local signer API ---------------------------------------------------------------------------


class Line:
    """A raw connection to node-a's signer socket."""

    def __init__(self, replicas: LoopbackReplicas) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(str(replicas.socket(TARGET)))
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> dict[str, object] | None:
        self.sock.sendall(data)
        line = self.reader.readline(MAX_LINE + 1)
        return json.loads(line) if line else None

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def signer_advance(marked: Marked, **changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "op": "advance",
        "chain_id": marked.key.chain_id,
        "key_id": marked.key.key_id,
        "epoch": marked.epoch,
        "height": 100,
        "round": 0,
        "step": 2,
        "digest": "bb",
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not DROP}


def line(document: object) -> bytes:
    return json.dumps(document).encode() + b"\n"


BAD_LINES: list[tuple[str, object, str]] = [
    ("garbage", b"garbage\n", "a line must be one JSON object"),
    ("empty", b"\n", "a line must be one JSON object"),
    ("not-utf8", b"\xff\xfe\xfd\n", "a line must be one JSON object"),
    ("array", b"[1, 2]\n", "a line must be one JSON object"),
    ("unclosed", b'{"op": "advance"\n', "a line must be one JSON object"),
    ("op-missing", {"id": 1}, "op must be one of"),
    ("op-unknown", {"op": "sign", "chain_id": CHAIN, "key_id": "k"}, "got 'sign'"),
    ("op-peer", {"op": "promise", "chain_id": CHAIN, "key_id": "k", "epoch": 99}, "got 'promise'"),
    ("promote-no-key", {"op": "promote", "chain_id": CHAIN}, "key_id must be a string, got None"),
    ("promote-bad-key", {"op": "promote", "chain_id": CHAIN, "key_id": "../x"}, "key_id '../x' must be 1 to 64"),
    ("status-no-chain", {"op": "status", "key_id": "k"}, "chain_id must be a string, got None"),
]
BAD_ADVANCES: list[tuple[str, dict[str, object], str]] = [
    ("epoch-missing", {"epoch": DROP}, f"epoch must be an integer from 1 to {M}, got None"),
    ("epoch-text", {"epoch": "1"}, f"epoch must be an integer from 1 to {M}, got '1'"),
    ("epoch-zero", {"epoch": 0}, f"epoch must be an integer from 1 to {M}, got 0"),
    ("epoch-negative", {"epoch": -3}, f"epoch must be an integer from 1 to {M}, got -3"),
    ("epoch-bool", {"epoch": True}, f"epoch must be an integer from 1 to {M}, got True"),
    ("epoch-huge", {"epoch": 2**63 - 1}, f"epoch must be an integer from 1 to {M}"),
    ("height-missing", {"height": DROP}, f"height must be an integer from 0 to {MAX_HEIGHT}, got None"),
    ("height-huge", {"height": 2**63 - 1}, f"height must be an integer from 0 to {MAX_HEIGHT}"),
    ("round-float", {"round": 0.5}, "round must be an integer"),
    ("step-zero", {"step": 0}, "step must be 1 (propose), 2 (prevote) or 3 (precommit), got 0"),
    ("digest-missing", {"digest": DROP}, "digest must be a string, got None"),
    ("digest-upper", {"digest": "BB"}, "digest must be 1 to 128 lower-case hex digits"),
    ("key-missing", {"key_id": DROP}, "key_id must be a string, got None"),
    ("duplicate-name", {"__line__": b'{"op":"advance","op":"status"}\n'}, "the name 'op' appears twice"),
]


def _check_error(answer: dict[str, object] | None, message: str) -> None:
    assert answer is not None, "the daemon hung up instead of answering"
    assert answer["status"] == "ERROR", answer
    assert message in str(answer["error"]), answer


@pytest.mark.parametrize("data, message", [b[1:] for b in BAD_LINES], ids=[b[0] for b in BAD_LINES])
def test_signer_api_bad_line(replicas: LoopbackReplicas, marked: Marked, data: object, message: str) -> None:
    conn = Line(replicas)
    try:
        _check_error(conn.send(data if isinstance(data, bytes) else line(data)), message)
        # the same connection still serves
        answer = conn.send(line({"op": "status", "chain_id": CHAIN, "key_id": marked.key.key_id, "id": "s"}))
        assert answer is not None and answer["status"] == "OK" and answer["id"] == "s"
    finally:
        conn.close()
    assert_unchanged(replicas, marked)


@pytest.mark.parametrize("changes, message", [b[1:] for b in BAD_ADVANCES], ids=[b[0] for b in BAD_ADVANCES])
def test_signer_api_bad_advance(
    replicas: LoopbackReplicas, marked: Marked, changes: dict[str, object], message: str
) -> None:
    conn = Line(replicas)
    try:
        if "__line__" in changes:
            _check_error(conn.send(changes["__line__"]), message)  # type: ignore[arg-type]
            return
        answer = conn.send(line({**signer_advance(marked, **changes), "id": 77}))
        _check_error(answer, message)
        assert answer is not None and answer["id"] == 77
    finally:
        conn.close()
    assert_unchanged(replicas, marked)


def test_signer_api_over_long_line(replicas: LoopbackReplicas, marked: Marked) -> None:
    padding = "x" * (MAX_LINE + 100)
    conn = Line(replicas)
    try:
        answer = conn.send(line(signer_advance(marked, padding=padding)))
        _check_error(answer, f"line longer than {MAX_LINE} bytes")
        # the line's framing is lost: the daemon hangs up
        assert conn.reader.readline() == b""
    finally:
        conn.close()
    assert_unchanged(replicas, marked)


def test_signer_api_deeply_nested_line(replicas: LoopbackReplicas, marked: Marked) -> None:
    conn = Line(replicas)
    try:
        _check_error(conn.send(b"[" * 10_000 + b"\n"), "nested too deeply")
    finally:
        conn.close()
    assert_unchanged(replicas, marked)


def test_signer_api_many_bad_lines_on_one_connection(replicas: LoopbackReplicas, marked: Marked) -> None:
    conn = Line(replicas)
    try:
        for _, data, message in BAD_LINES * 3:
            _check_error(conn.send(data if isinstance(data, bytes) else line(data)), message)
        for _, changes, message in BAD_ADVANCES * 3:
            data = changes.get("__line__") or line(signer_advance(marked, **changes))
            _check_error(conn.send(data), message)  # type: ignore[arg-type]
    finally:
        conn.close()
    assert_unchanged(replicas, marked)


# --- (d) afterwards -----------------------------------------------------------------------------------


def test_after_everything_the_daemons_still_serve(replicas: LoopbackReplicas) -> None:
    assert_serving(replicas)
    for node in ("node-b", "node-c"):
        assert replicas.processes[node].poll() is None, replicas.log_tail(node)
    key = KeyId(CHAIN, "final")
    with SignerClient(replicas.socket(TARGET), timeout=TIMEOUT) as client:
        session = client.promote(key)
        client.advance(key, session.epoch, HRS(5, 0, 1), "05")
        records = client.status(key)
    expected = Record(Ballot(session.epoch, TARGET), HRS(5, 0, 1), "05")
    assert records == {node: expected for node in ("node-a", "node-b", "node-c")}
