"""The lab on a real CometBFT chain, and the drills judged by the chain.

``highlander lab up --workload chain``: the trio with ``highlander privval``
promoted on one active node, CometBFT full nodes on both, and three FilePV
validators on hosts of their own; the chain must commit our validator's
signatures. Then one iteration of each failover scenario and of
kill-signer: every one must leave no evidence against our validator on the
chain, report its missed blocks, and the lab must go down without leftovers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_support import chain_drill, chain_lab, chain_lab_down, chain_reader

from highlander.adapters.waiting import wait_until
from highlander.lab.node import same_process
from highlander.lab.plan import load_plan

DRILL_TIMEOUT = 120


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with chain_lab(tmp_path_factory, "chain") as (directory, up):
        yield directory


@pytest.mark.lab
def test_lab_up_runs_the_chain_and_our_validator_signs_on_it(lab: Path) -> None:
    events = [json.loads(line)["message"] for line in (lab / "events.jsonl").read_text().splitlines()]
    assert any("creating the CometBFT network" in e for e in events)
    assert any("commits our validator's signatures" in e for e in events)
    plan, state = load_plan(lab)
    assert len(plan.validators) == 3 and state["workload"] == "chain"
    for name, process in state["chain"]["processes"].items():
        assert same_process(process["pid"], process["start_time"]), f"validator {name} is not running"
    chain, address = chain_reader(lab)
    start = chain.latest()
    latest = wait_until(lambda: (h := chain.latest()) >= start + 9 and h, timeout=60, what="nine more blocks")
    verdict = chain.verdict(address, start, latest - 1)
    assert verdict.count("committed") >= 7 and verdict.evidence == []  # a block or two may miss our vote
    # the key is the node's and privval's only: readable by root alone
    for node in ("node-a", "node-b"):
        key = lab / "nodes" / node / "root" / "etc/highlander/privval/priv_validator_key.json"
        assert os.stat(key).st_mode & 0o077 == 0


@pytest.mark.lab
@pytest.mark.parametrize(
    "scenario", ["power-cut-active", "freeze-active", "partition-active", "bmc-down-and-power-cut-active"]
)
def test_a_failover_on_the_chain_leaves_no_evidence_and_counts_its_missed_blocks(
    lab: Path, tmp_path: Path, scenario: str
) -> None:
    iteration = chain_drill(lab, tmp_path, scenario, DRILL_TIMEOUT)
    missed = iteration["missed_blocks"]
    assert isinstance(missed, dict) and missed["missed"] is not None and missed["missed"] >= 1
    assert iteration["new_node"] != iteration["target"]
    table = (tmp_path / f"{scenario}.txt").read_text()
    assert "missed blocks" in table and "expected missed blocks a year" in table


@pytest.mark.lab
def test_kill_signer_on_the_chain_restarts_privval_without_evidence(lab: Path, tmp_path: Path) -> None:
    iteration = chain_drill(lab, tmp_path, "kill-signer", DRILL_TIMEOUT)
    assert iteration["fence_request"] is None


@pytest.mark.lab
def test_lab_down_after_the_chain_drills_leaves_nothing(lab: Path) -> None:
    chain_lab_down(lab)
