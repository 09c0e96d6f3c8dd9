"""The simulated BMCs the fence tests run against (no root needed).

Every simulator is one per test (a test may stop, freeze or power off its
BMC) and is stopped whatever happens (:func:`simulators.running`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from simulators import running, running_ilo

from highlander.lab.ilosim import LINE_BY_LINE, ILOSimulator
from highlander.lab.ipmisim import IpmiSim
from highlander.lab.redfishsim import FakeSystem, RedfishSimulator

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
