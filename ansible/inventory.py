#!/usr/bin/env python3
"""Ansible inventory derived from the highlander inventory (one source of truth).

    HIGHLANDER_INVENTORY=examples/trio.yml ansible-inventory -i ansible/inventory.py --list
    HIGHLANDER_INVENTORY=examples/trio.yml ansible-playbook -i ansible/inventory.py ansible/site.yml

Reads the YAML file named by ``HIGHLANDER_INVENTORY`` through highlander's own
model (every problem is reported with its path, and nothing is emitted), and
emits:

- one host per node, ``ansible_host`` = the node's ``ssh_host`` (default: its
  first address);
- groups ``highlander`` (all three), ``highlander_members`` (the corosync /
  Pacemaker members), ``highlander_active`` (the nodes that may run the
  validator) and ``highlander_witness``;
- group variables ``highlander_inventory`` (the file's absolute path: the
  roles render from it) and ``highlander_cluster`` (the parsed inventory:
  names, addresses, fence devices with their password *references*; the
  inventory never holds a password).

Connection settings (user, key, ssh options) are not the inventory's
business: give them with ``-u``/``--private-key``, ``ansible.cfg`` or
``ANSIBLE_*`` variables.

The script needs the ``highlander`` package; when the interpreter running it
has none, it runs itself again with ``HIGHLANDER_PYTHON`` (default
``/opt/highlander/venv/bin/python``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

VENV_PYTHON = "/opt/highlander/venv/bin/python"


def _reexec() -> None:
    python = os.environ.get("HIGHLANDER_PYTHON", VENV_PYTHON)
    if os.environ.get("_HIGHLANDER_INVENTORY_REEXEC") or not os.access(python, os.X_OK):
        sys.exit(
            f"inventory.py: the highlander package is not importable by {sys.executable} "
            "(set HIGHLANDER_PYTHON to a python that has it)"
        )
    os.environ["_HIGHLANDER_INVENTORY_REEXEC"] = "1"
    os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])


try:
    from highlander.commands.render import SECRETS_DIR, SIGNSTATE_CONFIG, fence_device_variables, nodeids
    from highlander.inventory import InventoryError, load
    from highlander.inventory.model import KNOWN_HOSTS
except ImportError:
    _reexec()


def build(path: Path) -> dict[str, object]:
    inventory = load(path)
    ids = nodeids(inventory)
    members = {n.name for n in inventory.members}
    nodes = []
    for node in inventory.nodes:
        nodes.append(
            {
                "name": node.name,
                "role": node.role,
                "member": node.name in members,
                "nodeid": ids.get(node.name),
                "addresses": list(node.addresses),
                "ssh_host": node.ssh_host,
                "fence": [
                    {
                        "level": level,
                        **fence_device_variables(d),
                        # where the agent reads the password (the CIB's password_script)
                        "secret_path": d.password_file or f"{SECRETS_DIR}/{node.name}-fence-{level}",
                    }
                    for level, d in enumerate(node.fence, start=1)
                ],
            }
        )
    v, s = inventory.validator, inventory.signstate
    cluster = {
        "name": inventory.cluster_name,
        "quorum": inventory.quorum,
        "nodes": nodes,
        "signstate": {
            "port": s.port,
            "pki_dir": s.pki_dir,
            "state_dir": s.state_dir,
            "socket": s.socket,
            "socket_group": s.socket_group,
            "config": SIGNSTATE_CONFIG,
            "backend": s.backend,
        },
        "validator": {
            "user": v.user,
            "state_file": v.state_file,
            "environment_file": v.environment_file,
            "chain_id": v.chain_id,
            "key_id": v.key_id,
        },
        "secrets_dir": SECRETS_DIR,
        "known_hosts": KNOWN_HOSTS,
    }

    def names(predicate) -> list[str]:  # type: ignore[no-untyped-def]
        return [n.name for n in inventory.nodes if predicate(n)]

    return {
        "_meta": {"hostvars": {n.name: {"ansible_host": n.ssh_host} for n in inventory.nodes}},
        "all": {"children": ["ungrouped", "highlander"]},
        "highlander": {
            "hosts": names(lambda n: True),
            "vars": {"highlander_inventory": str(path.resolve()), "highlander_cluster": cluster},
            "children": ["highlander_members", "highlander_active", "highlander_witness"],
        },
        "highlander_members": {"hosts": names(lambda n: n.name in members)},
        "highlander_active": {"hosts": names(lambda n: n.active)},
        "highlander_witness": {"hosts": names(lambda n: n.role == "witness")},
    }


def main(argv: list[str]) -> int:
    source = os.environ.get("HIGHLANDER_INVENTORY")
    if not source:
        print("inventory.py: set HIGHLANDER_INVENTORY to the highlander inventory file", file=sys.stderr)
        return 2
    try:
        data = build(Path(source))
    except InventoryError as exc:
        print("inventory.py: not a usable inventory:\n  " + "\n  ".join(exc.messages), file=sys.stderr)
        return 1
    if len(argv) > 1 and argv[1] == "--host":
        print(json.dumps({}))  # every host variable is in _meta
    else:
        print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
