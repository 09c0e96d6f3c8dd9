"""Pacemaker runs fence_highlander_ipmi: a real one-node cluster fences through
our agent (``stonith_admin --fence``) against OpenIPMI's ipmi_sim inside the
node, and shows our meta-data (pcs, stonith_admin). The agent against the
simulator alone, and beside fence_ipmilan, is tests/process/test_fence_ipmi.py.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from simulators import running

from highlander.adapters.waiting import wait_until
from highlander.lab.ipmisim import IpmiSim
from highlander.lab.one_node import OneNodeCluster

AGENT_NAME = "fence_highlander_ipmi"

pytestmark = pytest.mark.skipif(shutil.which("ipmi_sim") is None, reason="ipmi_sim (openipmi) missing")


@pytest.fixture
def node_bmc(one_node_cluster: OneNodeCluster, tmp_path: Path) -> Iterator[IpmiSim]:
    """A BMC reachable from inside the cluster node, still on loopback.

    The node is its own network namespace with nothing but ``lo``: its
    127.0.0.1 is not the host's. Rather than cable it to the host (a veth
    pair and real addresses, traffic off loopback), the simulator runs inside
    the node's network namespace (``nsenter --net``, which execs it: the PID
    started is ipmi_sim's) and answers on the node's own 127.0.0.1. Its files
    stay in this test's directory: only the network namespace is entered.
    """
    pid = one_node_cluster.node.init_pid
    assert pid is not None
    sim = IpmiSim(tmp_path / "node-bmc", prefix=("nsenter", f"--target={pid}", "--net", "--"))
    with running(sim):
        yield sim


@pytest.mark.cluster
def test_pacemaker_fences_through_our_agent(
    one_node_cluster: OneNodeCluster, node_bmc: IpmiSim, tmp_path: Path
) -> None:
    """``stonith_admin --fence`` runs our agent inside the node; the BMC powers off.

    The password reaches the agent through ``password_script`` (a 0600 file
    read by /bin/cat), so it is neither on the pcs command line nor in the
    CIB. ``password=...`` would work too, but pcs takes instance attributes
    only on its command line, and the CIB would then hold the password.
    """
    runner = one_node_cluster.runner
    secret_file = tmp_path / "bmc-password"
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(node_bmc.password + "\n")
    create = runner.run(
        [
            "pcs",
            "stonith",
            "create",
            "fence-peer",
            AGENT_NAME,
            "ip=127.0.0.1",
            f"ipport={node_bmc.port}",
            f"username={node_bmc.username}",
            f"password_script=/bin/cat {secret_file}",
            "lanplus=1",
            "cipher=3",
            "pcmk_host_list=peer1",
        ],
        timeout=120,
    )
    assert create.ok, create.stderr
    wait_until(
        lambda: "fence-peer" in runner.run(["stonith_admin", "--list-registered"]).stdout,
        timeout=60,
        what="the fencer to register fence-peer",
    )
    assert "fence-peer" in runner.run(["stonith_admin", "--list", "peer1"]).stdout

    fenced = runner.run(["stonith_admin", "--fence", "peer1", "--timeout", "60"], timeout=120)
    assert fenced.ok, fenced.stderr
    assert node_bmc.power == "off"
    assert node_bmc.events() == ["off"]
    history = runner.run(["stonith_admin", "--history", "peer1"]).stdout
    assert "turning off of peer1 successful" in history, history

    rebooted = runner.run(["stonith_admin", "--reboot", "peer1", "--timeout", "60"], timeout=120)
    assert rebooted.ok, rebooted.stderr
    assert node_bmc.power == "on"  # our reboot of an off node powers it on
    assert node_bmc.events() == ["off", "on"]

    cib = runner.run(["cibadmin", "--query"], check=True).stdout
    assert "password_script" in cib and node_bmc.password not in cib
    pacemaker_log = one_node_cluster.node.host_path("/var/log/pacemaker/pacemaker.log")
    assert node_bmc.password not in pacemaker_log.read_text(errors="replace")


@pytest.mark.cluster
def test_pacemaker_shows_our_metadata(one_node_cluster: OneNodeCluster) -> None:
    runner = one_node_cluster.runner
    described = runner.run(["pcs", "stonith", "describe", AGENT_NAME], timeout=120)
    assert described.ok, described.stderr
    assert "Fence agent for IPMI 2.0 (RMCP+) BMCs" in described.stdout
    for option in ("lanplus", "cipher", "privlvl", "hexadecimal_kg", "ipport", "password_script"):
        assert f"{option}:" in described.stdout, option

    metadata = runner.run(["stonith_admin", "--metadata", "-a", AGENT_NAME], timeout=60)
    assert metadata.ok, metadata.stderr
    root = ET.fromstring(metadata.stdout)
    assert root.get("name") == AGENT_NAME
    parameters = {p.get("name"): p for p in root.iter("parameter")}
    content = {name: p.find("content") for name, p in parameters.items()}
    assert content["lanplus"].get("default") == "1"  # type: ignore[union-attr]
    assert content["ipport"].get("default") == "623"  # type: ignore[union-attr]
    assert content["privlvl"].get("default") == "administrator"  # type: ignore[union-attr]
    assert [o.get("value") for o in content["cipher"].iter("option")] == ["3", "17"]  # type: ignore[union-attr]
    assert parameters["ip"].get("required") == "1"
    actions = {a.get("name") for a in root.iter("action")}
    assert {"on", "off", "reboot", "status", "monitor", "metadata", "validate-all"} <= actions
