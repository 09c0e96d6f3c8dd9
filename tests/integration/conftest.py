"""Fixtures that start real Pacemaker/Corosync clusters in namespaces, and
the simulated BMCs the fence tests run against.

The clusters need root (network, mount and PID namespaces, bind mounts);
without it they are skipped with the reason. A missing cluster program is a
failure, not a skip: ./bootstrap installs them all, so one missing means an
install step is.

Every simulator is one per test (a test may stop, freeze or power off its
BMC) and is stopped whatever happens (:func:`simulators.running`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from simulators import running, running_ilo

from highlander.adapters.runner import system_env
from highlander.lab.one_node import OneNodeCluster
from highlander.lab.ilosim import LINE_BY_LINE, ILOSimulator
from highlander.lab.ipmisim import IpmiSim
from highlander.lab.node import mount_table
from highlander.lab.redfishsim import FakeSystem, RedfishSimulator

REQUIRED_PROGRAMS = (
    "ip", "unshare", "nsenter", "mount",
    "corosync", "corosync-keygen", "corosync-cmapctl",
    "pacemakerd", "crmadmin", "crm_mon", "crm_attribute", "crm_resource", "cibadmin", "pcs",
)  # fmt: skip


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


# -- simulated BMCs ------------------------------------------------------------------------------


@pytest.fixture
def ipmi_bmc(tmp_path: Path) -> Iterator[IpmiSim]:
    """OpenIPMI's ipmi_sim, powered on, logging every packet it receives."""
    with running(IpmiSim(tmp_path / "bmc", debug=True)) as sim:
        yield sim


@pytest.fixture
def redfish_bmc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedfishSimulator]:
    """sushy-emulator with node-a, on; a test parametrizes it indirectly with
    other systems as ``(name, power state)`` pairs."""
    systems = getattr(request, "param", (("node-a", "On"),))
    with running(RedfishSimulator(tmp_path / "bmc", [FakeSystem(n, p) for n, p in systems])) as sim:
        yield sim


@pytest.fixture
def ilo(tmp_path: Path) -> Iterator[ILOSimulator]:
    """Our iLO simulator delivering whole responses (the fastest device)."""
    with running_ilo(tmp_path / "ilo") as sim:
        yield sim


@pytest.fixture
def paced_ilo(tmp_path: Path) -> Iterator[ILOSimulator]:
    """Our iLO simulator delivering line by line, which fence_ilo_ssh reads right."""
    with running_ilo(tmp_path / "ilo", fragmentation=LINE_BY_LINE) as sim:
        yield sim


@pytest.fixture
def user_known_hosts_untouched() -> Iterator[None]:
    """Fail if a run of fence_ilo_ssh wrote into this user's own known_hosts."""
    path = Path(os.path.expanduser("~/.ssh/known_hosts"))
    before = path.read_bytes() if path.exists() else None
    yield
    after = path.read_bytes() if path.exists() else None
    assert after == before, f"{path} was changed by a test run"
