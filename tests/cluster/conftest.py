"""Fixtures that start real Pacemaker/Corosync clusters in namespaces.

The clusters need root (network, mount and PID namespaces, bind mounts);
without it they are skipped with the reason. A missing cluster program is a
failure, not a skip: ./bootstrap installs them all, so one missing means an
install step is.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from highlander.adapters.runner import system_env
from highlander.lab.node import mount_table
from highlander.lab.one_node import OneNodeCluster

REQUIRED_PROGRAMS = (
    "ip",
    "unshare",
    "nsenter",
    "mount",
    "corosync",
    "corosync-keygen",
    "corosync-cmapctl",
    "pacemakerd",
    "crmadmin",
    "crm_mon",
    "crm_attribute",
    "crm_resource",
    "cibadmin",
    "pcs",
)


@pytest.fixture
def cluster_host() -> None:
    """Skip unless root; fail unless the cluster programs are installed."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a lab node creates network, mount and PID namespaces")
    path = system_env()["PATH"]
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p, path=path) is None]
    if missing:
        pytest.fail(f"cluster programs not installed: {', '.join(missing)} (run ./bootstrap test)")


@pytest.fixture
def host_mounts() -> set[tuple[str, str, str]]:
    """The host's mounts before a cluster starts, to find any it leaked."""
    return mount_table()


@pytest.fixture
def one_node_cluster(
    cluster_host: None, tmp_path: Path, host_mounts: set[tuple[str, str, str]]
) -> Iterator[OneNodeCluster]:
    """A running one-node cluster without fencing; stopped even when the test fails."""
    cluster = OneNodeCluster(tmp_path / "cluster", disable_stonith=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
