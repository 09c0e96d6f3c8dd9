"""Fence outcomes as metrics: the installed agents and ``highlander fence``,
against the real simulators, leave node_exporter's textfile with
``metrics_dir``; prometheus_client's own parser reads it back.

A fence that failed must show as ``result="failure"`` (the alert
``HighlanderFenceFailed`` pages on it), and the file must hold no address,
user or password: it is readable by all.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from fence_agents import run, ours
from prometheus_client.parser import text_string_to_metric_families

from harness import HIGHLANDER
from simulators import ipmi_options

from highlander.adapters.metrics import FENCE_TEXTFILE
from highlander.lab.ipmisim import IpmiSim
from highlander.lab.redfishsim import RedfishSimulator


def runs(directory: Path) -> dict[tuple[str, str, str], float]:
    """highlander_fence_runs_total by (agent, action, result), as Prometheus would read it."""
    text = (directory / FENCE_TEXTFILE).read_text()
    return {
        (s.labels["agent"], s.labels["action"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "highlander_fence_runs_total"
    }


def assert_public_and_secret_free(directory: Path, *secrets: str) -> None:
    path = directory / FENCE_TEXTFILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    text = path.read_text()
    for secret in secrets:
        assert secret not in text
    assert "127.0.0.1" not in text
    labels = {name for family in text_string_to_metric_families(text) for s in family.samples for name in s.labels}
    assert labels == {"agent", "action", "result"}


def test_the_ipmi_agent_counts_a_verified_off_and_a_failed_login(ipmi_bmc: IpmiSim, tmp_path: Path) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    done = run(ours("fence_highlander_ipmi"), ipmi_bmc.fence_stdin("off", metrics_dir=metrics))
    assert done.returncode == 0, done
    assert ipmi_bmc.power == "off"
    status = run(ours("fence_highlander_ipmi"), ipmi_bmc.fence_stdin("status", metrics_dir=metrics))
    assert status.returncode == 2  # reached, power off: an answer, not a failure
    wrong = run(
        ours("fence_highlander_ipmi"),
        ipmi_bmc.fence_stdin("reboot", password="not-" + ipmi_bmc.password, metrics_dir=metrics),
    )
    assert wrong.returncode == 1
    assert len(wrong.error_lines) == 1, wrong  # the metrics add no line to a failure
    assert runs(metrics) == {
        ("fence_highlander_ipmi", "off", "success"): 1,
        ("fence_highlander_ipmi", "status", "success"): 1,
        ("fence_highlander_ipmi", "reboot", "failure"): 1,
    }
    assert_public_and_secret_free(metrics, ipmi_bmc.password, "admin")


def test_the_redfish_agent_counts_a_failure_next_to_the_ipmi_agents_runs(
    redfish_bmc: RedfishSimulator, tmp_path: Path
) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    options = {
        "ip": redfish_bmc.host,
        "ipport": redfish_bmc.port,
        "username": redfish_bmc.username,
        "ssl_ca_file": redfish_bmc.ca_file,
        "metrics_dir": metrics,
    }
    assert (
        run(
            ours("fence_highlander_redfish"), {**options, "action": "status", "password": redfish_bmc.password}
        ).returncode
        == 0
    )
    failed = run(ours("fence_highlander_redfish"), {**options, "action": "off", "password": "wrong"})
    assert failed.returncode == 1
    assert redfish_bmc.power_state() == "On"
    assert runs(metrics) == {
        ("fence_highlander_redfish", "status", "success"): 1,
        ("fence_highlander_redfish", "off", "failure"): 1,
    }
    assert_public_and_secret_free(metrics, redfish_bmc.password, redfish_bmc.username)


def test_highlander_fence_counts_its_attempts(ipmi_bmc: IpmiSim, tmp_path: Path) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    secret = tmp_path / "pw"
    secret.write_text(ipmi_bmc.password)
    secret.chmod(0o600)
    done = subprocess.run(
        [
            *HIGHLANDER,
            "fence",
            "peer",
            "--action",
            "off",
            "--yes",
            *ipmi_options(ipmi_bmc, secret),
            "--option",
            "cipher=3",
            "--metrics-dir",
            str(metrics),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert runs(metrics) == {("fence_highlander_ipmi", "off", "success"): 1}
    assert_public_and_secret_free(metrics, ipmi_bmc.password)


def test_an_unwritable_metrics_dir_does_not_change_the_fence(ipmi_bmc: IpmiSim, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory"
    done = run(ours("fence_highlander_ipmi"), ipmi_bmc.fence_stdin("status", metrics_dir=missing))
    assert done.returncode == 0, done
    assert done.error_lines == [
        f"Warning: the outcome was not written to metrics_dir {missing}: No such file or directory"
    ]


def test_metrics_dir_is_refused_with_via_cluster(tmp_path: Path) -> None:
    """Pacemaker's devices count what they do with their own metrics_dir: nothing is promised here."""
    done = subprocess.run(
        [*HIGHLANDER, "fence", "node-b", "--action", "status", "--via-cluster", "--metrics-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--metrics-dir counts fencing done here" in done.stderr
    assert list(tmp_path.iterdir()) == []
