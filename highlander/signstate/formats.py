"""Import and export of the signer state files, byte for byte as the signers
write them, mapped to the register's :class:`~highlander.signstate.register.HRS`.

Two formats, each mirroring upstream code (no upstream text is copied here):

CometBFT ``priv_validator_state.json``
    Mirrors the ``FilePVLastSignState`` struct of repository cometbft/cometbft,
    file ``privval/file.go``, written by its ``Save`` method through
    ``libs/json`` (``MarshalIndent`` with an empty prefix and a two-space
    indent: the Amino-compatible encoder, then Go's ``json.Indent``) and
    ``internal/tempfile`` (``WriteFileAtomic``: a temporary file in the same
    directory opened ``O_SYNC|O_EXCL`` with mode 0600, then a rename). Fields,
    in this order::

        height     64-bit integer, written as a JSON *string* ("0", "1234")
        round      32-bit integer, a JSON number
        step       8-bit integer, a JSON number: 0 only in the initial state,
                   then 1 = propose, 2 = prevote, 3 = precommit
        signature  bytes, standard base64 with padding; omitted when nil
        signbytes  bytes, upper-case hex (``libs/bytes`` HexBytes); omitted
                   when nil

    No trailing newline. A fresh node's file (``NewFilePV`` sets step to
    "none") is ``{\\n  "height": "0",\\n  "round": 0,\\n  "step": 0\\n}``.
    The reader there (``libs/json`` decoder) insists on a quoted height and a
    bare-number round; hex is accepted in either case.

tmkms consensus state file (one per chain, ``state_file`` in tmkms.toml)
    Mirrors ``consensus::State`` of repositories informalsystems/tendermint-rs
    and cometbft/cometbft-rs (``*/src/consensus/state.rs``, with
    ``block/height.rs``, ``block/round.rs``, ``block/id.rs``,
    ``block/parts.rs`` and the serde helpers in ``proto/src/serializers``),
    written by repository iqlusioninc/tmkms, ``src/chain/state.rs``
    (``sync_to_disk``: ``serde_json::to_string``, i.e. compact, no newline,
    through a ``tempfile::NamedTempFile`` in the same directory, mode 0600,
    persisted by rename; current versions also fsync the file and the
    directory). Fields, in this order::

        height    u64 (<= i64 max) as a JSON string
        round     u32 (<= i32 max) as a JSON string
        step      i8 JSON number: 0 = proposal, 1 = prevote, 2 = precommit
                  (tmkms ``src/privval.rs``, and ``src/session.rs`` since
                  tmkms PR #348 before that)
        block_id  {"hash": HEX, "parts": {"total": N, "hash": HEX}}
                  upper-case hex, empty or 32 bytes; ``total`` a number.
                  A nil vote and the initial state write the all-empty
                  default (hash "", total 0, hash ""). tendermint-rs
                  releases before the "parts" rename wrote the key
                  "part_set_header" (both are read upstream); pre-0.34
                  Tendermint quoted ``total``; very old tmkms wrote null.

    tmkms writes the initial state as height "0", round "0", step 0 and the
    empty block id. tmkms stores no sign bytes and no signature.

Mapping to the register: the initial state (height 0, round 0, step 0) is
:data:`~highlander.signstate.register.ZERO`, "nothing signed yet"; otherwise
CometBFT's step is the register's step and tmkms's step is one less.

Round trips are exact: ``dump_x(parse_x(text)) == text`` for every file the
programs write. The tmkms ``block_id`` is kept as read (key names, hex case,
number or string ``total``, or None for ``null``), so it comes back
unchanged; :func:`nil_block_id` is what current tmkms writes for "no block".
Input the programs would never write is refused rather than normalised when
normalising would lose the round trip (unknown or repeated fields, leading
zeros, non-canonical base64), and so is JSON nested deeper than
:data:`highlander.strictjson.MAX_DEPTH` levels (no state file nests more than three).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, NamedTuple

from highlander import strictjson
from highlander.signstate.register import HRS, ZERO

COMETBFT_NAME = "priv_validator_state.json"
TMKMS_NAME = "tmkms state file"

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
HASH_SIZES = (0, 32)  # an absent hash, or SHA-256
MAX_SIZE = 1 << 16  # bytes of a state file read at most; either kind is a few hundred

_COMETBFT_FIELDS = ("height", "round", "step", "signature", "signbytes")
_TMKMS_FIELDS = ("height", "round", "step", "block_id")
_PARTS_KEYS = ("parts", "part_set_header")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class StateFileError(ValueError):
    """A state file (or a state to be written) that the format cannot hold."""


class SignState(NamedTuple):
    """What a signer's state file says it signed last.

    ``hrs`` is in the register's terms (``ZERO``, or step 1..3).
    ``signature``/``signbytes`` are CometBFT's (None = field absent);
    ``block_id`` is tmkms's JSON object exactly as read (None = ``null``).
    """

    hrs: HRS
    signature: bytes | None = None
    signbytes: bytes | None = None
    block_id: dict[str, Any] | None = None


def nil_block_id() -> dict[str, Any]:
    """The block id current tmkms writes when there is none (nil vote, initial)."""
    return {"hash": "", "parts": {"total": 0, "hash": ""}}


# -- shared helpers --------------------------------------------------------


def _show(value: Any) -> str:
    """A bad value as it would appear in JSON, shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(source: str, message: str) -> StateFileError:
    return StateFileError(f"{source}: {message}")


