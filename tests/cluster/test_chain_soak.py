"""``highlander drill --soak 50`` on the lab's CometBFT chain: fifty iterations
of mixed scenarios (rounds of all eight, each round shuffled), judged by the
chain: no evidence against our validator, no dual-active moment, and the
missed blocks in all. Long, so it is marked ``soak`` and left out of the
default run (setup.cfg); run it with ``./bootstrap test -m soak``.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pytest
from lab_support import chain_lab, run

from highlander.lab.cleanup import leftovers


@pytest.mark.soak
@pytest.mark.lab
def test_a_soak_of_fifty_mixed_iterations_on_the_chain_leaves_no_evidence(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    with chain_lab(tmp_path_factory, "chain-soak") as (lab, _):
        result = run("drill", "--soak", "50", "--dir", str(lab), "--report", str(tmp_path), timeout=4 * 3600)
        print(result.stdout[-6000:], result.stderr[-3000:])
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert leftovers(lab) == []
    data = json.loads((tmp_path / "soak.json").read_text())
    summary = data["summary"]
    assert summary["iterations"] == 50 and summary["ok"] and data["findings"] == []
    assert summary["double_signs"] == 0 and summary["dual_active"] == 0 and summary["evidence_heights"] == []
    assert all(it["ok"] and it["chain"]["evidence"] == [] for it in data["iterations"])
    counts = Counter(it["scenario"] for it in data["iterations"])
    assert len(counts) == 8 and min(counts.values()) >= 6
    for name, scenario in summary["scenarios"].items():  # the medians, for the record
        total = (scenario["phases"].get("total") or {}).get("median")
        missed = ((scenario.get("blocks") or {}).get("missed_blocks") or {}).get("median")
        print(f"{name}: median total {total} s, median missed blocks {missed}")
    failovers = [
        it["missed_blocks"]["missed"] for it in data["iterations"] if it.get("missed_blocks", {}).get("missed")
    ]
    print(f"missed blocks in all: {summary['missed_blocks_total']}, median a failover {statistics.median(failovers)}")
