"""``highlander fence``'s use case: which agent exit codes count as done, and
that the devices are tried in order until one of them has done it.

The fence-agents API gives exit 2 to status alone ("reachable, power off");
for off, on and reboot only 0 is a verified success. The agents themselves
run against real simulators in tests/process/test_fence_command.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from highlander.commands import fence
from highlander.commands.fence import Attempt, fence_directly
from highlander.inventory.model import FenceDevice

FIRST = FenceDevice("ipmi", "10.0.0.1", 623, "admin")
SECOND = FenceDevice("redfish", "10.0.0.2", 443, "admin")


@pytest.mark.parametrize(
    ("action", "code", "succeeded"),
    [
        ("off", 0, True),
        ("off", 1, False),
        ("off", 2, False),
        ("on", 0, True),
        ("on", 2, False),
        ("reboot", 0, True),
        ("reboot", 2, False),
        ("status", 0, True),
        ("status", 2, True),
        ("status", 1, False),
    ],
)
def test_only_status_counts_exit_2_as_an_answer(action: str, code: int, succeeded: bool) -> None:
    assert Attempt(FIRST, action, code, "").succeeded is succeeded


def scripted(monkeypatch: pytest.MonkeyPatch, codes: dict[str, int]) -> list[FenceDevice]:
    """Agents that exit with ``codes[device.address]``; returns the devices in the order they were run."""
    tried: list[FenceDevice] = []

    def run_agent(
        device: FenceDevice, node: str, action: str, password: str | None, metrics_dir: Path | None
    ) -> Attempt:
        tried.append(device)
        return Attempt(device, action, codes[device.address], "")

    monkeypatch.setattr(fence, "run_agent", run_agent)
    return tried


def test_an_off_that_exits_2_is_not_verified_and_the_next_device_is_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    tried = scripted(monkeypatch, {FIRST.address: 2, SECOND.address: 0})
    attempts = fence_directly("node-b", (FIRST, SECOND), "off", lambda device: "pw")
    assert tried == [FIRST, SECOND]
    assert [a.succeeded for a in attempts] == [False, True]


def test_a_status_answered_off_stops_at_the_first_device(monkeypatch: pytest.MonkeyPatch) -> None:
    tried = scripted(monkeypatch, {FIRST.address: 2, SECOND.address: 0})
    attempts = fence_directly("node-b", (FIRST, SECOND), "status", lambda device: "pw")
    assert tried == [FIRST]
    assert attempts[-1].succeeded and attempts[-1].code == 2
