"""The files a fresh cluster node needs before it boots: corosync.conf, the authkey, a seeded CIB.

corosync.conf is rendered from ``templates/corosync.conf.j2``, the template
a real rollout uses; the one-node cluster (:mod:`highlander.lab.one_node`)
and the three-node lab's supervisor write these into each node's own
directories.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from highlander import templates
from highlander.adapters.runner import CommandRunner
from highlander.lab.node import CLUSTER_GROUP, CLUSTER_USER

COROSYNC_CONF = "/etc/corosync/corosync.conf"
AUTHKEY = "/etc/corosync/authkey"
CIB_XML = "/var/lib/pacemaker/cib/cib.xml"


class CorosyncNode(NamedTuple):
    """One entry of corosync.conf's nodelist."""

    name: str
    nodeid: int
    ring0_addr: str


def render_corosync_conf(
    cluster_name: str,
    nodes: Sequence[CorosyncNode],
    *,
    token_ms: int = 3000,
    **extra: object,
) -> str:
    """corosync.conf for ``nodes``, rendered from the shared template."""
    return templates.render_template(
        "corosync.conf.j2",
        cluster_name=cluster_name,
        nodes=[node._asdict() for node in nodes],
        token_ms=token_ms,
        **extra,
    )


def generate_authkey(runner: CommandRunner, path: Path) -> None:
    """A new corosync authkey at ``path``, readable by root only.

    ``-l`` reads /dev/urandom, so a lab never blocks waiting for entropy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    runner.run(["corosync-keygen", "-l", "-k", str(path)], check=True)
    os.chmod(path, 0o400)


def seed_cib(runner: CommandRunner, path: Path, properties: Mapping[str, str]) -> None:
    """Write an initial CIB with cluster ``properties`` before the node first boots.

    Some properties matter before the cluster can be asked for anything:
    ``dc-deadtime`` decides how long a booting controller waits for a DC
    before it holds an election itself (20 s by default). Pacemaker's own
    tools write the file, so it always matches the installed schema;
    pacemaker-based accepts a CIB without a digest file on first read.
    """
    xml = runner.run(["cibadmin", "--empty"], check=True).stdout
    path.write_text(xml)
    for name, value in properties.items():
        runner.run(
            ["crm_attribute", "--type", "crm_config", "--name", name, "--update", value],
            env={"CIB_file": str(path)},
            check=True,
        )
    os.chown(path, pwd.getpwnam(CLUSTER_USER).pw_uid, grp.getgrnam(CLUSTER_GROUP).gr_gid)
    os.chmod(path, 0o600)
