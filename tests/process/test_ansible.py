"""The Ansible rollout (ansible/): lint, and a real run over SSH against the lab trio.

- ``ansible-lint ansible/`` passes (profile: production, from ansible/.ansible-lint); fast, no lab.
- With the three-node lab (``highlander lab up``; each node runs sshd, root logs in with the
  key the lab generated, ``<lab>/ssh/ssh_config``), ``ansible-playbook -i ansible/inventory.py
  ansible/site.yml`` over SSH leaves a quorate trio with every fence device registered; a
  second run reports changed=0; a ``--check`` run changes nothing; no fence password shows in
  Ansible's output (``-v``) or in a world-readable file on the nodes.

The lab inventory names password files the lab writes; to exercise the Vault path as well,
the run uses a copy of it in which node-a's device takes its password from an Ansible Vault
variable (the same password, read from the node), so the CIB changes once (password_script
points at /etc/highlander/secrets/node-a-fence-1) and the roles write that secret.
"""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from ansible_support import ANSIBLE, ROOT, tool


def test_ansible_lint_passes() -> None:
    result = subprocess.run(
        [tool("ansible-lint"), "--offline", "ansible/"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "production" in result.stdout + result.stderr


def test_inventory_script_derives_hosts_from_the_highlander_inventory() -> None:
    env = {**os.environ, "HIGHLANDER_INVENTORY": str(ROOT / "examples" / "trio.yml")}
    result = subprocess.run(
        [sys.executable, str(ANSIBLE / "inventory.py"), "--list"], env=env, capture_output=True, text=True, check=True
    )
    data = yaml.safe_load(result.stdout)
    assert data["_meta"]["hostvars"]["node-a"]["ansible_host"] == "10.10.0.11"
    assert data["highlander_active"]["hosts"] == ["node-a", "node-b"]
    assert data["highlander_witness"]["hosts"] == ["node-w"]
    cluster = data["highlander"]["vars"]["highlander_cluster"]
    assert cluster["nodes"][0]["fence"][0]["password_vault"] == "vault_bmc_node_a"
    assert cluster["nodes"][0]["fence"][0]["secret_path"] == "/etc/highlander/secrets/node-a-fence-1"
