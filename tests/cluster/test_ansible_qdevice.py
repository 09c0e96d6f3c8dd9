"""The qdevice role (ansible/roles/qdevice) for real: TLS between corosync-qdevice and corosync-qnetd.

The lab boots votequorum trios only, so this runs the role where both ends
fit on one machine: a one-node cluster in its own namespaces
(:class:`~highlander.lab.one_node.OneNodeCluster`, private /etc/corosync, /run
and loopback) whose corosync.conf gains a quorum device (model net on
127.0.0.1, ``tls: on``, from templates/corosync.conf.j2) once it runs.
``ansible-playbook`` runs the role inside that namespace with two local
hosts: the member ``node-a`` (the cluster's node) and the witness ``qnetd``;
their NSS databases are the tools' own, apart (/etc/corosync/qdevice/net and
/etc/corosync/qnetd). The host has no systemd here, so the role starts both
daemons with start-stop-daemon, as on the lab's nodes.

It must leave: the qnetd CA on the witness, the member's certificate signed
by it, qdevice connected over TLS with its client certificate verified
(``corosync-qnetd-tool -l -v``) and giving its vote (the node alone is not
quorate without it); a second run and a ``--check`` run that change nothing;
no private key readable by others, and none on the controller. A ``--check``
run before the first one makes nothing either.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ansible_support import ANSIBLE, BIN, tool
from test_ansible_lab import _recap

from highlander import templates
from highlander.adapters.runner import Result, system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.cluster_files import COROSYNC_CONF, CorosyncNode, render_corosync_conf
from highlander.lab.one_node import OneNodeCluster

CLUSTER = "qdlab"
MEMBER = "node-a"
WITNESS = "qnetd"
QNETD_PROGRAMS = (
    "corosync-qnetd",
    "corosync-qnetd-certutil",
    "corosync-qnetd-tool",
    "corosync-qdevice",
    "corosync-qdevice-net-certutil",
    "corosync-qdevice-tool",
    "certutil",
    "start-stop-daemon",
)
# Where the role's daemons keep their pid without systemd (ansible/roles/qdevice/defaults/main.yml).
PIDFILES = ("/run/highlander/corosync-qdevice.pid", "/run/highlander/corosync-qnetd.pid")


@pytest.fixture
def qdevice_cluster(cluster_host: None, tmp_path: Path) -> Iterator[OneNodeCluster]:
    """A one-node cluster named CLUSTER; the daemons the role starts are stopped by their PIDs."""
    path = system_env()["PATH"]
    missing = [p for p in QNETD_PROGRAMS if shutil.which(p, path=path) is None]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (./bootstrap installs corosync-qnetd and corosync-qdevice)")
    cluster = OneNodeCluster(tmp_path / "cluster", cluster_name=CLUSTER, node_name=MEMBER, disable_stonith=True)
    try:
        cluster.start()
        yield cluster
    finally:
        if cluster.node.running:
            for pidfile in PIDFILES:
                cluster.runner.run(
                    [
                        "start-stop-daemon",
                        "--stop",
                        "--oknodo",
                        "--retry",
                        "TERM/10/KILL/5",
                        "--pidfile",
                        pidfile,
                        "--remove-pidfile",
                    ]
                )
        cluster.stop()


def add_quorum_device(cluster: OneNodeCluster) -> None:
    """corosync.conf with the quorum device on loopback, reloaded into the running corosync."""
    text = render_corosync_conf(
        CLUSTER, [CorosyncNode(MEMBER, 1, "127.0.0.1")], qdevice={"host": "127.0.0.1", "port": 5403, "algorithm": "lms"}
    )
    assert "tls: on" in text
    cluster.node.host_path(COROSYNC_CONF).write_text(text)
    cluster.runner.run(["corosync-cfgtool", "-R"], check=True)

    def waiting_for_the_device() -> str | None:
        status = cluster.runner.run(["corosync-quorumtool", "-s"]).stdout
        return status if re.search(r"Quorate:\s+No", status) else None

    # one node's vote of the two now expected: not quorate until the device votes too
    wait_until(waiting_for_the_device, timeout=30, what="the node waiting for its quorum device")


def controller(tmp_path: Path) -> Path:
    """The controller's directory with what `highlander render` gives the witness."""
    directory = tmp_path / "controller"
    rendered = directory / "render" / WITNESS
    rendered.mkdir(parents=True)
    directory.chmod(0o700)
    qnetd = templates.render_template(
        "corosync-qnetd.j2",
        cluster_name=CLUSTER,
        port=5403,
        witness={"name": WITNESS, "addresses": ["127.0.0.1"]},
        members=[{"name": MEMBER}],
    )
    (rendered / "corosync-qnetd").write_text(qnetd)
    return directory


