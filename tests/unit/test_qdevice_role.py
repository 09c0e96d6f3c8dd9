"""The qdevice role's fixed facts against the template and the tools it drives (no daemon started).

- Without systemd the role starts corosync-qnetd as its unit does, with the
  options of /etc/default/corosync-qnetd (rendered from
  templates/corosync-qnetd.j2): the shell that sources the settings must hand
  corosync-qnetd exactly the rendered arguments.
- The role names the NSS databases, the certificate nickname and the files of
  corosync-qnetd-certutil and corosync-qdevice-net-certutil; those are fixed
  inside the installed tools, so a packaged version that moves them must
  fail here rather than in a rollout.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from highlander import templates

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "qdevice"
QNETD_CERTUTIL = Path("/usr/bin/corosync-qnetd-certutil")
QDEVICE_CERTUTIL = Path("/usr/sbin/corosync-qdevice-net-certutil")


def role_vars() -> dict[str, object]:
    data = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert isinstance(data, dict)
    return data


def shell_assignments(script: Path) -> dict[str, str]:
    """The tool's top-level NAME="value" lines, with $OTHER references expanded."""
    if not script.exists():
        pytest.fail(f"{script} is not installed (./bootstrap installs corosync-qnetd and corosync-qdevice)")
    values: dict[str, str] = {}
    for name, value in re.findall(r'^([A-Z0-9_]+)="([^"]*)"$', script.read_text(), re.MULTILINE):
        values[name] = re.sub(r"\$([A-Z0-9_]+)", lambda m: values.get(m.group(1), m.group(0)), value)
    return values


def test_qnetd_gets_the_rendered_options_when_started_without_systemd(tmp_path: Path) -> None:
    settings = tmp_path / "corosync-qnetd"
    settings.write_text(
        templates.render_template(
            "corosync-qnetd.j2",
            cluster_name="validators",
            port=5403,
            witness={"name": "qnetd", "addresses": ["192.0.2.13"]},
            members=[{"name": "node-a"}, {"name": "node-b"}],
        )
    )
    start = role_vars()["qdevice_qnetd_start"]
    assert isinstance(start, list)
    script = start[-1]
    assert script.startswith(". /etc/default/corosync-qnetd && exec /usr/bin/corosync-qnetd -f "), script
    # the same shell line, reading the rendered file and printing what corosync-qnetd would get
    probe = script.replace("/etc/default/corosync-qnetd", str(settings)).replace(
        "/usr/bin/corosync-qnetd", "printf '%s\\n'"
    )
    argv = subprocess.run(["/bin/sh", "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert argv[:-1] == ["-f", "-l", "192.0.2.13", "-p", "5403", "-s", "req"]


def test_the_role_names_the_certutils_own_databases_and_files() -> None:
    qnetd, qdevice, role = shell_assignments(QNETD_CERTUTIL), shell_assignments(QDEVICE_CERTUTIL), role_vars()
    assert role["qdevice_qnetd_dir"] == qnetd["CONFIG_DIR"]
    assert role["qdevice_qnetd_db"] == qnetd["DB_DIR"] == qdevice["DB_DIR_QNETD"]
    assert role["qdevice_net_dir"] == qdevice["BASE_DIR"]
    assert role["qdevice_net_db"] == qdevice["DB_DIR_NODE"]
    assert role["qdevice_cert_nickname"] == qdevice["CLUSTER_NICKNAME"]
    assert role["qdevice_signed_file"] == "{{ qdevice_qnetd_db }}/cluster-{{ highlander_cluster.name }}.crt"
    assert 'CRT_FILE="$DB_DIR/cluster-$CLUSTER_NAME.crt"' in QNETD_CERTUTIL.read_text()
    tasks = "".join(p.read_text() for p in sorted((ROLE / "tasks").glob("*.yml")))
    for name in (qdevice["CRQ_FILE_BASE"], qdevice["P12_FILE_BASE"], Path(qnetd["CA_EXPORT_FILE"]).name):
        assert name in tasks, name
