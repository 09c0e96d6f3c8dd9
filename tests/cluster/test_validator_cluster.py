"""ocf:highlander:validator under a real Pacemaker: created with pcs, started,
crashed with SIGKILL and recovered by the cluster."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from highlander.adapters.runner import CommandRunner
from highlander.drill.journal import check_journals
from highlander.lab import demo
from highlander.lab.one_node import OneNodeCluster
from highlander.lab.replicas import LoopbackReplicas

pytestmark = pytest.mark.cluster


def failed_operations(runner: CommandRunner) -> set[str]:
    """The operations crm_mon lists as failed (``<resource>_<action>_<interval ms>``)."""
    document = ET.fromstring(runner.run(["crm_mon", "--output-as=xml"], check=True).stdout)
    return {failure.get("op_key", "") for failure in document.iter("failure")}


def test_pacemaker_recovers_a_killed_validator(
    one_node_cluster: OneNodeCluster, replicas: LoopbackReplicas, tmp_path: Path
) -> None:
    runner = one_node_cluster.runner
    journal = tmp_path / "journal.jsonl"
    demo.create_validator(runner, replicas.socket("node-a"), journal)
    status = demo.wait_started(one_node_cluster.pacemaker)
    assert status.started_on(demo.RESOURCE) == ("node1",)
    assert status.resource(demo.RESOURCE).agent == "ocf:highlander:validator"

    old, new, _, _ = demo.crash_and_recover(runner)

    assert new != old
    status = one_node_cluster.pacemaker.status()
    assert status.started_on(demo.RESOURCE) == ("node1",)
    # One kill may fail more than one monitor run: the 5-s health monitor, or
    # the 2-s one again, can run before the recovery starts on a busy machine.
    # Only monitors failed: a failed start (or stop) would be listed too.
    failed = failed_operations(runner)
    assert failed and failed <= {f"{demo.RESOURCE}_monitor_2000", f"{demo.RESOURCE}_monitor_5000"}, failed
    assert status.fail_count(demo.RESOURCE) >= 1
    # Pacemaker's own one-off monitor agrees, and the daemon answers from inside the node.
    assert runner.run(["crm_resource", "--force-check", "--resource", demo.RESOURCE]).ok
    url = f"http://127.0.0.1:{demo.STATUS_PORT}/status"
    probe = f"from highlander.adapters.health import check_url; print(check_url({url!r}, 5))"
    assert "catching_up=False" in runner.run([sys.executable, "-c", probe], check=True).stdout
    # Two signers (before and after the crash), two epochs, no double sign.
    report = check_journals([journal])
    assert report.ok and not report.regressions
    assert len({s.epoch for s in report.signers}) == 2


def test_stopping_the_resource_leaves_no_daemon(
    one_node_cluster: OneNodeCluster, replicas: LoopbackReplicas, tmp_path: Path
) -> None:
    runner = one_node_cluster.runner
    demo.create_validator(runner, replicas.socket("node-a"), tmp_path / "journal.jsonl")
    demo.wait_started(one_node_cluster.pacemaker)
    pid = demo.daemon_pid(runner)
    assert pid is not None

    runner.run(["pcs", "resource", "disable", demo.RESOURCE, "--wait=60"], check=True)

    assert not one_node_cluster.pacemaker.status().started_on(demo.RESOURCE)
    assert not runner.run(["kill", "-0", str(pid)]).ok
    assert demo.daemon_pid(runner) is None
