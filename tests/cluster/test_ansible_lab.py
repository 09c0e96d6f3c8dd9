"""The Ansible rollout against the three-node lab (issue 5's acceptance).

``highlander lab up --no-configure`` boots the three nodes with sshd and
nothing else of the cluster (only the BMC password files the inventory names;
corosync waits for its configuration). ``ansible-playbook`` then runs over
SSH, from inside the lab's switch namespace (the only place that reaches the
nodes), and must leave a quorate trio with fencing configured; a second run
reports changed=0; a ``--check`` run changes nothing; no fence password (a
vault-encrypted one included) shows in Ansible's ``-v`` output or in a
world-readable file on the nodes.

The lab's nodes share the host's /opt (and so its venv): the run sets
``highlander_install_packages=false`` (the nodes already have everything).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ansible_support import ANSIBLE, BIN, LAB_INVENTORY, VAULT_PASSWORD, tool

from highlander.adapters.runner import system_env

pytestmark = pytest.mark.lab

NODES = ("node-a", "node-b", "node-w")
TIMINGS: dict[str, float] = {}


class Lab:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        state = json.loads((directory / "state.json").read_text())
        self.switch: str = state["plan"]["switch"]

    def exec(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [tool("highlander"), "lab", "exec", "--dir", str(self.directory), node, "--", *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=system_env(),
        )
        if check and result.returncode != 0:
            pytest.fail(f"{node}: {' '.join(argv)} exited with {result.returncode}: {result.stdout}{result.stderr}")
        return result


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates namespaces")
    directory = tmp_path_factory.mktemp("lab") / "lab"
    highlander = tool("highlander")
    try:
        started = time.monotonic()
        subprocess.run(
            [highlander, "lab", "up", "--no-configure", "--inventory", str(LAB_INVENTORY), "--dir", str(directory)],
            check=True,
            timeout=600,
            env=system_env(),
        )
        TIMINGS["lab up --no-configure"] = time.monotonic() - started
        yield Lab(directory)
    finally:
        subprocess.run([highlander, "lab", "down", "--dir", str(directory)], check=False, timeout=300, env=system_env())
        print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def _recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        recap[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return recap


def test_unconfigured_lab_waits_for_its_configuration(lab: Lab) -> None:
    for node in NODES:
        assert lab.exec(node, "pgrep", "-x", "corosync", check=False).returncode != 0, node
        assert lab.exec(node, "test", "-e", "/etc/corosync/corosync.conf", check=False).returncode != 0, node
        stat = lab.exec(node, "stat", "-c", "%a %U", f"/etc/highlander/secrets/bmc-{node}").stdout.split()
        assert stat == ["600", "root"], (node, stat)


def test_playbook_brings_up_the_trio_idempotently_without_leaking_secrets(lab: Lab, tmp_path: Path) -> None:
    password = lab.exec("node-a", "cat", "/etc/highlander/secrets/bmc-node-a").stdout.strip()
    assert password
    # node-a's device takes its password from an Ansible Vault variable instead of the lab's file
    inventory = yaml.safe_load(LAB_INVENTORY.read_text())
    device = inventory["nodes"][0]["fence"][0]
    del device["password_file"]
    device["password_vault"] = "vault_bmc_node_a"
    inventory_path = tmp_path / "lab-vault.yml"
    inventory_path.write_text(yaml.safe_dump(inventory))
    vault_password_file = tmp_path / "vault-password"
    vault_password_file.write_text(VAULT_PASSWORD + "\n")
    vault_file = tmp_path / "vault.yml"
    vault_file.write_text(yaml.safe_dump({"vault_bmc_node_a": password}))
    subprocess.run(
        [tool("ansible-vault"), "encrypt", "--vault-password-file", str(vault_password_file), str(vault_file)],
        check=True,
        capture_output=True,
    )
    assert password not in vault_file.read_text()

    # The lab's ssh_config has a Host block per node name; Ansible connects to ansible_host (the
    # address), so the same key and known_hosts go into a config that matches any host.
    settings = dict(
        re.findall(
            r"^\s+(IdentityFile|UserKnownHostsFile)\s+(\S+)$",
            (lab.directory / "ssh" / "ssh_config").read_text(),
            re.MULTILINE,
        )
    )
    assert set(settings) == {"IdentityFile", "UserKnownHostsFile"}, settings
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        "Host *\n    User root\n    StrictHostKeyChecking yes\n"
        + "".join(f"    {k} {v}\n" for k, v in settings.items())
    )
    env = {
        **os.environ,
        "HIGHLANDER_INVENTORY": str(inventory_path),
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_SSH_COMMON_ARGS": f"-F {ssh_config}",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "PATH": f"{BIN}:{system_env()['PATH']}",
    }

    def playbook(label: str, *extra: str) -> str:
        argv = [
            "ip",
            "netns",
            "exec",
            lab.switch,  # the switch is the only place that reaches the nodes
            tool("ansible-playbook"),
            "-v",
            "-i",
            str(ANSIBLE / "inventory.py"),
            str(ANSIBLE / "site.yml"),
            "-e",
            f"@{vault_file}",
            "--vault-password-file",
            str(vault_password_file),
            "-e",
            f"highlander_controller_dir={tmp_path / 'controller'}",
            "-e",
            "highlander_install_packages=false",  # the lab's nodes share the host's venv
            *extra,
        ]
        started = time.monotonic()
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200, check=False)
        TIMINGS[label] = time.monotonic() - started
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert password not in output, "a fence password appeared in Ansible's output"
        recap = _recap(output)
        assert set(recap) >= set(NODES), output
        assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in recap.values()), output
        return output

    first = playbook("first run")
    assert all(c["changed"] > 0 for host, c in _recap(first).items() if host in NODES), first

    # a quorate trio with fencing configured
    quorum = lab.exec("node-a", "corosync-quorumtool", "-s", check=False).stdout
    assert re.search(r"Quorate:\s+Yes", quorum), quorum
    assert re.search(r"Total votes:\s+3", quorum), quorum
    stonith = lab.exec(
        "node-a", "crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--query", "--quiet"
    ).stdout.strip()
    assert stonith == "true", stonith
    devices = lab.exec("node-a", "cibadmin", "--query", "--xpath", "//primitive[@class='stonith']").stdout
    for name in ("fence-node-a-1", "fence-node-b-1", "fence-node-w-1"):
        assert f'id="{name}"' in devices, devices
    script = lab.exec(
        "node-a", "crm_resource", "--resource", "fence-node-a-1", "--get-parameter", "password_script"
    ).stdout
    assert "/etc/highlander/secrets/node-a-fence-1" in script
    for node in NODES:
        stat = lab.exec(node, "stat", "-c", "%a %U", "/etc/highlander/secrets/node-a-fence-1").stdout.split()
        assert stat == ["600", "root"], (node, stat)
        assert lab.exec(node, "cat", "/etc/highlander/secrets/node-a-fence-1").stdout == password

    # a second run changes nothing
    second = playbook("second run")
    assert all(c["changed"] == 0 for c in _recap(second).values()), second

    # a check run changes nothing (and reports nothing to change)
    cib_before = lab.exec("node-a", "cibadmin", "--query", "--scope", "configuration").stdout
    checked = playbook("check run", "--check")
    assert all(c["changed"] == 0 for c in _recap(checked).values()), checked
    assert lab.exec("node-a", "cibadmin", "--query", "--scope", "configuration").stdout == cib_before

    # no secret in a world-readable file on the nodes
    for node in NODES:
        found = lab.exec(
            node,
            "sh",
            "-c",
            "find /etc/highlander /etc/corosync /var/lib/highlander /var/lib/pacemaker "
            '-xdev -type f -perm -o=r -print0 2>/dev/null | xargs -0 -r grep -lF -- "$1"',
            "sh",
            password,
            check=False,
        ).stdout
        assert found.strip() == "", f"{node}: the password is in world-readable files: {found}"
        keys = lab.exec(
            node,
            "sh",
            "-c",
            "find /etc/highlander/secrets /etc/highlander/pki /etc/corosync/authkey "
            "\\( -name '*.key' -o -path '*/secrets/*' -o -name authkey \\) "
            "-type f -perm /o=rwx",
        ).stdout
        assert keys.strip() == "", f"{node}: secrets readable by others: {keys}"
