"""Signer state files: CometBFT priv_validator_state.json and the tmkms
consensus state file, read, written back byte for byte, refused when bad,
and written durably."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from highlander.adapters.files import write_file
from highlander.signstate.formats import (
    SignState,
    StateFileError,
    digest_of,
    dump_cometbft,
    dump_tmkms,
    is_nil_block_id,
    nil_block_id,
    parse_cometbft,
    parse_tmkms,
)
from highlander.signstate.register import HRS, ZERO, check_mark

# --- CometBFT fixtures ----------------------------------------------------
# Shaped after cometbft/cometbft privval/file.go FilePVLastSignState, saved
# with libs/json MarshalIndent(lss, "", "  "): height quoted (int64), round
# and step bare numbers, signature base64, signbytes upper-case hex (HexBytes),
# both omitted while nil, no trailing newline.

# A fresh node: NewFilePV leaves step at stepNone (0), height 0, round 0.
COMET_INITIAL = '{\n  "height": "0",\n  "round": 0,\n  "step": 0\n}'

# Sign bytes of a length-delimited CanonicalVote (precommit, height 1234567,
# round 0, a block id, a timestamp, chain "cosmoshub-4").
PRECOMMIT_SIGNBYTES = (
    "7008021187D612000000000022480A20A5F3157D747E33200E1CBD05D0E2BBA973D9E06F0C64"
    "C988D87356C685DEDBF2122408011220CD287645BEE39CC0928B6619D19BBA48934084E1ABD8"
    "921D07739D70B7EA5A162A0C08BFC2BDAE0610AB8BBBF902320B636F736D6F736875622D34"
)
PRECOMMIT_SIGNATURE = "AHPsJm1PtK2/PRBKpxT58RAy/Yq22IKfxAtSyG9khdeSjMLr1GRvP+PzdL4R2QW/S+J1+obziJ2CqffcXkHdMg=="
COMET_PRECOMMIT = (
    "{\n"
    '  "height": "1234567",\n'
    '  "round": 0,\n'
    '  "step": 3,\n'
    f'  "signature": "{PRECOMMIT_SIGNATURE}",\n'
    f'  "signbytes": "{PRECOMMIT_SIGNBYTES}"\n'
    "}"
)

# A proposal (CanonicalProposal, pol_round -1) in round 2 of the next height.
PROPOSAL_SIGNBYTES = (
    "7908201188D612000000000021FFFFFFFFFFFFFFFF2A480A20A5F3157D747E33200E1CBD05D0"
    "E2BBA973D9E06F0C64C988D87356C685DEDBF2122408011220CD287645BEE39CC0928B6619D1"
    "9BBA48934084E1ABD8921D07739D70B7EA5A16320C08BFC2BDAE0610AB8BBBF9023A0B636F73"
    "6D6F736875622D34"
)
PROPOSAL_SIGNATURE = "Ruwuz0MFQWcfKTFN6uR7ixvNeiptEgBFt1hhW/BG+wbr/u/z+t1runnQtql1pNgDr7eJB6V7MesHtlM+hmFBmg=="
COMET_PROPOSAL = (
    "{\n"
    '  "height": "1234568",\n'
    '  "round": 2,\n'
    '  "step": 1,\n'
    f'  "signature": "{PROPOSAL_SIGNATURE}",\n'
    f'  "signbytes": "{PROPOSAL_SIGNBYTES}"\n'
    "}"
)

# A state with a mark but no signature (e.g. after an operator raised the
# height by hand): omitempty drops both byte fields.
COMET_BARE_MARK = '{\n  "height": "99",\n  "round": 1,\n  "step": 2\n}'

COMET_FILES = [COMET_INITIAL, COMET_PRECOMMIT, COMET_PROPOSAL, COMET_BARE_MARK]

# --- tmkms fixtures -------------------------------------------------------
# Shaped after consensus::State in informalsystems/tendermint-rs and
# cometbft/cometbft-rs (src/consensus/state.rs), written by iqlusioninc/tmkms
# src/chain/state.rs with serde_json::to_string: compact, no newline; height
# and round quoted, step a number (0 proposal, 1 prevote, 2 precommit per
# tmkms src/privval.rs), block_id through the proto BlockId serde: hash and
# part-set hash upper-case hex, total a number; None written as the default
# (all-empty) id.

BLOCK = "A5F3157D747E33200E1CBD05D0E2BBA973D9E06F0C64C988D87356C685DEDBF2"
PARTS = "CD287645BEE39CC0928B6619D19BBA48934084E1ABD8921D07739D70B7EA5A16"
OTHER = "2470A41F3243C6BCD7AD2DFF8A8D83A71D29D307B5326C227F734A1A512FE47D"

# write_initial_state: height 0, everything else default.
TMKMS_INITIAL = '{"height":"0","round":"0","step":0,"block_id":{"hash":"","parts":{"total":0,"hash":""}}}'
TMKMS_PREVOTE = (
    '{"height":"7296635","round":"0","step":1,'
    f'"block_id":{{"hash":"{BLOCK}","parts":{{"total":1,"hash":"{PARTS}"}}}}}}'
)
TMKMS_PROPOSAL = (
    '{"height":"7296636","round":"3","step":0,'
    f'"block_id":{{"hash":"{OTHER}","parts":{{"total":12,"hash":"{PARTS}"}}}}}}'
)
# A nil precommit: no block, so the default id is written.
TMKMS_NIL_PRECOMMIT = '{"height":"7296637","round":"1","step":2,"block_id":{"hash":"","parts":{"total":0,"hash":""}}}'
# tendermint-rs before the "parts" rename wrote "part_set_header" (the shape
# in iqlusioninc/tmkms issue #358).
TMKMS_PART_SET_HEADER = (
    '{"height":"222222","round":"2","step":2,'
    f'"block_id":{{"hash":"{BLOCK}","part_set_header":{{"total":3,"hash":"{PARTS}"}}}}}}'
)
# Still read upstream: a quoted total (pre-0.34) and a null block id.
TMKMS_QUOTED_TOTAL = (
    f'{{"height":"5","round":"1","step":1,"block_id":{{"hash":"{BLOCK}","parts":{{"total":"1","hash":"{PARTS}"}}}}}}'
)
TMKMS_NULL_BLOCK = '{"height":"5","round":"1","step":2,"block_id":null}'

TMKMS_FILES = [
    TMKMS_INITIAL,
    TMKMS_PREVOTE,
    TMKMS_PROPOSAL,
    TMKMS_NIL_PRECOMMIT,
    TMKMS_PART_SET_HEADER,
    TMKMS_QUOTED_TOTAL,
    TMKMS_NULL_BLOCK,
]


# --- CometBFT: reading ----------------------------------------------------


def test_cometbft_initial_state_is_zero() -> None:
    state = parse_cometbft(COMET_INITIAL)
    assert state == SignState(ZERO, None, None, None)
    assert digest_of(state) == ""


def test_cometbft_precommit() -> None:
    state = parse_cometbft(COMET_PRECOMMIT)
    assert state.hrs == HRS(1234567, 0, 3)
    assert state.signature == base64.b64decode(PRECOMMIT_SIGNATURE)
    assert len(state.signature) == 64
    assert state.signbytes == bytes.fromhex(PRECOMMIT_SIGNBYTES)
    assert state.block_id is None
    assert digest_of(state) == hashlib.sha256(bytes.fromhex(PRECOMMIT_SIGNBYTES)).hexdigest()
    assert check_mark(state.hrs, digest_of(state)) is None


def test_cometbft_proposal_step_is_the_registers() -> None:
    state = parse_cometbft(COMET_PROPOSAL)
    assert state.hrs == HRS(1234568, 2, 1)
    assert check_mark(state.hrs, digest_of(state)) is None


def test_cometbft_mark_without_signbytes_has_no_digest() -> None:
    state = parse_cometbft(COMET_BARE_MARK)
    assert state == SignState(HRS(99, 1, 2))
    assert digest_of(state) == ""


@pytest.mark.parametrize("text", COMET_FILES)
def test_cometbft_round_trip_is_byte_exact(text: str) -> None:
    state = parse_cometbft(text)
    assert dump_cometbft(state) == text
    assert parse_cometbft(dump_cometbft(state)) == state


def test_cometbft_reader_tolerates_what_go_tolerates() -> None:
    # Compact or reordered JSON, lower-case hex and null byte fields are all
    # read by libs/json; they come back in CometBFT's own layout.
    text = json.dumps(
        {
            "step": 3,
            "signbytes": PRECOMMIT_SIGNBYTES.lower(),
            "round": 0,
            "height": "1234567",
            "signature": PRECOMMIT_SIGNATURE,
        }
    )
    assert dump_cometbft(parse_cometbft(text)) == COMET_PRECOMMIT
    nulls = '{"height": "99", "round": 1, "step": 2, "signature": null, "signbytes": null}'
    assert dump_cometbft(parse_cometbft(nulls)) == COMET_BARE_MARK


def test_cometbft_empty_byte_fields_are_kept() -> None:
    # Go writes a non-nil empty slice as "" (omitempty only drops nil).
    text = '{\n  "height": "7",\n  "round": 0,\n  "step": 2,\n  "signature": "",\n  "signbytes": ""\n}'
    state = parse_cometbft(text)
    assert state.signature == b"" and state.signbytes == b""
    assert dump_cometbft(state) == text
    assert digest_of(state) == ""


def test_cometbft_dump_of_constructed_states() -> None:
    assert dump_cometbft(SignState(ZERO)) == COMET_INITIAL
    assert dump_cometbft(SignState(HRS(99, 1, 2))) == COMET_BARE_MARK
    state = SignState(
        HRS(1234567, 0, 3),
        base64.b64decode(PRECOMMIT_SIGNATURE),
        bytes.fromhex(PRECOMMIT_SIGNBYTES),
    )
    assert dump_cometbft(state) == COMET_PRECOMMIT


def test_cometbft_round_trip_loop() -> None:
    for height in (1, 2, 9, 10, 12345, 2**53 + 1, 2**63 - 1):
        for round_ in (0, 1, 7, 2**31 - 1):
            for step in (1, 2, 3):
                for n in (0, 1, 2, 3, 64, 65):
                    payload = bytes(range(n))
                    state = SignState(HRS(height, round_, step), payload, payload[::-1])
                    text = dump_cometbft(state)
                    assert parse_cometbft(text) == state
                    assert dump_cometbft(parse_cometbft(text)) == text


# --- CometBFT: refusing ---------------------------------------------------


def comet(**fields: object) -> str:
    document: dict[str, object] = {"height": "10", "round": 0, "step": 2}
    for key, value in fields.items():
        if value is DROP:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document, indent=2)


DROP = object()

COMET_ERRORS = [
    (comet(height="12a"), 'priv_validator_state.json: height "12a" is not a number'),
    (comet(height=""), 'height "" is not a number'),
    (comet(height=" 12"), 'height " 12" is not a number'),
    (comet(height="1.5"), 'height "1.5" is not a number'),
    (comet(height="+12"), 'height "+12" is not a number'),
    (comet(height="-12"), 'height "-12" is negative'),
    (comet(height="012"), 'height "012" has a leading zero'),
    (comet(height="\u0661\u0662"), "is not a number"),
    (comet(height=12), "height 12 is not a string of decimal digits"),
    (comet(height=None), "height null is not a string"),
    (comet(height=str(2**63)), 'height "9223372036854775808" is out of range'),
    (comet(height=DROP), 'field "height" is missing'),
    (comet(round="0"), 'round "0" must be a JSON number, not a string'),
    (comet(round=-1), "round -1 is negative"),
    (comet(round=1.5), "round 1.5 is not an integer"),
    (comet(round=True), "round true is not an integer"),
    (comet(round=2**31), "round 2147483648 is out of range"),
    (comet(round=DROP), 'field "round" is missing'),
    (comet(step=4), "step 4 is outside 1..3"),
    (comet(step=-1), "step -1 is outside 1..3"),
    (comet(step="2"), 'step "2" must be a JSON number'),
    (comet(step=0), 'step 0 at height "10" round 0: step 0 is only valid in the initial state'),
    (comet(step=DROP), 'field "step" is missing'),
    (
        comet(height="0", step=2),
        'height "0" with round 0 and step 2: height 0 is only valid in the initial state',
    ),
    (comet(height="0", round=1, step=0), "step 0 is only valid in the initial state"),
    (comet(signature="not base64!"), 'signature "not base64!" is not valid base64'),
    (comet(signature="AAA"), 'signature "AAA" is not valid base64'),
    (comet(signature="AAB="), 'signature "AAB=" is not canonical base64'),
    (comet(signature=12), "signature 12 is not a base64 string"),
    (comet(signbytes="ABC"), 'signbytes "ABC" is not valid hex'),
    (comet(signbytes="0x12"), 'signbytes "0x12" is not valid hex'),
    (comet(signbytes="12 34"), 'signbytes "12 34" is not valid hex'),
    (comet(signbytes=["12"]), 'signbytes ["12"] is not a hex string'),
    (comet(block_id=None), 'unexpected field "block_id"'),
    (
        '{"height": "1", "height": "2", "round": 0, "step": 1}',
        'field "height" appears more than once',
    ),
    ('{"height": "1", "round": NaN, "step": 1}', "not valid JSON"),
    ('{"height": "1", "round": 0, "step": 1', "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got [1, 2]"),
    ("null", "expected a JSON object, got null"),
]


@pytest.mark.parametrize(("text", "message"), COMET_ERRORS)
def test_cometbft_errors(text: str, message: str) -> None:
    with pytest.raises(StateFileError) as caught:
        parse_cometbft(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith("priv_validator_state.json: ")


def test_error_names_the_given_source() -> None:
    with pytest.raises(StateFileError, match=r'^/var/lib/x/state\.json: height "x" is not a number$'):
        parse_cometbft(comet(height="x"), source="/var/lib/x/state.json")


def test_long_bad_values_are_shortened() -> None:
    with pytest.raises(StateFileError) as caught:
        parse_cometbft(comet(signbytes="Z" * 500))
    assert len(str(caught.value)) < 200 and "..." in str(caught.value)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (SignState(HRS(0, 0, 1)), "height 0 is outside"),
        (SignState(HRS(-1, 0, 1)), "height -1 is outside"),
        (SignState(HRS(1, -1, 1)), "round -1 is outside"),
        (SignState(HRS(1, 0, 0)), "step 0 is outside 1..3"),
        (SignState(HRS(1, 0, 4)), "step 4 is outside 1..3"),
        (SignState(HRS(1, 0, 1), signature="AA=="), "signature must be bytes"),  # type: ignore[arg-type]
        (SignState(HRS(1, 0, 1), block_id=nil_block_id()), "has no block_id"),
        (SignState((1, 0, "1")), "is not a (height, round, step)"),  # type: ignore[arg-type]
    ],
)
def test_cometbft_dump_refuses_what_the_format_cannot_hold(state: SignState, message: str) -> None:
    with pytest.raises(StateFileError, match="^cannot write priv_validator_state.json: ") as caught:
        dump_cometbft(state)
    assert message in str(caught.value)


# --- tmkms: reading -------------------------------------------------------


def test_tmkms_initial_state_is_zero() -> None:
    state = parse_tmkms(TMKMS_INITIAL)
    assert state.hrs == ZERO
    assert state.signature is None and state.signbytes is None
    assert state.block_id == nil_block_id()
    assert digest_of(state) == ""


def test_tmkms_steps_are_one_below_the_registers() -> None:
    assert parse_tmkms(TMKMS_PROPOSAL).hrs == HRS(7296636, 3, 1)
    assert parse_tmkms(TMKMS_PREVOTE).hrs == HRS(7296635, 0, 2)
    assert parse_tmkms(TMKMS_NIL_PRECOMMIT).hrs == HRS(7296637, 1, 3)
    assert parse_tmkms(TMKMS_PART_SET_HEADER).hrs == HRS(222222, 2, 3)


def test_tmkms_block_id_is_kept_as_read() -> None:
    state = parse_tmkms(TMKMS_PART_SET_HEADER)
    assert state.block_id == {"hash": BLOCK, "part_set_header": {"total": 3, "hash": PARTS}}
    assert list(state.block_id) == ["hash", "part_set_header"]
    assert parse_tmkms(TMKMS_NULL_BLOCK).block_id is None


@pytest.mark.parametrize("text", TMKMS_FILES)
def test_tmkms_round_trip_is_byte_exact(text: str) -> None:
    state = parse_tmkms(text)
    assert dump_tmkms(state) == text
    assert parse_tmkms(dump_tmkms(state)) == state


def test_tmkms_reader_tolerates_whitespace_and_lower_case() -> None:
    # The shape quoted in tmkms issue #358 is pretty-printed; serde reads it.
    pretty = json.dumps(json.loads(TMKMS_PREVOTE), indent=2)
    assert dump_tmkms(parse_tmkms(pretty)) == TMKMS_PREVOTE
    lower = TMKMS_PREVOTE.replace(BLOCK, BLOCK.lower())
    assert parse_tmkms(lower).hrs == HRS(7296635, 0, 2)
    assert digest_of(parse_tmkms(lower)) == digest_of(parse_tmkms(TMKMS_PREVOTE))


def test_tmkms_digest_is_the_block_id() -> None:
    prevote = parse_tmkms(TMKMS_PREVOTE)
    digest = digest_of(prevote)
    assert check_mark(prevote.hrs, digest) is None
    # The same block however spelled is the same digest (a retry) ...
    spelled = {"hash": BLOCK.lower(), "part_set_header": {"total": "1", "hash": PARTS.lower()}}
    assert digest_of(prevote._replace(block_id=spelled)) == digest
    # ... another block, another part set or nil is not (a conflict).
    assert digest_of(prevote._replace(block_id={"hash": OTHER, "parts": {"total": 1, "hash": PARTS}})) != digest
    assert digest_of(prevote._replace(block_id={"hash": BLOCK, "parts": {"total": 2, "hash": PARTS}})) != digest
    nil = digest_of(parse_tmkms(TMKMS_NIL_PRECOMMIT))
    assert nil not in ("", digest)
    assert check_mark(HRS(7296637, 1, 3), nil) is None
    # Very old files with a null block id carry nothing to compare.
    assert digest_of(parse_tmkms(TMKMS_NULL_BLOCK)) == ""


def test_is_nil_block_id() -> None:
    assert is_nil_block_id(None)
    assert is_nil_block_id(nil_block_id())
    assert is_nil_block_id({"hash": None, "part_set_header": {"total": "0", "hash": None}})
    assert not is_nil_block_id({"hash": BLOCK, "parts": {"total": 1, "hash": PARTS}})
    assert nil_block_id() is not nil_block_id()


def test_tmkms_dump_of_constructed_states() -> None:
    assert dump_tmkms(SignState(ZERO, block_id=nil_block_id())) == TMKMS_INITIAL
    assert dump_tmkms(SignState(HRS(7296637, 1, 3), block_id=nil_block_id())) == TMKMS_NIL_PRECOMMIT
    assert dump_tmkms(SignState(HRS(5, 1, 3))) == TMKMS_NULL_BLOCK
    assert dump_tmkms(SignState(ZERO)) == '{"height":"0","round":"0","step":0,"block_id":null}'


def test_tmkms_round_trip_loop() -> None:
    block_ids = [None, nil_block_id(), {"hash": BLOCK, "parts": {"total": 1, "hash": PARTS}}]
    for height in (1, 10, 123456789, 2**63 - 1):
        for round_ in (0, 1, 10, 2**31 - 1):
            for step in (1, 2, 3):
                for block_id in block_ids:
                    state = SignState(HRS(height, round_, step), block_id=block_id)
                    text = dump_tmkms(state)
                    assert parse_tmkms(text) == state
                    assert dump_tmkms(parse_tmkms(text)) == text
                    assert json.loads(text)["step"] == step - 1


# --- tmkms: refusing ------------------------------------------------------


def tmkms(**fields: object) -> str:
    document: dict[str, object] = {
        "height": "10",
        "round": "0",
        "step": 1,
        "block_id": {"hash": BLOCK, "parts": {"total": 1, "hash": PARTS}},
    }
    for key, value in fields.items():
        if value is DROP:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document, separators=(",", ":"))


def parts(**fields: object) -> dict[str, object]:
    header: dict[str, object] = {"total": 1, "hash": PARTS}
    for key, value in fields.items():
        if value is DROP:
            header.pop(key)
        else:
            header[key] = value
    return {"hash": BLOCK, "parts": header}


TMKMS_ERRORS = [
    (tmkms(height="12a"), 'tmkms state file: height "12a" is not a number'),
    (tmkms(height=12), "height 12 is not a string of decimal digits"),
    (tmkms(height="-1"), 'height "-1" is negative'),
    (tmkms(height="007"), 'height "007" has a leading zero'),
    (tmkms(height=str(2**63)), "is out of range"),
    (tmkms(height=DROP), 'field "height" is missing'),
    (tmkms(round=0), "round 0 is not a string of decimal digits"),
    (tmkms(round="x"), 'round "x" is not a number'),
    (tmkms(round=str(2**31)), 'round "2147483648" is out of range'),
    (tmkms(round=DROP), 'field "round" is missing'),
    (tmkms(step=3), "step 3 is outside 0..2 (0=proposal, 1=prevote, 2=precommit)"),
    (tmkms(step=6), "step 6 is outside 0..2"),
    (tmkms(step=-1), "step -1 is outside 0..2"),
    (tmkms(step="1"), 'step "1" must be a JSON number'),
    (tmkms(step=1.0), "step 1.0 is not an integer"),
    (tmkms(step=DROP), 'field "step" is missing'),
    (tmkms(block_id=DROP), 'field "block_id" is missing'),
    (tmkms(block_id="ABCD"), 'block_id "ABCD" is not an object or null'),
    (tmkms(block_id={"parts": {"total": 1, "hash": PARTS}}), 'field "block_id.hash" is missing'),
    (tmkms(block_id={"hash": BLOCK}), 'field "block_id.parts" is missing'),
    (
        tmkms(block_id={**parts(), "part_set_header": {"total": 1, "hash": PARTS}}),
        'both "parts" and "part_set_header"',
    ),
    (tmkms(block_id={**parts(), "extra": 1}), 'unexpected field "block_id.extra"'),
    (tmkms(block_id=parts(extra=1)), 'unexpected field "block_id.parts.extra"'),
    (
        tmkms(block_id={"hash": "XYZ", "parts": {"total": 1, "hash": PARTS}}),
        'block_id.hash "XYZ" is not valid hex',
    ),
    (
        tmkms(block_id={"hash": "ABCD", "parts": {"total": 1, "hash": PARTS}}),
        'block_id.hash "ABCD" is 2 bytes',
    ),
    (tmkms(block_id=parts(hash="12")), 'block_id.parts.hash "12" is 1 bytes, not a 32-byte hash'),
    (tmkms(block_id=parts(total=-1)), "block_id.parts.total -1 is negative"),
    (tmkms(block_id=parts(total=2**32)), "block_id.parts.total 4294967296 is out of range"),
    (tmkms(block_id=parts(total="1x")), 'block_id.parts.total "1x" is not a number'),
    (tmkms(block_id=parts(total=DROP)), 'field "block_id.parts.total" is missing'),
    (tmkms(block_id={"hash": BLOCK, "parts": [1]}), "block_id.parts [1] is not an object"),
    (tmkms(height="0"), 'height "0" with round 0, step 1 and block_id'),
    (tmkms(height="0", step=0), "height 0 is only valid in the initial state"),
    (
        tmkms(height="0", round="1", step=0, block_id=nil_block_id()),
        "height 0 is only valid in the initial state",
    ),
    (tmkms(signature="AA=="), 'unexpected field "signature"'),
    (
        '{"height":"1","round":"0","step":0,"step":1,"block_id":null}',
        'field "step" appears more than once',
    ),
    ("{", "not valid JSON"),
    ('"state"', 'expected a JSON object, got "state"'),
]


@pytest.mark.parametrize(("text", "message"), TMKMS_ERRORS)
def test_tmkms_errors(text: str, message: str) -> None:
    with pytest.raises(StateFileError) as caught:
        parse_tmkms(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith("tmkms state file: ")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (SignState(HRS(0, 0, 1)), "height 0 is outside"),
        (SignState(HRS(1, 0, 0)), "step 0 is outside 1..3"),
        (SignState(HRS(1, 2**31, 1)), "round 2147483648 is outside"),
        (SignState(HRS(1, 0, 1), signature=b"x"), "has no signature or signbytes"),
        (SignState(HRS(1, 0, 1), signbytes=b"x"), "has no signature or signbytes"),
        (
            SignState(HRS(1, 0, 1), block_id={"hash": "XY", "parts": {}}),
            'block_id.hash "XY" is not valid hex',
        ),
        (
            SignState(ZERO, block_id={"hash": BLOCK, "parts": {"total": 1, "hash": PARTS}}),
            "initial state cannot carry",
        ),
    ],
)
def test_tmkms_dump_refuses_what_the_format_cannot_hold(state: SignState, message: str) -> None:
    with pytest.raises(StateFileError, match="^cannot write tmkms state: ") as caught:
        dump_tmkms(state)
    assert message in str(caught.value)


def test_state_file_error_is_a_value_error() -> None:
    assert issubclass(StateFileError, ValueError)


def test_parse_wants_text() -> None:
    with pytest.raises(StateFileError, match="expected text, got bytes"):
        parse_cometbft(COMET_INITIAL.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize("parse", [parse_cometbft, parse_tmkms])
@pytest.mark.parametrize(("opening", "closing", "column"), [("[", "]", 43), ('{"a":', "}", 167)])
def test_deep_nesting_is_a_clear_error(parse, opening: str, closing: str, column: int) -> None:  # type: ignore[no-untyped-def]
    text = '{"height": ' + opening * 100_000 + "0" + closing * 100_000 + "}"
    with pytest.raises(StateFileError) as caught:
        parse(text)
    assert str(caught.value).endswith(f": nested deeper than 32 levels at line 1 column {column}")


@pytest.mark.parametrize(
    ("block_id", "field"),
    [
        ('{"hash":"","hash":"","parts":{"total":0,"hash":""}}', "block_id.hash"),
        ('{"hash":"","parts":{"total":0,"hash":"","total":0}}', "block_id.parts.total"),
    ],
)
def test_a_nested_duplicate_names_its_path(block_id: str, field: str) -> None:
    with pytest.raises(StateFileError) as caught:
        parse_tmkms('{"height":"1","round":"0","step":0,"block_id":' + block_id + "}")
    assert str(caught.value) == f'tmkms state file: field "{field}" appears more than once'


def test_written_file_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "priv_validator_state.json"
    state = SignState(HRS(1234568, 2, 1), base64.b64decode(PROPOSAL_SIGNATURE), bytes.fromhex(PROPOSAL_SIGNBYTES))
    write_file(path, dump_cometbft(state), mode=0o600)
    assert path.read_text() == COMET_PROPOSAL
    assert parse_cometbft(path.read_text()) == state