def _load(text: str, source: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise _fail(source, f"expected text, got {type(text).__name__}")
    try:
        document = strictjson.loads(text)
    except strictjson.JSONInputError as e:
        raise _fail(source, str(e)) from None
    if not isinstance(document, dict):
        raise _fail(source, f"expected a JSON object, got {_show(document)}")
    return document


def _check_fields(document: dict[str, Any], allowed: tuple[str, ...], source: str, where: str = "") -> None:
    for key in document:
        if key not in allowed:
            raise _fail(source, f'unexpected field "{where}{key}"')


def _require(document: dict[str, Any], key: str, source: str, where: str = "") -> Any:
    if key not in document:
        raise _fail(source, f'field "{where}{key}" is missing')
    return document[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decimal_string(value: Any, name: str, maximum: int, source: str) -> int:
    """A non-negative integer written as a JSON string of decimal digits."""
    if not isinstance(value, str):
        raise _fail(source, f"{name} {_show(value)} is not a string of decimal digits")
    if value.startswith("-") and value[1:].isdigit() and value[1:].isascii():
        raise _fail(source, f"{name} {_show(value)} is negative")
    if not value or not value.isascii() or not value.isdigit():
        raise _fail(source, f"{name} {_show(value)} is not a number")
    if len(value) > 1 and value[0] == "0":
        raise _fail(source, f"{name} {_show(value)} has a leading zero")
    number = int(value)
    if number > maximum:
        raise _fail(source, f"{name} {_show(value)} is out of range (at most {maximum})")
    return number


def _json_int(value: Any, name: str, maximum: int, source: str) -> int:
    """A non-negative integer written as a bare JSON number."""
    if isinstance(value, str):
        raise _fail(source, f"{name} {_show(value)} must be a JSON number, not a string")
    if not _is_int(value):
        raise _fail(source, f"{name} {_show(value)} is not an integer")
    number = int(value)
    if number < 0:
        raise _fail(source, f"{name} {_show(value)} is negative")
    if number > maximum:
        raise _fail(source, f"{name} {_show(value)} is out of range (at most {maximum})")
    return number


def _hex(value: Any, name: str, source: str) -> bytes:
    if not isinstance(value, str):
        raise _fail(source, f"{name} {_show(value)} is not a hex string")
    if len(value) % 2 or any(c not in _HEX_DIGITS for c in value):
        raise _fail(source, f"{name} {_show(value)} is not valid hex")
    return bytes.fromhex(value)


def _base64(value: Any, name: str, source: str) -> bytes:
    if not isinstance(value, str):
        raise _fail(source, f"{name} {_show(value)} is not a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _fail(source, f"{name} {_show(value)} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise _fail(source, f"{name} {_show(value)} is not canonical base64")
    return raw


def _mark(height: int, round_: int, step: int, source: str, height_text: str) -> HRS:
    """The register's HRS for a file's height/round/step (step already 1..3 or 0)."""
    if (height, round_, step) == (0, 0, 0):
        return ZERO
    if height == 0:
        raise _fail(
            source,
            f"height {height_text} with round {round_} and step {step}: "
            "height 0 is only valid in the initial state (round 0, step 0)",
        )
    return HRS(height, round_, step)


def _check_hrs(value: Any, source: str) -> HRS:
    """A state's mark must be ZERO or a position that can be signed."""
    if not isinstance(value, tuple) or len(value) != 3 or not all(_is_int(v) for v in value):
        raise _fail(source, f"hrs {value!r} is not a (height, round, step) of integers")
    hrs = HRS(int(value[0]), int(value[1]), int(value[2]))
    if hrs == ZERO:
        return hrs
    if not 1 <= hrs.height <= INT64_MAX:
        raise _fail(source, f"height {hrs.height} is outside 1..{INT64_MAX}")
    if not 0 <= hrs.round <= INT32_MAX:
        raise _fail(source, f"round {hrs.round} is outside 0..{INT32_MAX}")
    if hrs.step not in (1, 2, 3):
        raise _fail(source, f"step {hrs.step} is outside 1..3 (1=propose, 2=prevote, 3=precommit)")
    return hrs


def _optional_bytes(value: Any, name: str, source: str) -> bytes | None:
    if value is not None and not isinstance(value, bytes):
        raise _fail(source, f"{name} must be bytes or None, got {type(value).__name__}")
    return value


# -- CometBFT --------------------------------------------------------------


def parse_cometbft(text: str, source: str = COMETBFT_NAME) -> SignState:
    """Read a CometBFT ``priv_validator_state.json``; :class:`StateFileError` if bad."""
    document = _load(text, source)
    _check_fields(document, _COMETBFT_FIELDS, source)
    height_value = _require(document, "height", source)
    height = _decimal_string(height_value, "height", INT64_MAX, source)
    round_ = _json_int(_require(document, "round", source), "round", INT32_MAX, source)
    step_value = _require(document, "step", source)
    if _is_int(step_value) and step_value not in (0, 1, 2, 3):
        raise _fail(source, f"step {_show(step_value)} is outside 1..3 (1=propose, 2=prevote, 3=precommit)")
    step = _json_int(step_value, "step", 3, source)
    if step == 0 and (height, round_) != (0, 0):
        raise _fail(
            source,
            f"step 0 at height {_show(height_value)} round {round_}: step 0 is only valid "
            'in the initial state (height "0", round 0)',
        )
    hrs = _mark(height, round_, step, source, _show(height_value))

    signature = document.get("signature")
    signbytes = document.get("signbytes")
    # Go decodes null to nil, which is then omitted on the next save.
    return SignState(
        hrs,
        None if signature is None else _base64(signature, "signature", source),
        None if signbytes is None else _hex(signbytes, "signbytes", source),
        None,
    )


def dump_cometbft(state: SignState) -> str:
    """The file CometBFT would write for ``state`` (MarshalIndent, two spaces, no newline)."""
    source = f"cannot write {COMETBFT_NAME}"
    hrs = _check_hrs(state.hrs, source)
    signature = _optional_bytes(state.signature, "signature", source)
    signbytes = _optional_bytes(state.signbytes, "signbytes", source)
    if state.block_id is not None:
        raise _fail(source, "the format has no block_id (a tmkms field); drop it first")
    document: dict[str, Any] = {"height": str(hrs.height), "round": hrs.round, "step": hrs.step}
    if signature is not None:
        document["signature"] = base64.b64encode(signature).decode("ascii")
    if signbytes is not None:
        document["signbytes"] = signbytes.hex().upper()
    return json.dumps(document, indent=2)


# -- either format, from a file's bytes -------------------------------------


def parse_state(data: bytes, kind: str, source: str) -> SignState:
    """A state file's bytes as the signer ``kind`` ("cometbft" or "tmkms") wrote them."""
    if len(data) > MAX_SIZE:
        raise _fail(
            source, f"more than {MAX_SIZE} bytes; a signer's state file is a few hundred: is this the right file?"
        )
    try:
        text = strictjson.decode(data)
    except strictjson.JSONInputError as e:
        raise _fail(source, str(e)) from None
    return parse_cometbft(text, source) if kind == "cometbft" else parse_tmkms(text, source)


# -- tmkms -----------------------------------------------------------------


def _check_block_id(value: Any, source: str) -> None:
    """Validate a tmkms block id as tendermint-rs/cometbft-rs would read it."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise _fail(source, f"block_id {_show(value)} is not an object or null")
    present = [key for key in _PARTS_KEYS if key in value]
    _check_fields(value, ("hash", *_PARTS_KEYS), source, "block_id.")
    if len(present) > 1:
        raise _fail(source, 'block_id has both "parts" and "part_set_header"')
    _hash(_require(value, "hash", source, "block_id."), "block_id.hash", source)
    if not present:
        raise _fail(source, 'field "block_id.parts" is missing')
    where = f"block_id.{present[0]}"
    parts = value[present[0]]
    if not isinstance(parts, dict):
        raise _fail(source, f"{where} {_show(parts)} is not an object")
    _check_fields(parts, ("total", "hash"), source, where + ".")
    total = _require(parts, "total", source, where + ".")
    if isinstance(total, str):  # quoted before Tendermint 0.34, still read upstream
        _decimal_string(total, where + ".total", UINT32_MAX, source)
    else:
        _json_int(total, where + ".total", UINT32_MAX, source)
    _hash(_require(parts, "hash", source, where + "."), where + ".hash", source)


def _hash(value: Any, name: str, source: str) -> bytes:
    raw = b"" if value is None else _hex(value, name, source)  # upstream reads null as empty
    if len(raw) not in HASH_SIZES:
        raise _fail(source, f"{name} {_show(value)} is {len(raw)} bytes, not a 32-byte hash")
    return raw


def parse_tmkms(text: str, source: str = TMKMS_NAME) -> SignState:
    """Read a tmkms consensus state file; :class:`StateFileError` if bad."""
    document = _load(text, source)
    _check_fields(document, _TMKMS_FIELDS, source)
    height_value = _require(document, "height", source)
    height = _decimal_string(height_value, "height", INT64_MAX, source)
    round_ = _decimal_string(_require(document, "round", source), "round", INT32_MAX, source)
    step_value = _require(document, "step", source)
    if _is_int(step_value) and step_value not in (0, 1, 2):
        raise _fail(source, f"step {_show(step_value)} is outside 0..2 (0=proposal, 1=prevote, 2=precommit)")
    step = _json_int(step_value, "step", 2, source)
    block_id = _require(document, "block_id", source)
    _check_block_id(block_id, source)
    if height == 0:
        if (round_, step) != (0, 0) or not is_nil_block_id(block_id):
            raise _fail(
                source,
                f"height {_show(height_value)} with round {round_}, step {step} and block_id "
                f"{_show(block_id)}: height 0 is only valid in the initial state",
            )
        return SignState(ZERO, None, None, block_id)
    return SignState(HRS(height, round_, step + 1), None, None, block_id)


def dump_tmkms(state: SignState) -> str:
    """The file tmkms would write for ``state`` (serde_json compact, no newline).

    ``block_id`` None is written as ``null``, which tmkms reads as "no
    block"; pass :func:`nil_block_id` to get what current tmkms writes.
    """
    source = "cannot write tmkms state"
    hrs = _check_hrs(state.hrs, source)
    if state.signature is not None or state.signbytes is not None:
        raise _fail(source, "the format has no signature or signbytes (CometBFT fields); drop them first")
    _check_block_id(state.block_id, source)
    if hrs == ZERO:
        height, round_, step = 0, 0, 0
        if not is_nil_block_id(state.block_id):
            raise _fail(source, "the initial state cannot carry a block id")
    else:
        height, round_, step = hrs.height, hrs.round, hrs.step - 1
    document = {
        "height": str(height),
        "round": str(round_),
        "step": step,
        "block_id": state.block_id,
    }
    return json.dumps(document, separators=(",", ":"))


def is_nil_block_id(block_id: dict[str, Any] | None) -> bool:
    """Whether a (validated) tmkms block id means "no block" (null or all empty)."""
    if block_id is None:
        return True
    parts = next(block_id[k] for k in _PARTS_KEYS if k in block_id)
    return not block_id["hash"] and not parts["hash"] and int(parts["total"]) == 0


def _block_id_text(block_id: dict[str, Any] | None) -> str:
    """One spelling per block id, whatever key names, hex case or total type."""
    if is_nil_block_id(block_id):
        return "nil"
    assert block_id is not None
    parts = next(block_id[k] for k in _PARTS_KEYS if k in block_id)
    return f"{(block_id['hash'] or '').upper()}:{int(parts['total'])}:{(parts['hash'] or '').upper()}"


# -- the register's view ---------------------------------------------------


def digest_of(state: SignState) -> str:
    """The register's digest for ``state``: sha256 hex of what was signed there.

    - nothing signed (``ZERO``): ``""``;
    - CometBFT: sha256 of ``signbytes`` (``""`` when the file has none);
    - tmkms, which keeps no sign bytes: sha256 of the block id in one fixed
      spelling, so that the same block voted again is a retry and another
      block (or nil against a block) at the same mark is a conflict, as tmkms
      itself judges. A ``null`` block id (very old tmkms) gives ``""``.
    """
    if state.hrs == ZERO:
        return ""
    if state.signbytes:
        return hashlib.sha256(state.signbytes).hexdigest()
    if state.block_id is not None:
        text = "tmkms-block-id:" + _block_id_text(state.block_id)
        return hashlib.sha256(text.encode("ascii")).hexdigest()
    return ""
