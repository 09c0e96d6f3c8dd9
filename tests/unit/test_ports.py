"""The harness's loopback ports: below the kernel's ephemeral range, claimed until the claimant ends."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from highlander.lab import ports


@pytest.fixture
def small_span(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> range:
    """Five ports just below a made-up ephemeral range (too few above it), and a registry of the test's own."""
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (23005, 65530))
    monkeypatch.setattr(ports, "SPAN", 5)
    monkeypatch.setattr(ports, "_registry", lambda: tmp_path / "claims.json")
    return range(23000, 23005)


def test_ports_come_from_outside_the_ephemeral_range_and_are_free() -> None:
    chosen = ports.free_ports(4)
    low, high = (int(word) for word in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert len(set(chosen)) == 4
    assert all(not low <= port <= high for port in chosen)
    for port in chosen:
        with socket.socket() as s:
            s.bind((ports.LOOPBACK, port))


def test_above_the_range_first_below_it_when_too_few_are_left_above(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (32768, 60999))
    assert ports._span() == range(61000, 65536)
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (32768, 65000))
    assert ports._span() == range(32768 - ports.SPAN, 32768)
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (1024, 65535))
    assert ports._span() == range(1024, 1024)  # nothing free of the kernel: free_ports says so


def test_a_claimed_port_is_not_given_again_until_its_claimant_ends(small_span: range, tmp_path: Path) -> None:
    mine = ports.free_ports(3)
    assert sorted(set(mine)) == sorted(mine) and set(mine) <= set(small_span)
    # another live process's claims count too: this one holds the last two
    assert sorted(ports.free_ports(2)) == sorted(set(small_span) - set(mine))
    with pytest.raises(
        ports.PortsExhausted, match=r"no 1 free ports in 23000-23004: 5 are claimed by running processes"
    ):
        ports.free_ports(1)
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert set(claims) == {str(port) for port in small_span}


def test_the_claims_of_a_process_that_ended_are_free_again(small_span: range, tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(ended.stdout)
    reused = {"pid": 1, "started": "-1"}  # a PID alive now, but started at another time: not the claimant
    (tmp_path / "claims.json").write_text(json.dumps({"23000": {"pid": dead, "started": "1"}, "23001": reused}))
    assert sorted(ports.free_ports(5)) == list(small_span)


def test_a_port_something_listens_on_is_skipped(small_span: range) -> None:
    with socket.socket() as busy:
        busy.bind((ports.LOOPBACK, 23002))
        busy.listen()
        assert 23002 not in ports.free_ports(4)
