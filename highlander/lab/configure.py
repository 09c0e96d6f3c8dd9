"""The rollout's files on the lab's nodes: the one step of ``lab up`` the Ansible rollout replaces.

Written from the host into each node's own directories, from what ``lab
up`` rendered (``highlander render --check``) and generated (the authkey,
the sign-state CA, the BMC passwords); ``--no-configure`` writes only the
BMC password files and leaves the rest to Ansible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from highlander.lab.lab_node import LabNode, write_node_file
from highlander.lab.plan import LabPlan


def install_configuration(nodes: dict[str, LabNode], plan: LabPlan, rendered: Path, secrets_: dict[str, Any]) -> None:
    """Put the rollout's files on the nodes (the step the Ansible rollout replaces).

    corosync.conf and the one authkey, signstate.toml, the sign-state PKI
    (ca.crt and the node's own certificate and key) and every BMC's
    password file (0600) at the path the CIB's password_script reads.
    Written into the nodes' own directories from the host; a node whose
    corosync waits for its configuration picks it up.
    """
    from highlander.lab.cluster_files import AUTHKEY, COROSYNC_CONF
    from highlander.signstate import store
    from highlander.signstate.config import load_config

    authkey = Path(secrets_["authkey"]).read_bytes()
    ca = Path(secrets_["ca"])
    for n in plan.nodes:
        node = nodes[n.name]
        node.prepare()
        source = rendered / n.name
        write_node_file(
            node.host_path("/etc/highlander/signstate.toml"), (source / "signstate.toml").read_text(), 0o644
        )
        config = load_config(source / "signstate.toml")
        pki_dir = node.host_path(str(config.pki_dir))
        write_node_file(pki_dir / "ca.crt", (ca / "ca.crt").read_bytes(), 0o644)
        write_node_file(pki_dir / f"{n.name}.crt", (ca / f"{n.name}.crt").read_bytes(), 0o644)
        write_node_file(pki_dir / f"{n.name}.key", (ca / f"{n.name}.key").read_bytes(), 0o600)
        state_dir = node.host_path(str(config.state_dir))
        if not state_dir.exists():  # the lab's cluster is new: its replicas are initialised once
            store.create(state_dir, n.name).close()
        _write_bmc_passwords(node, plan, secrets_)
        # corosync last: it starts as soon as both files are there
        write_node_file(node.host_path(AUTHKEY), authkey, 0o400)
        write_node_file(node.host_path(COROSYNC_CONF), (source / "corosync.conf").read_text(), 0o644)


def _write_bmc_passwords(node: LabNode, plan: LabPlan, secrets_: dict[str, Any]) -> None:
    for other in plan.nodes:
        write_node_file(node.host_path(other.password_file), secrets_["bmc_passwords"][other.name] + "\n", 0o600)


def install_bmc_passwords(nodes: dict[str, LabNode], plan: LabPlan, secrets_: dict[str, Any]) -> None:
    """Only every BMC's password file (0600), on every node: what the operator
    provisions before a rollout whose inventory names them (password_file)."""
    for n in plan.nodes:
        node = nodes[n.name]
        node.prepare()
        _write_bmc_passwords(node, plan, secrets_)
