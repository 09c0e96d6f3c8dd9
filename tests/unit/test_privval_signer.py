"""The signer's decisions, with the register played by the register's own
pure protocol (one in-memory replica) and real files for key and state.
The same paths run against the real trio and a real CometBFT node in
tests/process/test_privval_*.py and tests/cluster/test_privval_cluster.py."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import privval_support as support
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import Message

from highlander.privval import messages, schema, signbytes
from highlander.privval.config import ConfigError, NodeAddress, parse_config
from highlander.privval.key import KeyFileError, load_key, parse_key
from highlander.privval.rules import LastSigned
from highlander.privval.signer import Signer
from highlander.privval.state import Saver, StateError, StateFile
from highlander.signstate.client import Conflict, Refused, Session, Superseded
from highlander.signstate.config import (
    CONFIG_INVALID_ADDRESS,
    CONFIG_INVALID_VALUE,
    CONFIG_NOT_ABSOLUTE_PATH,
    CONFIG_UNKNOWN_SETTING,
)
from highlander.signstate.register import HRS, KeyId


CHAIN = "test-chain"


class OneReplica:
    """The register's contract as the signer sees it (SignerClient's
    exceptions), on one in-memory mark; the real trio is in tests/process."""

    def __init__(self) -> None:
        self.epoch, self.hwm, self.digest = 0, HRS(0, 0, 0), ""
        self.advances: list[HRS] = []

    def promote(self, key: KeyId) -> Session:
        self.epoch += 1
        return Session(self.epoch, self.hwm, self.digest)

    def advance(self, key: KeyId, epoch: int, hrs: HRS, digest: str) -> None:
        if epoch < self.epoch:
            raise Superseded("STALE_EPOCH", "")
        if hrs < self.hwm:
            raise Refused("REGRESSION", "")
        if hrs == self.hwm and digest != self.digest:
            raise Conflict("CONFLICT", "")
        self.hwm, self.digest = hrs, digest
        self.advances.append(hrs)


@pytest.fixture
def replica() -> OneReplica:
    return OneReplica()


@pytest.fixture
def signer(tmp_path: Path, replica: OneReplica) -> Signer:
    key = load_key(support.write_key(tmp_path / "priv_validator_key.json", Ed25519PrivateKey.generate()))
    made = Signer(CHAIN, key, KeyId(CHAIN, "v"), StateFile(tmp_path / "state.json"), lambda: replica)
    made.promote()
    return made


def vote_request(chain: str = CHAIN, **fields: object) -> Message:
    return support.vote_request(chain, **fields)


def proposal_request(**fields: object) -> Message:
    return support.proposal_request(CHAIN, **fields)


def verify(signer: Signer, data: bytes, signature: bytes) -> None:
    Ed25519PublicKey.from_public_bytes(signer.key.public).verify(signature, data)


def test_signed_vote_verifies_and_advanced_the_register_first(signer: Signer, replica: OneReplica) -> None:
    response = signer.handle(vote_request(), "n").signed_vote_response
    assert not response.HasField("error")
    verify(signer, signbytes.vote_sign_bytes(CHAIN, response.vote), response.vote.signature)
    assert replica.advances == [HRS(10, 0, 2)] and signer.last.hrs == HRS(10, 0, 2)
    signer.close()  # the save follows the answer
    assert StateFile(signer.state.path).load() == signer.last


def test_non_nil_precommit_gets_an_extension_signature(signer: Signer) -> None:
    request = vote_request(kind=schema.PRECOMMIT)
    request.sign_vote_request.vote.extension = b"ext"
    vote_ = signer.handle(request, "n").signed_vote_response.vote
    verify(signer, signbytes.vote_extension_sign_bytes(CHAIN, vote_), vote_.extension_signature)


def test_nil_precommit_and_prevotes_get_none(signer: Signer) -> None:
    nil = schema.Vote(type=schema.PRECOMMIT, height=10, round=0)
    request = messages.wrap("sign_vote_request", schema.SignVoteRequest(vote=nil, chain_id=CHAIN))
    assert signer.handle(request, "n").signed_vote_response.vote.extension_signature == b""
    assert signer.handle(vote_request(height=11), "n").signed_vote_response.vote.extension_signature == b""


def test_skip_extension_signing_is_honoured(signer: Signer) -> None:
    request = vote_request(kind=schema.PRECOMMIT)
    request.sign_vote_request.skip_extension_signing = True
    assert signer.handle(request, "n").signed_vote_response.vote.extension_signature == b""


def test_same_request_again_gets_the_same_signature_without_a_new_advance(signer: Signer, replica: OneReplica) -> None:
    first = signer.handle(vote_request(), "a").signed_vote_response.vote.signature
    second = signer.handle(vote_request(), "b").signed_vote_response.vote.signature
    assert first == second and len(replica.advances) == 1


def test_only_the_timestamp_differs_gets_the_stored_timestamp(signer: Signer) -> None:
    first = signer.handle(vote_request(seconds=100), "a").signed_vote_response.vote
    second = signer.handle(vote_request(seconds=300), "b").signed_vote_response.vote
    assert second.timestamp.seconds == 100 and second.signature == first.signature
    verify(signer, signbytes.vote_sign_bytes(CHAIN, second), second.signature)


def test_conflict_is_refused_and_logged(signer: Signer, caplog: pytest.LogCaptureFixture) -> None:
    signer.handle(vote_request(block=b"a"), "a")
    response = signer.handle(vote_request(block=b"b"), "b").signed_vote_response
    assert "conflicting data" in response.error.description and response.vote.signature == b""
    assert "event=refused node=b" in caplog.text and "conflicting data" in caplog.text


def test_concurrent_same_hrs_requests_for_two_blocks_yield_one_signature(signer: Signer) -> None:
    barrier = threading.Barrier(8)
    answers: list[object] = []

    def ask(block: bytes) -> None:
        barrier.wait()
        answers.append(signer.handle(vote_request(block=block), block.decode()).signed_vote_response)

    threads = [threading.Thread(target=ask, args=(b"ab"[i % 2 : i % 2 + 1],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    blocks = {signbytes.vote_sign_bytes(CHAIN, a.vote) for a in answers if not a.HasField("error")}  # type: ignore[attr-defined]
    assert len(blocks) == 1


def test_proposal_is_signed(signer: Signer) -> None:
    response = signer.handle(proposal_request(), "n").signed_proposal_response
    verify(signer, signbytes.proposal_sign_bytes(CHAIN, response.proposal), response.proposal.signature)


def test_other_chain_id_is_refused_for_every_request(signer: Signer) -> None:
    assert (
        "serves 'test-chain' only"
        in signer.handle(vote_request(chain="other"), "n").signed_vote_response.error.description
    )
    pub = messages.wrap("pub_key_request", schema.PubKeyRequest(chain_id="other"))
    assert signer.handle(pub, "n").pub_key_response.error.description
    assert signer.last.hrs == HRS(0, 0, 0)


def test_pub_key_and_ping(signer: Signer) -> None:
    pub = messages.wrap("pub_key_request", schema.PubKeyRequest(chain_id=CHAIN))
    assert signer.handle(pub, "n").pub_key_response.pub_key.ed25519 == signer.key.public
    assert signer.handle(messages.wrap("ping_request", schema.PingRequest()), "n").HasField("ping_response")


def test_unknown_request_gets_an_empty_message_and_sign_bytes_a_refusal(signer: Signer) -> None:
    assert signer.handle(schema.PrivvalMessage(), "n").WhichOneof("sum") is None
    response = messages.wrap("ping_response", schema.PingResponse())
    assert signer.handle(response, "n").WhichOneof("sum") is None
    sign_bytes = messages.wrap("sign_bytes_request", schema.SignBytesRequest(value=b"x"))
    assert "never signed" in signer.handle(sign_bytes, "n").sign_bytes_response.error.description


def test_unpromoted_signer_answers_pub_key_and_refuses_to_sign(signer: Signer) -> None:
    signer.demote()
    assert "not promoted" in signer.handle(vote_request(), "n").signed_vote_response.error.description
    pub = messages.wrap("pub_key_request", schema.PubKeyRequest(chain_id=CHAIN))
    assert signer.handle(pub, "n").pub_key_response.pub_key.ed25519 == signer.key.public


def test_superseded_signer_stops_for_good(signer: Signer, replica: OneReplica) -> None:
    signer.handle(vote_request(height=10), "n")
    replica.promote(signer.key_id)  # another node was promoted
    assert "superseded" in signer.handle(vote_request(height=11), "n").signed_vote_response.error.description
    assert signer.superseded
    replica.epoch = 0  # even if the register would accept
    assert "superseded" in signer.handle(vote_request(height=12), "n").signed_vote_response.error.description
    assert signer.last.hrs == HRS(10, 0, 2)


def test_register_conflict_is_refused_with_an_alarm(
    signer: Signer, replica: OneReplica, caplog: pytest.LogCaptureFixture
) -> None:
    # Another signer got a different vote at 10/0/2 into the register.
    replica.hwm, replica.digest = HRS(10, 0, 2), "ab" * 32
    assert "different signature" in signer.handle(vote_request(), "n").signed_vote_response.error.description
    assert "reason=register-conflict" in caplog.text


def test_nothing_at_or_below_the_promotion_mark_is_signed(tmp_path: Path, replica: OneReplica) -> None:
    replica.hwm, replica.digest = HRS(10, 0, 2), "ab" * 32
    key = load_key(support.write_key(tmp_path / "k.json", Ed25519PrivateKey.generate()))
    late = Signer(CHAIN, key, KeyId(CHAIN, "v"), StateFile(tmp_path / "s.json"), lambda: replica)
    late.promote()
    assert "not above the register's mark" in late.handle(vote_request(), "n").signed_vote_response.error.description
    assert not late.handle(vote_request(kind=schema.PRECOMMIT), "n").signed_vote_response.HasField("error")


def test_far_above_the_mark_is_refused(signer: Signer) -> None:
    signer.handle(vote_request(height=10), "n")
    response = signer.handle(vote_request(height=10 + 100_001), "n").signed_vote_response
    assert "more than 100000 above" in response.error.description


def test_unreachable_register_refuses_and_reconnects_later(tmp_path: Path, replica: OneReplica) -> None:
    calls = {"n": 0}

    def connect() -> OneReplica:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("daemon down")
        return replica

    key = load_key(support.write_key(tmp_path / "k.json", Ed25519PrivateKey.generate()))
    made = Signer(CHAIN, key, KeyId(CHAIN, "v"), StateFile(tmp_path / "s.json"), connect)
    made.promote()
    made._register = None  # as after a broken connection
    assert "did not answer" in made.handle(vote_request(), "n").signed_vote_response.error.description
    assert not made.handle(vote_request(), "n").signed_vote_response.HasField("error")


def test_a_restart_before_the_save_signs_nothing_at_that_mark(
    tmp_path: Path, signer: Signer, replica: OneReplica
) -> None:
    """A crash between the answer and the save: the file is behind, the register is not.
    The restarted signer is promoted above the register's mark, which holds that signature:
    it signs nothing more at that mark (a missed vote at worst), and goes on above it."""
    signer.handle(vote_request(), "n")
    signer.close()
    signer.state.path.unlink()  # as if the save had not happened
    again = Signer(CHAIN, signer.key, signer.key_id, StateFile(signer.state.path), lambda: replica)
    again.promote()
    for block in (b"block", b"other"):
        refused = again.handle(vote_request(block=block), "n").signed_vote_response
        assert refused.HasField("error") and not refused.vote.signature
    assert not again.handle(vote_request(height=11), "n").signed_vote_response.HasField("error")


def test_restart_keeps_the_stored_signature(tmp_path: Path, signer: Signer, replica: OneReplica) -> None:
    first = signer.handle(vote_request(), "n").signed_vote_response.vote.signature
    signer.close()  # a clean stop: the last signature is in the file
    again = Signer(CHAIN, signer.key, signer.key_id, StateFile(signer.state.path), lambda: replica)
    again.promote()
    assert again.last.hrs == HRS(10, 0, 2)
    assert again.handle(vote_request(), "n").signed_vote_response.vote.signature == first
    conflict = again.handle(vote_request(block=b"other"), "n").signed_vote_response
    assert "conflicting data" in conflict.error.description


# -- the key file ----------------------------------------------------------


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = support.write_key(tmp_path / "k.json", Ed25519PrivateKey.generate(), mode=0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(path)


def test_key_address_matches_cometbft(tmp_path: Path) -> None:
    # A key written by 'cometbft init' (v0.38.26) and the address it wrote.
    text = json.dumps(
        {
            "address": "755C7EA5A8663DEDA7E677B7B62827D9464CC789",
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": "UKFr6R1veka1FKjbiO/ZNp1OrqzvMfVXxkHAkxJzvsI="},
            "priv_key": {
                "type": "tendermint/PrivKeyEd25519",
                "value": "WBZ5k4Xtpo08epyPcY+qN8GvctoyenujSEvKaTDEDQJQoWvpHW96RrUUqNuI79k2nU6urO8x9VfGQcCTEnO+wg==",
            },
        }
    )
    assert parse_key(text, "k").address == "755C7EA5A8663DEDA7E677B7B62827D9464CC789"


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({}, "not a CometBFT"),
        ({"priv_key": {"type": "tendermint/PrivKeySecp256k1", "value": "AA=="}}, "not supported"),
        ({"priv_key": {"type": "tendermint/PrivKeyEd25519", "value": "!!"}}, "not base64"),
        (
            {"priv_key": {"type": "tendermint/PrivKeyEd25519", "value": base64.b64encode(bytes(32)).decode()}},
            "64 bytes",
        ),
        (
            {"priv_key": {"type": "tendermint/PrivKeyEd25519", "value": base64.b64encode(bytes(64)).decode()}},
            "does not match",
        ),
    ],
)
def test_bad_key_files(document: dict[str, object], complaint: str) -> None:
    with pytest.raises(KeyFileError, match=complaint):
        parse_key(json.dumps(document), "k")


# -- the state file --------------------------------------------------------


def test_state_is_never_lowered_and_a_damaged_file_is_an_error(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "s.json")
    high = LastSigned(HRS(10, 0, 2), b"\x01bytes", b"sig")
    state.save(LastSigned(HRS(0, 0, 0)), high)
    assert state.load() == high
    with pytest.raises(StateError, match="refusing to lower"):
        state.save(high, LastSigned(HRS(9, 0, 3), b"x", b"y"))
    assert os.stat(state.path).st_mode & 0o777 == 0o600
    state.path.write_text('{"height": ')
    with pytest.raises(StateError, match="never delete it"):
        state.load()


class GatedState(StateFile):
    """A state file whose saves wait at a gate, and that fails when told to."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_next = False
        self.saved: list[HRS] = []

    def save(self, current: LastSigned, new: LastSigned) -> None:
        self.entered.set()
        self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise StateError(f"{self.path}: cannot write: disk full")
        super().save(current, new)
        self.saved.append(new.hrs)


