"""``ocf:highlander:privval`` as a promotable clone under a real Pacemaker,
signing for a real CometBFT chain: Pacemaker promotes the instance, the
instance promotes itself in the register, and the chain advances; demoted,
it stops signing; promoted again, it goes on. The chain has one validator:
the demotion is asked for just after a block (see QUIET_BETWEEN_HEIGHTS)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cometbft_support import QUIET_BETWEEN_HEIGHTS, CometNode, cometbft

from highlander.adapters.waiting import wait_until
from highlander.lab.one_node import OneNodeCluster
from highlander.lab.replicas import LoopbackReplicas

pytestmark = pytest.mark.cluster
CHAIN = "highlander-privval-cluster"


def role(cluster: OneNodeCluster) -> str | None:
    status = cluster.pacemaker.try_status()
    state = status.resource("privval") if status else None
    return state.role if state and state.active and not state.failed else None


def test_pacemaker_promotes_the_signer_and_the_chain_advances(
    one_node_cluster: OneNodeCluster, replicas: LoopbackReplicas, tmp_path: Path
) -> None:
    cometbft()
    node = CometNode(tmp_path, "node-a", scheme="unix")  # a Unix socket reaches into the node's namespace
    node.init(CHAIN, timeouts=QUIET_BETWEEN_HEIGHTS)
    signer_dir = tmp_path / "signer"
    signer_dir.mkdir()
    key = signer_dir / "priv_validator_key.json"
    shutil.copy(node.key_file, key)
    os.chmod(key, 0o600)
    config = signer_dir / "privval.toml"
    config.write_text(
        f'chain_id = "{CHAIN}"\nkey_file = "{key}"\nstate_file = "{signer_dir / "state.json"}"\n'
        f'register = "{replicas.socket("node-a")}"\nnodes = ["{node.privval_laddr}"]\n'
        f'control = "{signer_dir / "control.sock"}"\n'
    )
    runner = one_node_cluster.runner
    try:
        runner.run(
            [
                "pcs",
                "resource",
                "create",
                "privval",
                "ocf:highlander:privval",
                f"config={config}",
                f"logfile={signer_dir / 'privval.log'}",
                "promotable",
                "promoted-max=1",
            ],
            check=True,
        )
        wait_until(lambda: role(one_node_cluster) == "Promoted", timeout=90, what="Pacemaker to promote privval")
        node.start()
        height = node.wait_for_height(5)
        node.wait_for_height(node.height() + 1)  # just after a block: the next one is 2 s away

        runner.run(["pcs", "resource", "ban", "privval-clone", "node1", "--promoted"], check=True)
        wait_until(lambda: role(one_node_cluster) == "Unpromoted", timeout=60, what="Pacemaker to demote privval")
        stalled = node.height()
        assert node.running()  # the unpromoted instance keeps answering the node
        runner.run(["pcs", "resource", "clear", "privval-clone"], check=True)
        wait_until(lambda: role(one_node_cluster) == "Promoted", timeout=60, what="Pacemaker to promote again")
        node.wait_for_height(stalled + 3)
        log = (signer_dir / "privval.log").read_text()
        assert log.count("event=promoted") == 2 and "event=demoted" in log
        assert node.evidence(range(1, node.height() + 1)) == [] and height >= 5
    finally:
        node.stop()
        runner.run(["pcs", "resource", "delete", "privval", "--force"])
