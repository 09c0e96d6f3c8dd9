"""The stock ClusterLabs stack on the lab's chain, the other side of ``benchmarks/failover.py``.

``lab up --workload chain --stack stock``: one CometBFT with FilePV under
``ocf:heartbeat:anything``, fenced by ``fence_ipmilan``, a cold standby. The
benchmark compares our failover with this one; here a power cut of the
active must end with the standby's node signing again and no evidence
against our validator on the chain, so that the comparison is with a stack
that works, and the lab must go down without leftovers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_support import chain_drill, chain_lab, chain_lab_down


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with chain_lab(tmp_path_factory, "chain-stock", "--stack", "stock") as (directory, up):
        assert "STOCK stack" in up
        yield directory


@pytest.mark.lab
def test_a_power_cut_on_the_stock_chain_is_fenced_and_the_cold_standby_signs(lab: Path, tmp_path: Path) -> None:
    iteration = chain_drill(lab, tmp_path, "power-cut-active")
    assert iteration["new_node"] not in (None, iteration["target"])
    assert iteration["fence_request"] is not None and iteration["fenced"] is not None
    missed = iteration["missed_blocks"]
    assert isinstance(missed, dict) and missed["missed"] is not None and missed["missed"] >= 1


@pytest.mark.lab
def test_lab_down_after_the_stock_chain_leaves_nothing(lab: Path) -> None:
    chain_lab_down(lab)