def inventory(tmp_path: Path, controller_dir: Path) -> Path:
    """Two local hosts in the node's namespace, grouped and described as inventory.py does."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
    cluster = {
        "name": CLUSTER,
        "quorum": "qdevice",
        "nodes": [
            {"name": MEMBER, "role": "active", "member": True, "addresses": ["127.0.0.1"]},
            {"name": WITNESS, "role": "witness", "member": False, "addresses": ["127.0.0.1"]},
        ],
    }
    data = {
        "highlander": {
            "vars": {
                "highlander_cluster": cluster,
                "highlander_controller_dir": str(controller_dir),
                "highlander_systemd": False,
            },
            "children": {
                "highlander_members": {"hosts": {MEMBER: local}},
                "highlander_witness": {"hosts": {WITNESS: local}},
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.cluster
def test_qdevice_role_connects_qdevice_to_qnetd_over_tls_idempotently(
    qdevice_cluster: OneNodeCluster, tmp_path: Path
) -> None:
    cluster = qdevice_cluster
    node = cluster.runner
    add_quorum_device(cluster)
    controller_dir = controller(tmp_path)
    hosts = inventory(tmp_path, controller_dir)
    playbook = tmp_path / "qdevice.yml"
    playbook.write_text(
        yaml.safe_dump(
            [{"name": "The quorum device", "hosts": "highlander", "gather_facts": False, "roles": ["qdevice"]}]
        )
    )
    env = {
        "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-tmp"),
        "PATH": f"{BIN}:{system_env()['PATH']}",
    }

    def run(*extra: str) -> dict[str, dict[str, int]]:
        result = node.run(
            [tool("ansible-playbook"), "-v", "-i", str(hosts), str(playbook), *extra], env=env, timeout=600
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        recap = _recap(output)
        assert set(recap) == {MEMBER, WITNESS}, output
        assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in recap.values()), output
        return recap

    # a check run on the fresh hosts makes nothing
    run("--check")
    untouched = node.run(["ls", "/etc/corosync/qnetd", "/etc/corosync/qdevice", *PIDFILES])
    assert untouched.stdout == "" and untouched.stderr.count("No such file") == 4, untouched
    assert not (controller_dir / "qdevice").exists()

    first = run()
    assert all(c["changed"] > 0 for c in first.values()), first

    # qdevice connected over TLS with a verified client certificate of this cluster
    def connected() -> Result | None:
        listing = node.run(["corosync-qnetd-tool", "-l", "-v"])
        return listing if f'Cluster "{CLUSTER}"' in listing.stdout else None

    listing = wait_until(connected, timeout=60, what="qdevice connected to qnetd")
    assert re.search(r"TLS active:\s+Yes \(client certificate verified\)", listing.stdout), listing.stdout

    # and it gives its vote: one node of two expected votes is quorate only with it
    def quorate() -> str | None:
        status = node.run(["corosync-quorumtool", "-s"]).stdout
        return status if re.search(r"Quorate:\s+Yes", status) else None

    quorum = wait_until(quorate, timeout=60, what="the node quorate with the device's vote")
    assert re.search(r"Total votes:\s+2", quorum), quorum
    assert re.search(r"^\s+0\s+1\s+Qdevice\s*$", quorum, re.MULTILINE), quorum  # the device's one vote
    qdevice = node.run(["corosync-qdevice-tool", "-s", "-v"]).stdout
    assert re.search(r"TLS active:\s+Yes", qdevice), qdevice
    print(listing.stdout, quorum, qdevice, sep="\n")  # the evidence, with pytest -s

    second = run()
    assert all(c["changed"] == 0 for c in second.values()), second
    checked = run("--check")
    assert all(c["changed"] == 0 for c in checked.values()), checked

    # private keys: in root-only (or root:coroqnetd) files, and never on the controller
    for database in ("/etc/corosync/qnetd/nssdb", "/etc/corosync/qdevice/net/nssdb"):
        exposed = node.run(
            ["find", database, "-type", "f", "(", "-name", "key4.db", "-o", "-name", "*.p12", ")", "-perm", "/o=rwx"],
            check=True,
        ).stdout
        assert exposed.strip() == "", exposed
    p12 = node.run(["stat", "-c", "%a %U", "/etc/corosync/qdevice/net/nssdb/qdevice-net-node.p12"], check=True)
    assert p12.stdout.split() == ["600", "root"]
    exchanged = sorted(p.name for p in (controller_dir / "qdevice").iterdir())
    assert exchanged == [f"{MEMBER}.crq", f"{MEMBER}.crt", "qnetd-cacert.crt"], exchanged
    for path in (controller_dir / "qdevice").iterdir():
        assert b"PRIVATE KEY" not in path.read_bytes(), path
    assert stat.S_IMODE(os.stat(controller_dir / "qdevice").st_mode) == 0o700
