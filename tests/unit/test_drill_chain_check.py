"""The chain as the checker, on JSON recorded from a real CometBFT 0.38.26 in the lab.

``data/cometbft/failover.json``: blocks and validator sets around a power
cut of the active node on the highlander stack (our signature committed,
then absent, then committed again from the other node).
``data/cometbft/double-sign.json``: blocks of the unguarded stack, where
both nodes signed with our key and the chain committed
``DuplicateVoteEvidence`` against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from highlander.drill.chain_check import (
    DUPLICATE_VOTE,
    ChainError,
    ChainReader,
    Height,
    answers,
    missed_blocks,
    our_signature,
    parse_time,
)

DATA = Path(__file__).parent / "data" / "cometbft"


def recorded(name: str) -> tuple[ChainReader, dict[str, Any]]:
    """A reader answering from a recording, as the node answered the lab's drill."""
    document = json.loads((DATA / name).read_text())
    by_hash = document["validators"]

    def rpc(requests: Any) -> list[dict[str, Any]]:
        results = []
        for method, params in requests:
            if method == "block":
                results.append(document["blocks"][params["height"]])
            elif method == "validators":
                block = document["blocks"][params["height"]]["block"]
                results.append(by_hash[block["header"]["validators_hash"]])
            else:
                results.append({"sync_info": {"latest_block_height": str(max(map(int, document["blocks"])))}})
        return results

    return ChainReader(rpc), document


def test_our_signature_per_height_around_a_failover() -> None:
    reader, document = recorded("failover.json")
    heights = sorted(map(int, document["blocks"]))
    verdict = reader.verdict(document["address"], heights[0], heights[-1] - 1)
    flags = [h.ours for h in verdict.heights]
    assert verdict.evidence == [] and len(flags) == len(heights) - 1
    assert flags[0] == "committed" and flags[-1] == "committed" and "absent" in flags
    first_absent = next(h for h in verdict.heights if h.ours == "absent")
    missed = missed_blocks(verdict.heights, first_absent.time - 0.001)
    assert missed.missed is not None and missed.missed >= 1 and missed.absent == missed.missed
    assert missed.first_height == first_absent.height


def test_duplicate_vote_evidence_names_our_validator_and_its_height() -> None:
    reader, document = recorded("double-sign.json")
    heights = sorted(map(int, document["blocks"]))
    verdict = reader.verdict(document["address"], heights[0], heights[-1] - 1)
    (first, *_) = verdict.evidence
    assert first.kind == DUPLICATE_VOTE and first.validator == document["address"]
    assert first.vote_height <= first.height
    assert verdict.to_dict()["evidence_heights"] == sorted({e.height for e in verdict.evidence})
    assert reader.verdict("00" * 20, heights[0], heights[-1] - 1).evidence == []  # another validator: none of it


def test_a_validator_outside_the_set_has_no_signature_and_a_misplaced_one_is_an_error() -> None:
    signatures = [
        {"block_id_flag": 2, "validator_address": "AA", "timestamp": "2026-12-07T10:32:07.5Z"},
        {"block_id_flag": 1, "validator_address": "", "timestamp": "0001-01-01T00:00:00Z"},
    ]
    assert our_signature(signatures, ["AA", "BB"], "bb") == ("absent", None)
    assert our_signature(signatures, ["AA", "BB"], "CC") == ("none", None)
    assert our_signature(signatures, ["AA", "BB"], "AA") == ("committed", parse_time("2026-12-07T10:32:07.5Z"))
    with pytest.raises(ChainError, match="signature 0 of a commit is AA's"):
        our_signature(signatures, ["BB", "AA"], "BB")


def test_missed_blocks_count_from_the_failure_to_our_next_committed_signature() -> None:
    flags = ["committed", "committed", "absent", "absent", "nil", "absent", "committed", "absent"]
    found = [Height(10 + i, 100.0 + i, flag, None, ()) for i, flag in enumerate(flags)]
    missed = missed_blocks(found, 101.5)
    assert (missed.first_height, missed.signed_height, missed.missed, missed.absent) == (12, 16, 4, 3)
    assert missed_blocks(found[:6], 101.5).missed is None  # not signed again within what was read
    assert missed_blocks(found, 200.0).first_height is None


def test_rpc_answers_in_request_order_and_errors_named() -> None:
    text = json.dumps(
        [{"jsonrpc": "2.0", "id": 2, "result": {"b": 1}}, {"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}]
    )
    assert answers(text, 2, "http://x") == [{"a": 1}, {"b": 1}]
    refused = json.dumps({"jsonrpc": "2.0", "error": {"message": "batch request exceeds maximum (10)"}})
    with pytest.raises(ChainError, match="refused the batch.*exceeds maximum"):
        answers(refused, 11, "http://x")
    with pytest.raises(ChainError, match="request 1 of the batch failed"):
        answers(json.dumps([{"id": 1, "result": {}}, {"id": 2, "error": {"message": "height 99 > 7"}}]), 2, "u")
    with pytest.raises(ChainError, match="not JSON"):
        answers("<html>", 1, "u")
