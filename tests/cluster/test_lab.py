"""The three-node lab end to end, through the CLI: ``highlander lab up`` from
examples/lab.yml, the trio, fencing through a simulated BMC, ``lab down``.

One lab per module (it takes ~15 s to form); the tests run in file order and
the fixture takes the lab down whatever happens, by the PIDs and names the
lab recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import HIGHLANDER

from highlander.adapters.pacemaker import parse_status
from highlander.adapters.runner import system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.cleanup import cleanup, leftovers
from highlander.lab.controls import bmc_power, node_init
from highlander.lab.node import processes_in, same_process
from highlander.lab.records import EVENTS_FILE, read_state

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "examples" / "lab.yml"
PROGRAMS = (
    "ip",
    "unshare",
    "nsenter",
    "corosync",
    "pacemakerd",
    "crm_mon",
    "cibadmin",
    "stonith_admin",
    "ipmi_sim",
    "sshd",
    "ssh",
    "ssh-keygen",
)
TIMINGS: dict[str, float] = {}


def cli(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HIGHLANDER, "lab", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=system_env(),
    )


def crm_status(directory: Path) -> object:
    result = cli(
        "exec", "--dir", str(directory), "node-a", "--", "crm_mon", "-1", "--inactive", "--output-as=xml", timeout=30
    )
    return parse_status(result.stdout) if result.returncode == 0 else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates namespaces and starts Pacemaker")
    path = system_env()["PATH"]
    missing = [p for p in PROGRAMS if shutil.which(p, path=path) is None]
    if missing:
        pytest.fail(f"lab programs not installed: {', '.join(missing)} (run ./bootstrap test)")
    directory = tmp_path_factory.mktemp("lab") / "lab"
    try:
        started = time.monotonic()
        result = cli(
            "up",
            "--inventory",
            str(INVENTORY),
            "--dir",
            str(directory),
            "--timeout",
            "240",
            "--workload",
            "demo-signer",
            timeout=300,
        )
        TIMINGS["lab up"] = time.monotonic() - started
        assert result.returncode == 0, f"lab up failed:\n{result.stdout}\n{result.stderr}"
        print(result.stdout)
        yield directory
    finally:
        cli("down", "--dir", str(directory), timeout=180)
        cleanup(directory)  # by the records, should the CLI have failed
        print("lab timings:", ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def test_lab_up_shows_progress_and_timings(lab: Path) -> None:
    events = [json.loads(line) for line in (lab / EVENTS_FILE).read_text().splitlines()]
    assert [e["kind"] for e in events][-1] == "ready"
    state = read_state(lab)
    assert state is not None and state["phase"] == "up"
    assert set(state["timings"]) == {"quorate", "validator"}


def test_the_trio_is_quorate_with_fencing_and_the_validator_on_an_active_node(lab: Path) -> None:
    status = crm_status(lab)
    assert status is not None
    assert status.quorate and status.dc
    assert set(status.online) == {"node-a", "node-b", "node-w"}
    assert set(status.started_on("validator")) <= {"node-a", "node-b"}
    assert len(status.started_on("validator")) == 1
    assert sorted(status.clone_nodes("signstate")) == ["node-a", "node-b", "node-w"]
    stonith = cli(
        "exec",
        "--dir",
        str(lab),
        "node-a",
        "--",
        "crm_attribute",
        "--type",
        "crm_config",
        "--name",
        "stonith-enabled",
        "--query",
        "--quiet",
    )
    assert stonith.stdout.strip() == "true"


def test_lab_exec_and_status(lab: Path) -> None:
    result = cli("exec", "--dir", str(lab), "node-a", "--", "crm_mon", "-1")
    assert result.returncode == 0, result.stderr
    assert "Online: [ node-a node-b node-w ]" in result.stdout
    assert cli("exec", "--dir", str(lab), "node-w", "--", "hostname").stdout.strip() == "node-w"
    assert cli("exec", "--dir", str(lab), "node-a", "--", "sh", "-c", "exit 3").returncode == 3
    shown = cli("status", "--dir", str(lab))
    assert shown.returncode == 0, shown.stderr
    report = json.loads(cli("status", "--dir", str(lab), "--json").stdout)
    assert {n: (v["state"], v["bmc_power"]) for n, v in report["nodes"].items()} == {
        "node-a": ("running", "on"),
        "node-b": ("running", "on"),
        "node-w": ("running", "on"),
    }


def test_nodes_are_reachable_over_ssh_from_the_switch(lab: Path) -> None:
    state = read_state(lab)
    assert state is not None
    switch = state["plan"]["switch"]
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            switch,
            "ssh",
            "-F",
            str(lab / "ssh" / "ssh_config"),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "node-b",
            "hostname",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=system_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "node-b"


def test_fencing_powers_a_node_off_through_its_bmc_and_power_on_boots_it(lab: Path) -> None:
    record = json.loads((lab / "nodes" / "node-b" / "node.json").read_text())
    namespace = record["pid_namespace"]
    assert processes_in(namespace)

    started = time.monotonic()
    fenced = cli(
        "exec", "--dir", str(lab), "node-a", "--", "stonith_admin", "--fence", "node-b", "--timeout", "60", timeout=90
    )
    TIMINGS["fence node-b (off, confirmed)"] = time.monotonic() - started
    assert fenced.returncode == 0, fenced.stdout + fenced.stderr
    assert bmc_power(lab, "node-b") == "off"
    assert processes_in(namespace) == []
    assert node_init(lab, "node-b") is None
    assert "off" in (lab / "bmc" / "node-b" / "events.log").read_text()

    survivors = wait_until(
        lambda: (
            (s := crm_status(lab)) is not None
            and "node-b" not in s.online
            and s.quorate
            and s.started_on("validator") == ("node-a",)
            and s
        ),
        timeout=60,
        what="node-a and node-w quorate without node-b, the validator running",
    )
    assert survivors.started_on("validator") == ("node-a",)  # never the witness

    # Power on through the BMC, with the agent and the password file as the cluster uses them.
    options = (
        "action=on\nip=10.213.0.112\nusername=fence\n"
        "password_script=/bin/cat /etc/highlander/secrets/bmc-node-b\ncipher=3\n"
    )
    started = time.monotonic()
    on = cli("exec", "--dir", str(lab), "node-a", "--", "fence_highlander_ipmi", stdin=options, timeout=60)
    assert on.returncode == 0, on.stdout + on.stderr
    assert bmc_power(lab, "node-b") == "on"
    wait_until(
        lambda: (
            (s := crm_status(lab)) is not None
            and set(s.online) == {"node-a", "node-b", "node-w"}
            and sorted(s.clone_nodes("signstate")) == ["node-a", "node-b", "node-w"]
        ),
        timeout=90,
        what="node-b back online with its signstate replica",
    )
    TIMINGS["power on until node-b rejoined"] = time.monotonic() - started
    assert node_init(lab, "node-b") is not None


def test_lab_down_leaves_nothing(lab: Path) -> None:
    state = read_state(lab)
    assert state is not None
    records = [json.loads((lab / "nodes" / n / "node.json").read_text()) for n in ("node-a", "node-b", "node-w")]
    pids = [state["supervisor"]["pid"]] + [b["pid"] for b in state["bmcs"].values()]
    pids += [r["init_pid"] for r in records]
    names = [n["netns"] for n in state["plan"]["nodes"]] + [state["plan"]["switch"]]

    started = time.monotonic()
    result = cli("down", "--dir", str(lab), timeout=180)
    TIMINGS["lab down"] = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert leftovers(lab) == []
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(name in listing for name in names)
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert not any(name in mountinfo for name in names)
    assert str(lab) not in mountinfo
    for record in records:
        assert processes_in(record["pid_namespace"]) == []
    recorded = {(b["pid"], b["start_time"]) for b in state["bmcs"].values()}
    recorded.add((state["supervisor"]["pid"], state["supervisor"]["start_time"]))
    assert not [pid for pid, started_at in recorded if same_process(pid, started_at)], pids
