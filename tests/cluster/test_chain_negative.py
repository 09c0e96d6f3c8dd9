"""The chain's negative control: with every guard off, the chain itself must
commit evidence of the double sign, and the drill must fail saying so.

``lab up --workload chain --stack unguarded``: no fencing, no ``privval``
(so no register), both full nodes signing with the validator's key (FilePV).
Two nodes with one key propose and vote for different blocks at the same
height and round; the other validators see both votes and the chain commits
``DuplicateVoteEvidence`` naming our validator. Once it is on the chain
(waited for, bounded), ``highlander drill`` must fail on it, naming the
heights, and keep its evidence. A checker that cannot fail proves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_support import chain_lab, chain_reader, failing_drill, run

from highlander.adapters.waiting import wait_until
from highlander.drill.chain_check import DUPLICATE_VOTE
from highlander.lab.cleanup import leftovers
from highlander.lab.plan import load_plan

DRILL_TIMEOUT = 60


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with chain_lab(tmp_path_factory, "chain-negative", "--stack", "unguarded") as (directory, up):
        assert "NOT safe" in up
        yield directory


EVIDENCE_BOUND = 300  # seconds for the unguarded chain to commit evidence against our validator


def committed_evidence(lab: Path) -> list[object]:
    """Wait until the chain holds evidence against our validator: both full nodes
    sign, so it comes when our validator proposes and each node votes for its
    own block; the drill may only be asked to find what is there."""
    chain, address = chain_reader(lab)

    def evidence() -> list[object]:
        latest = chain.latest()
        return chain.verdict(address, 1, latest - 1).evidence if latest > 1 else []

    what = "the unguarded chain committing evidence against our validator"
    return wait_until(evidence, timeout=EVIDENCE_BOUND, what=what, interval=2.0)


@pytest.mark.lab
def test_the_drill_on_the_unguarded_chain_fails_on_the_chains_evidence(lab: Path, tmp_path: Path) -> None:
    assert committed_evidence(lab)
    result = failing_drill(lab, tmp_path, "freeze-active", DRILL_TIMEOUT)
    assert "evidence of a double sign by our validator at heights" in result.stderr
    document = json.loads((tmp_path / "freeze-active.json").read_text())
    found = [e for f in document["findings"] for e in f.get("found", [])]
    found += [e for it in document["iterations"] for e in it.get("chain", {}).get("evidence", [])]
    _, state = load_plan(lab)
    assert found and all(e["kind"] == DUPLICATE_VOTE and e["validator"] == state["chain"]["address"] for e in found)
    assert document["summary"]["ok"] is False and document["summary"]["double_signs"] >= 1
    assert list(tmp_path.glob("evidence/*/index.json"))  # kept before the lab went on


@pytest.mark.lab
def test_lab_down_after_the_negative_control_leaves_nothing(lab: Path) -> None:
    assert run("lab", "down", "--dir", str(lab), timeout=180).returncode == 0
    assert leftovers(lab) == []
