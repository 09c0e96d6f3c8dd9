"""``highlander fence NODE`` against a real simulated BMC: the device comes
from the inventory (or from options), the action is verified, and after a
power-off the operator is told how to let Pacemaker know."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from harness import HIGHLANDER
from simulators import ipmi_options

from highlander.lab.ipmisim import IpmiSim


@pytest.fixture
def inventory(tmp_path: Path, ipmi_bmc: IpmiSim) -> Path:
    """A trio whose node-b is fenced through the simulated BMC."""
    secret = tmp_path / "bmc-node-b"
    secret.write_text(ipmi_bmc.password + "\n")
    secret.chmod(0o600)

    def device(address: str) -> dict[str, object]:
        return {"method": "ipmi", "address": address, "username": "admin", "password_file": str(secret)}

    document = {
        "cluster": {"name": "drill"},
        "nodes": [
            {"name": "node-a", "addresses": ["10.99.0.1"], "fence": [device("10.99.1.1")]},
            {
                "name": "node-b",
                "addresses": ["10.99.0.2"],
                "fence": [{**device("127.0.0.1"), "port": ipmi_bmc.port, "options": {"cipher": 3}}],
            },
            {"name": "node-w", "role": "witness", "addresses": ["10.99.0.3"], "fence": [device("10.99.1.3")]},
        ],
        "validator": {
            "command": "/bin/true",
            "chain_id": "c",
            "key_id": "k",
            "health_url": "http://127.0.0.1:26657/status",
        },
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def fence(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HIGHLANDER, "fence", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_off_through_the_inventory_is_verified_and_says_how_to_confirm(inventory: Path, ipmi_bmc: IpmiSim) -> None:
    done = fence("node-b", "--action", "off", "--inventory", str(inventory), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ipmi_bmc.power == "off"
    assert "node-b via fence_highlander_ipmi at 127.0.0.1: verified" in done.stdout
    assert "stonith_admin --confirm node-b" in done.stdout
    assert ipmi_bmc.password not in done.stdout + done.stderr

    status = fence("node-b", "--action", "status", "--inventory", str(inventory))
    assert status.returncode == 2 and "Status: OFF" in status.stdout


def test_without_yes_the_operator_is_asked_and_no_means_nothing_happens(inventory: Path, ipmi_bmc: IpmiSim) -> None:
    done = fence("node-b", "--action", "off", "--inventory", str(inventory), stdin="n\n")
    assert done.returncode == 1 and "Aborted" in done.stderr
    assert ipmi_bmc.power == "on"


def test_a_device_given_by_options_with_a_password_file(tmp_path: Path, ipmi_bmc: IpmiSim) -> None:
    secret = tmp_path / "pw"
    secret.write_text(ipmi_bmc.password)
    secret.chmod(0o600)
    done = fence(
        "peer",
        "--action",
        "reboot",
        "--yes",
        *ipmi_options(ipmi_bmc, secret),
        "--option",
        "cipher=3",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert ipmi_bmc.power == "on"
    assert "verified" in done.stdout and "Rebooted" in done.stdout


def test_a_wrong_password_fails_with_one_clear_line(tmp_path: Path, ipmi_bmc: IpmiSim) -> None:
    secret = tmp_path / "pw"
    secret.write_text("not-the-password")
    done = fence(
        "peer",
        "--action",
        "off",
        "--yes",
        *ipmi_options(ipmi_bmc, secret),
    )
    assert done.returncode == 1
    assert "failed (exit 1)" in done.stdout and "no fence device of peer could off it" in done.stderr
    assert ipmi_bmc.power == "on"


def test_an_unknown_node_is_named(inventory: Path) -> None:
    done = fence("node-x", "--action", "status", "--inventory", str(inventory))
    assert done.returncode == 1 and "no node 'node-x'" in done.stderr
