"""The one-node cluster: it runs resources, and stopping it leaves nothing behind.

Every check here is against the real thing: the resource state comes from
Pacemaker's own tools, the leftovers from /proc and ``ip netns``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from highlander.adapters.runner import CommandRunner, system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.cluster_files import CorosyncNode, generate_authkey, render_corosync_conf
from highlander.lab.node import (
    STATE_DIRS,
    TMPFS_MOUNTS,
    NamespacedNode,
    NodeError,
    mount_table,
    pid_namespace_of,
    processes_in,
)
from highlander.lab.one_node import OneNodeCluster

NODE_MOUNT_POINTS = {d.path for d in STATE_DIRS if d.mounted} | set(TMPFS_MOUNTS)


def netns_names() -> set[str]:
    listing = CommandRunner(env=system_env()).run(["ip", "netns", "list"], check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def command_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def leaked_mounts(before: set[tuple[str, str, str]], node: NamespacedNode) -> list[tuple[str, str, str]]:
    """Host mounts that appeared since ``before`` and belong to ``node``.

    Only the node's own are counted: other programs on the host may mount
    things meanwhile.
    """
    return [
        m
        for m in mount_table() - before
        if m[0] in NODE_MOUNT_POINTS or node.netns in m[0] or str(node.workdir) in m[0] or str(node.workdir) in m[2]
    ]


def assert_nothing_left(node: NamespacedNode, pids: list[int], before: set[tuple[str, str, str]]) -> None:
    namespace = node.pid_namespace
    assert namespace is not None
    assert processes_in(namespace) == []
    assert [pid for pid in pids if pid_namespace_of(pid) == namespace] == []
    assert node.netns not in netns_names()
    assert leaked_mounts(before, node) == []


@pytest.mark.cluster
def test_dummy_resource_runs_and_stop_leaves_nothing(
    one_node_cluster: OneNodeCluster, host_mounts: set[tuple[str, str, str]]
) -> None:
    cluster = one_node_cluster
    node = cluster.node
    run = cluster.runner.run

    run(["pcs", "resource", "create", "d", "ocf:pacemaker:Dummy"], check=True, timeout=120)

    def located() -> bool:
        result = run(["crm_resource", "--locate", "--resource", "d"])
        return result.ok and "is running on: node1" in result.stdout

    wait_until(located, timeout=60, what="resource d to run on node1")
    status = run(["crm_mon", "-1"], check=True).stdout
    assert re.search(r"\bd\s+\(ocf:pacemaker:Dummy\):\s+Started node1\b", status), status

    pids = node.pids()
    names = {command_name(pid) for pid in pids}
    assert {"corosync", "pacemakerd", "pacemaker-contr"} <= names, names
    assert node.netns in netns_names()

    cluster.stop()
    assert_nothing_left(node, pids, host_mounts)
    cluster.stop()  # idempotent
    assert_nothing_left(node, pids, host_mounts)


@pytest.mark.cluster
def test_init_reaps_orphans(one_node_cluster: OneNodeCluster) -> None:
    """A double-forked daemon's orphan belongs to the node's init, which must reap it.

    pacemakerd as PID 1 would not: the killed daemon would stay a zombie
    and look alive to anything that checks its PID.
    """
    node = one_node_cluster.node
    run = one_node_cluster.runner.run
    inner = run(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"], check=True).stdout.strip()

    def orphan() -> int | None:
        for pid in node.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except FileNotFoundError:
                continue  # a short-lived process of the node ended meanwhile
            orphaned = fields["PPid"].strip() == str(node.init_pid)
            if orphaned and fields["NSpid"].split()[-1] == inner:
                return pid
        return None

    pid = wait_until(orphan, timeout=10, what="the orphan to be re-parented to the init")
    run(["kill", inner], check=True)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10, what="the orphan reaped")


@pytest.mark.cluster
def test_failed_start_is_cleaned_up(cluster_host: None, tmp_path: Path, host_mounts: set[tuple[str, str, str]]) -> None:
    """Without a corosync.conf corosync exits at once; the node must say so and stop cleanly."""
    node = NamespacedNode("node1", tmp_path / "node1")
    try:
        with pytest.raises(NodeError, match="corosync exited"):
            node.start(timeout=30)
        assert not node.running
    finally:
        node.stop()
    assert_nothing_left(node, [], host_mounts)


def test_rendered_corosync_conf_is_accepted_by_corosync(cluster_host: None, tmp_path: Path) -> None:
    """The template serves the three-node lab too: corosync itself must accept it."""
    runner = CommandRunner(env=system_env())
    key = tmp_path / "authkey"
    generate_authkey(runner, key)
    assert key.stat().st_mode & 0o777 == 0o400
    # corosync -t also insists that this host is one of the nodes
    addresses = {1: "127.0.0.1", 2: "10.99.0.2", 3: "10.99.0.3"}
    nodes = [CorosyncNode(f"node{i}", i, address) for i, address in addresses.items()]
    text = render_corosync_conf("trio", nodes, token_ms=3000, token_coefficient=650, keyfile=key)
    assert all(line.endswith("{") or "{" not in line for line in text.splitlines())
    for node in nodes:
        assert f"name: {node.name}" in text and f"ring0_addr: {node.ring0_addr}" in text
    conf = tmp_path / "corosync.conf"
    conf.write_text(text)
    # -t parses the file and checks the key, then exits without starting
    result = runner.run(["corosync", "-t", "-c", str(conf)])
    assert result.ok, result.stderr + result.stdout