def signed_at(height: int) -> LastSigned:
    return LastSigned(HRS(height, 0, 1), b"bytes %d" % height, b"sig %d" % height)


def test_saver_writes_only_the_newest_of_what_waited(tmp_path: Path) -> None:
    state = GatedState(tmp_path / "s.json")
    saver = Saver(state, LastSigned(HRS(0, 0, 0)), "k")
    saver.submit(signed_at(1))
    assert state.entered.wait(10)  # height 1 is being written
    for height in (2, 3, 4):
        saver.submit(signed_at(height))
    state.gate.set()
    saver.close()
    assert state.saved == [HRS(1, 0, 1), HRS(4, 0, 1)]
    assert state.load() == signed_at(4)


def test_saver_logs_a_failed_save_and_the_next_one_lands(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = GatedState(tmp_path / "s.json")
    state.fail_next = True
    saver = Saver(state, LastSigned(HRS(0, 0, 0)), "k")
    saver.submit(signed_at(1))
    assert state.entered.wait(10)
    saver.submit(signed_at(2))
    state.gate.set()
    saver.close()
    assert "event=state-not-saved" in caplog.text and "disk full" in caplog.text
    assert state.load() == signed_at(2)


# -- the configuration -----------------------------------------------------

BASE = {
    "chain_id": CHAIN,
    "key_file": "/k.json",
    "state_file": "/s.json",
    "register": "/r.sock",
    "nodes": ["tcp://127.0.0.1:26659", "unix:///run/p.sock", "tcp://[::1]:1"],
}


def test_config_parses_nodes() -> None:
    config = parse_config(BASE)
    assert config.nodes == (
        NodeAddress("tcp", "127.0.0.1", 26659),
        NodeAddress("unix", path="/run/p.sock"),
        NodeAddress("tcp", "::1", 1),
    )
    assert [str(node) for node in config.nodes] == ["tcp://127.0.0.1:26659", "unix:///run/p.sock", "tcp://[::1]:1"]
    assert config.key("ABC") == KeyId(CHAIN, "ABC") and config.max_height_gap == 100_000
    assert config.control is None and parse_config({**BASE, "control": "/run/p.sock"}).control == Path("/run/p.sock")


@pytest.mark.parametrize(
    ("change", "code", "path"),
    [
        ({"nodes": []}, CONFIG_INVALID_VALUE, "nodes"),
        ({"nodes": ["tcp://a:1", "http://x:1"]}, CONFIG_INVALID_ADDRESS, "nodes[1]"),
        ({"nodes": ["unix://relative"]}, CONFIG_INVALID_ADDRESS, "nodes[0]"),
        ({"nodes": ["tcp://a:99999"]}, CONFIG_INVALID_ADDRESS, "nodes[0]"),
        ({"nodes": ["tcp://a:1", "tcp://a:1"]}, CONFIG_INVALID_VALUE, "nodes"),
        ({"chain_id": ""}, CONFIG_INVALID_VALUE, "chain_id"),
        ({"chain_id": "../x"}, CONFIG_INVALID_VALUE, "chain_id"),
        ({"key_file": "relative"}, CONFIG_NOT_ABSOLUTE_PATH, "key_file"),
        ({"max_height_gap": 0}, CONFIG_INVALID_VALUE, "max_height_gap"),
        ({"timeout": 0.1}, CONFIG_INVALID_VALUE, "timeout"),
        ({"colour": "red"}, CONFIG_UNKNOWN_SETTING, ""),
        ({"key_id": 7}, CONFIG_INVALID_VALUE, "key_id"),
        ({"key_id": "../x"}, CONFIG_INVALID_VALUE, "key_id"),
        ({"control": "privval.sock"}, CONFIG_NOT_ABSOLUTE_PATH, "control"),
    ],
)
def test_config_errors_name_the_field(change: dict[str, object], code: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **change}, "privval.toml")
    assert [(p.code, p.path, p.source) for p in caught.value.problems] == [(code, path, "privval.toml")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"nodes": ["unix://relative"]},
            "nodes[0]: 'unix://relative' must name an absolute socket path, as unix:///run/x.sock",
        ),
        ({"nodes": ["tcp://a:1", "tcp://a:1"]}, "nodes lists the same node twice"),
        ({"key_id": "../x"}, "key_id '../x' must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with '.'"),
        ({"control": "privval.sock"}, "control must be an absolute path, got 'privval.sock'"),
    ],
)
def test_what_the_operator_reads(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **change}, "privval.toml")
    assert str(caught.value) == f"privval.toml: {message}"
