"""Every ``highlander drill`` scenario on one lab trio, through the CLI, one
iteration each, its expected outcome asserted from the JSON report: the
failovers (power cut, freeze, partition, BMC down then power cut) move the
validator to the other active node and the failed node never signs again; a
killed signer is restarted in place; a standby or witness lost costs no
signing pause; two nodes lost stop all signing until they are back. Nothing
is ever signed twice, the trio is healthy after each. A short soak mixes
them. The validator moved by hand between iterations is found as an unasked
move, with its evidence; a failed start bans a node only until the rendered
failure-timeout. The lab is then drilled as a real cluster: over SSH from its switch
namespace, with power cuts through its own fence devices run on peers, and
never without the confirmation and known host keys. ``lab down`` leaves
nothing. The whole module takes about 9 minutes on two cores.

The pure parts (log lines, phases, the report) are tested without a lab here
and in tests/unit/test_drill_scenarios.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import HIGHLANDER
from lab_support import journals, run, running_lab
from prometheus_client.parser import text_string_to_metric_families

from highlander.adapters.pacemaker import Pacemaker
from highlander.adapters.runner import CommandRunner, system_env
from highlander.drill import measure, report
from highlander.drill.journal import Entry
from highlander.drill.scenarios import BANNED, Drill
from highlander.lab.cleanup import leftovers
from highlander.lab.controls import node_runner
from highlander.lab.plan import load_plan
from highlander.lab.site import LabSite
from highlander.lab.supervisor import SSH_KEY
from highlander.signstate.register import HRS

# --- without a lab --------------------------------------------------------------------

LOG = """\
Nov 22 01:38:33.873 node-a pacemaker-schedulerd[109] (pe_fence_node) \twarning: Cluster node node-b will be fenced
Nov 22 01:38:33.881 node-a pacemaker-controld  [110] (controld_execute_fence_action) \tnotice: Requesting fencing (reboot) of node node-b | action=1 timeout=60000
Nov 22 01:38:33.881 node-a pacemaker-fenced    [106] (handle_fence_request) \tnotice: Client pacemaker-controld.110 wants to fence (reboot) node-b using any device
Nov 22 01:38:34.157 node-a pacemaker-controld  [110] (handle_fence_notification) \tnotice: Peer node-b was terminated (reboot) by node-a on behalf of pacemaker-controld.110@node-a: OK | event=8f8b1f63
Nov 22 01:38:34.600 node-a pacemaker-controld  [110] (log_executor_event) \tnotice: Result of start operation for validator on node-a: ok | CIB update 90
not a log line
"""


def entry(node: str, epoch: int, height: int, when: float) -> Entry:
    return Entry("j", height, "k", HRS(height, 0, 1), "ab", node, epoch, when, "sig")


def test_phases_from_log_lines_and_journals() -> None:
    lines = measure.parse_log(LOG, 2026)
    assert len(lines) == 5
    cut = lines[0].time - 7.0
    events = measure.cluster_events(lines, "node-b", cut)
    assert events.fence_request is not None and "Requesting fencing" in events.fence_request.text
    assert events.fenced is not None and events.new_node == "node-a"
    assert measure.cluster_events(lines, "node-a", cut).fence_request is None
    entries = [entry("node-b", 2, 1, cut - 0.5), entry("node-b", 2, 2, cut - 0.1), entry("node-a", 3, 3, cut + 8.5)]
    gap = measure.signing_gap(entries, cut, "node-b")
    assert gap.seconds == pytest.approx(8.6)
    phases = measure.phases(cut, events, gap)
    assert phases["detection"] == pytest.approx(7.008, abs=1e-3)
    assert phases["fencing"] == pytest.approx(0.276, abs=1e-3)
    assert phases["promotion"] == pytest.approx(0.443, abs=1e-3)
    assert phases["total"] == pytest.approx(8.5, abs=1e-3)
    assert measure.overlapping_signers(entries, cut - 10) == 0
    assert measure.overlapping_signers([*entries, entry("node-b", 2, 4, cut + 9)], cut - 10) == 1
    assert measure.signed_after(entries, "node-b", cut) == []


def test_report_table_json_and_the_expected_downtime(tmp_path: Path) -> None:
    expected = report.expected_per_year(9.0, 8760, 24, missed_blocks=10, block_seconds=1.0)
    both_down = 365 * 86400 * (24 / (24 + 8760)) ** 2
    assert expected["failures_of_the_active_per_year"] == pytest.approx(1.0)
    assert expected["downtime_seconds_per_year"] == pytest.approx(9.0 + both_down)
    assert expected["missed_blocks_per_year"] == pytest.approx(10 + both_down)
    its = [
        {
            "ok": True,
            "double_signs": 0,
            "dual_active": 0,
            "phases": {"detection": d, "fencing": 0.2, "promotion": 0.5, "signing_gap": d + 1, "total": d + 0.9},
        }
        for d in (7.0, 8.0, 9.0)
    ]
    summary = report.summarize(its, 8760)
    assert summary["phases"]["detection"] == {"min": 7.0, "median": 8.0, "max": 9.0, "n": 3}
    assert summary["expected"]["failover_seconds"] == pytest.approx(8.9)
    paths = report.write(tmp_path, "power-cut-active", its, summary)
    assert json.loads(paths[0].read_text())["summary"]["ok"] is True
    text = paths[1].read_text()
    assert "detection" in text and "double signs: 0" in text and "downtime a year" in text


def test_missed_blocks_in_the_report_and_the_soak_totals() -> None:
    its = [
        {
            "ok": True,
            "double_signs": 0,
            "dual_active": 0,
            "scenario": "power-cut-active",
            "phases": dict.fromkeys(report.PHASES, 9.0),
            "missed_blocks": {"missed": m},
            "missed_after_detection": {"missed": m - 7},
            "blocks": [[1, 10.0, "committed"], [2, 11.2, "absent"]],
        }
        for m in (8, 9, 13)
    ]
    summary = report.summarize(its, 8760)
    assert summary["blocks"]["missed_blocks"]["median"] == 9 and summary["blocks"]["missed_after_detection"]["max"] == 6
    assert summary["expected"]["block_seconds"] == pytest.approx(1.2)
    assert "missed blocks" in report.table("power-cut-active", summary)
    soak = report.soak_summary(its, 8760)
    assert soak["missed_blocks_total"] == {"missed_blocks": 30, "missed_after_detection": 9}


# --- on the lab -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("drill") / "lab"
    with running_lab(directory):
        yield directory


def drill(lab: Path, report_dir: Path, scenario: str, *options: str) -> dict[str, Any]:
    """One iteration of ``scenario`` through the CLI (with ``options``); its JSON report's only
    iteration, after the checks every scenario shares."""
    started = time.monotonic()
    result = run(
        "drill", scenario, "--dir", str(lab), "--iterations", "1", "--report", str(report_dir), *options, timeout=400
    )
    print(result.stdout, f"{scenario} took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((report_dir / f"{scenario}.json").read_text())
    assert (report_dir / f"{scenario}.txt").read_text() in result.stdout + "\n"
    (it,) = data["iterations"]
    assert it["ok"] and it["failed_expectations"] == [] and data["summary"]["ok"]
    assert it["double_signs"] == 0 and it["dual_active"] == 0 and it["regressions"] == 0
    assert set(it["phases"]) == set(report.PHASES)
    rows = it["signatures"]
    assert rows and all(it["cut"] - 10 <= row[3] for row in rows) and rows == sorted(rows, key=lambda r: r[3])
    assert {row[0] for row in rows} <= {"node-a", "node-b"}  # never the witness
    check = run("check-journals", *map(str, journals(lab)))
    assert check.returncode == 0, check.stdout + check.stderr
    return it


def assert_failover(it: dict[str, Any]) -> None:
    """The validator moved to the other active node, after the failed node was fenced."""
    assert {it["target"], it["new_node"]} == {"node-a", "node-b"}  # the other active node, never the witness
    assert it["promoted_on"] == it["new_node"] and it["signed_after_cut_by_target"] == 0
    assert all(v is not None and v > 0 for v in it["phases"].values()), it["phases"]
    assert it["cut"] < it["fence_request"] < it["fenced"] < it["promoted"]


@pytest.mark.lab
def test_power_cut_active_moves_the_validator_without_double_signs(lab: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "textfile"
    metrics.mkdir()
    it = drill(lab, tmp_path, "power-cut-active", "--metrics-dir", str(metrics))
    assert_failover(it)
    exported = {
        (s.name, s.labels.get("phase"), s.labels.get("stat")): s.value
        for family in text_string_to_metric_families((metrics / "highlander_drill.prom").read_text())
        for s in family.samples
    }
    assert exported[("highlander_drill_ok", None, None)] == 1
    summary = json.loads((tmp_path / "power-cut-active.json").read_text())["summary"]
    assert exported[("highlander_drill_phase_seconds", "total", "median")] == summary["phases"]["total"]["median"]
    expected = summary["expected"]  # the failover measured here is what a failure of the active costs
    assert expected["failover_seconds"] == summary["phases"]["total"]["median"]
    assert expected["downtime_seconds_per_year"] == pytest.approx(
        expected["failures_of_the_active_per_year"] * expected["failover_seconds"]
        + expected["both_down_seconds_per_year"]
    )
    status = json.loads(run("lab", "status", "--dir", str(lab), "--json").stdout)
    assert {n: v["state"] for n, v in status["nodes"].items()} == dict.fromkeys(
        ("node-a", "node-b", "node-w"), "running"
    )


@pytest.mark.lab
def test_partition_active_is_fenced_by_the_majority_and_never_signs(lab: Path, tmp_path: Path) -> None:
    it = drill(lab, tmp_path, "partition-active")
    assert_failover(it)
    assert it["promoted"] < it["link_restored"]  # the cable went back only after the failover


@pytest.mark.lab
def test_freeze_active_is_fenced_and_never_signs_again(lab: Path, tmp_path: Path) -> None:
    it = drill(lab, tmp_path, "freeze-active")
    assert_failover(it)  # thawed, it never signed again
    assert it["phases"]["detection"] > 3.0  # frozen longer than the token (3 s) before the cluster acted


@pytest.mark.lab
def test_bmc_down_and_power_cut_active_waits_for_fencing(lab: Path, tmp_path: Path) -> None:
    it = drill(lab, tmp_path, "bmc-down-and-power-cut-active")
    assert_failover(it)
    assert it["hold_seconds"] >= 30 and it["started_during_hold"] == 0 and it["signed_during_hold"] == 0
    assert it["fence_request"] < it["restored"] < it["fenced"]  # fencing waited for the BMC
    assert it["fence_failures"] >= 1  # and the cluster kept trying meanwhile
    assert 0 < it["after_restore"]["fenced"] < it["after_restore"]["signing"]


@pytest.mark.lab
def test_kill_signer_restarts_it_in_place_without_fencing(lab: Path, tmp_path: Path) -> None:
    it = drill(lab, tmp_path, "kill-signer")
    assert it["new_node"] == it["target"] == it["promoted_on"] == it["first_signature_after"]["node"]
    assert it["fence_request"] is None and it["phases"]["fencing"] is None
    assert it["cut"] < it["monitor_failed"] < it["promoted"]
    assert all(it["phases"][k] > 0 for k in ("detection", "promotion", "signing_gap", "total")), it["phases"]


@pytest.mark.lab
@pytest.mark.parametrize("role", ["standby", "witness"])
def test_power_cut_of_a_bystander_keeps_the_validator_signing(lab: Path, tmp_path: Path, role: str) -> None:
    it = drill(lab, tmp_path, f"power-cut-{role}")
    assert it["target"] != it["new_node"]  # the cut node is not the one signing on
    assert (it["target"] == "node-w") == (role == "witness")
    assert {row[0] for row in it["signatures"] if row[3] > it["cut"]} == {it["new_node"]}
    assert it["max_gap"] <= it["max_gap_bound"] and it["phases"]["signing_gap"] == it["max_gap"]
    assert it["cut"] < it["fence_request"] < it["fenced"]
    assert it["phases"]["promotion"] is None and it["phases"]["total"] is None


@pytest.mark.lab
def test_two_nodes_down_stops_signing_until_they_are_back(lab: Path, tmp_path: Path) -> None:
    it = drill(lab, tmp_path, "two-nodes-down")
    assert it["targets"] == sorted({"node-a", "node-b", "node-w"} - {it["target"]})
    assert it["cut"] < it["quorum_lost"] < it["validator_stopped"] < it["powered_on"] < it["promoted"]
    late = [row for row in it["signatures"] if it["cut"] + 0.5 < row[3] < it["powered_on"]]
    assert late == [] and it["signed_within_grace"] <= 1
    assert it["first_signature_after"]["time"] > it["powered_on"] and it["resume_seconds"] > 0
    assert it["phases"]["fencing"] is None and it["phases"]["total"] > it["resume_seconds"]


@pytest.mark.lab
def test_a_soak_mixes_scenarios_without_double_signs(lab: Path, tmp_path: Path) -> None:
    result = run("drill", "--soak", "3", "--seed", "5", "--dir", str(lab), "--report", str(tmp_path), timeout=600)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "soak.json").read_text())
    names = [it["scenario"] for it in data["iterations"]]
    assert len(names) == 3 and len(set(names)) == 3 and set(names) <= set(data["summary"]["scenarios"])
    assert data["summary"]["ok"] and data["summary"]["double_signs"] == 0 and data["summary"]["dual_active"] == 0
    assert f"soak of 3 iterations (seed 5): {', '.join(names)}" in result.stdout


@pytest.mark.lab
def test_an_unasked_move_between_iterations_is_found_with_its_evidence(lab: Path, tmp_path: Path) -> None:
    """The validator moved by hand (crm_resource --move) after an iteration
    ended: the check before the next one reports it, with the moment's
    evidence; healthy on the other node and banned from none, the drill may go on."""
    drill = Drill(LabSite(lab), print, report_dir=tmp_path)
    drill.wait_healthy("before the move", 120)
    left = drill.placement()
    assert left is not None and len(left.nodes) == 1
    assert drill.check_placement(1, left) and drill.findings == []  # nothing moved: nothing found
    (was,) = left.nodes
    other = ({"node-a", "node-b"} - {was}).pop()
    runner = node_runner(lab, "node-w")
    runner.run(["crm_resource", "--resource", "validator", "--move", "--node", other], check=True)
    try:
        Pacemaker(runner).wait_for(f"the validator on {other}", lambda s: s.started_on("validator") == (other,), 120)
        assert drill.check_placement(2, left)  # the drill goes on: one validator, no node banned
    finally:
        runner.run(["crm_resource", "--resource", "validator", "--clear"], check=True)
    (finding,) = drill.findings
    assert (finding["left_on"], finding["now_on"], finding["stops_drill"]) == ([was], [other], False)
    assert any(f"stop operation for validator on {was}: ok" in line for line in finding["operations"])
    assert any(f"start operation for validator on {other}: ok" in line for line in finding["operations"])
    folder = tmp_path / finding["evidence"]
    assert "cli-prefer-validator" in (folder / "node-w" / "constraints.xml").read_text()  # the move, as it was
    for node in ("node-a", "node-b", "node-w"):
        for name in ("crm_mon.txt", "scores.txt", "cib.xml", "files/var/log/pacemaker/pacemaker.log"):
            assert (folder / node / name).stat().st_size > 0, f"{node}/{name}"
    assert "UNASKED MOVE" in (folder / "drill.log").read_text() and (folder / "site" / "events.jsonl").exists()


# --- on the lab, driven over SSH as a real cluster ---------------------------------------


def remote(lab: Path, *args: str, known_hosts: Path | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``highlander drill ARGS --inventory`` from the lab's switch namespace, as from
    an operator's machine on the cluster's network: the lab's nodes are reached
    only over SSH (the lab's key, their host keys), their BMCs only through them."""
    plan, _ = load_plan(lab)
    ssh = lab / "ssh"
    argv = [
        "ip",
        "netns",
        "exec",
        plan.switch,
        *HIGHLANDER,
        "drill",
        *args,
        "--inventory",
        str(plan.inventory),
        "--ssh-key",
        str(ssh / SSH_KEY),
        "--known-hosts",
        str(known_hosts or ssh / "known_hosts"),
    ]
    result = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=400, check=False, env=system_env()
    )
    print(result.stdout, result.stderr)
    return result


def bmc_events(lab: Path) -> dict[str, str]:
    return {n: (lab / "bmc" / n / "events.log").read_text() for n in ("node-a", "node-b", "node-w")}


@pytest.mark.lab
@pytest.mark.parametrize("scenario", ["power-cut-active", "kill-signer"])
def test_a_real_cluster_is_drilled_over_ssh(lab: Path, tmp_path: Path, scenario: str) -> None:
    result = remote(lab, scenario, "--yes", "--report", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "will really fail nodes of cluster 'lab'" in result.stdout
    (it,) = json.loads((tmp_path / f"{scenario}.json").read_text())["iterations"]
    assert it["ok"] and it["double_signs"] == 0 and it["dual_active"] == 0 and it["failed_expectations"] == []
    if scenario == "power-cut-active":
        assert_failover(it)
    else:
        assert it["new_node"] == it["target"] and it["fence_request"] is None
    copies = sorted(tmp_path.glob("journals/*/journal-*.jsonl"))  # the journals, as read over SSH
    assert {p.parent.name for p in copies} == {"node-a", "node-b"}
    for copy in copies:
        original = (lab / "nodes" / copy.parent.name / "root/var/log/highlander" / copy.name).read_bytes()
        assert copy.read_bytes() and original.startswith(copy.read_bytes())
    check = run("check-journals", *map(str, copies))
    assert check.returncode == 0, check.stdout + check.stderr


def score(runner: CommandRunner, node: str) -> str:
    """The validator's allocation score on ``node``, as the live scheduler computes it now."""
    shown = runner.run(["crm_simulate", "--live-check", "--show-scores"], check=True).stdout
    return next(
        line.rsplit(": ", 1)[1]
        for line in shown.splitlines()
        if line.startswith("pcmk__primitive_assign: validator allocation score on " + node + ":")
    )


@pytest.mark.lab
def test_a_failed_start_bans_a_node_only_until_the_failure_expires(lab: Path) -> None:
    """A start of the validator that fails once on the standby (here its signer
    cannot open its journal there and exits) is fatal: the fail count is
    INFINITY and bans the standby from every failover. The rendered
    failure-timeout (60 s) lifts the ban; nothing moves when it does."""
    runner = node_runner(lab, "node-w")
    pacemaker = Pacemaker(runner)
    (active,) = pacemaker.wait_for("a validator", lambda s: len(s.started_on("validator")) == 1, 120).started_on(
        "validator"
    )
    standby = ({"node-a", "node-b"} - {active}).pop()
    journal = lab / "nodes" / standby / "root/var/log/highlander" / f"journal-{standby}.jsonl"
    saved = journal.with_name(journal.name + ".saved")
    if journal.exists():
        journal.rename(saved)
    journal.mkdir()
    try:
        runner.run(["crm_resource", "--resource", "validator", "--move", "--node", standby], check=True)
        pacemaker.wait_for(
            "the failed start on the standby", lambda s: s.fail_counts.get((standby, "validator"), 0) >= BANNED, 120
        )
        failed = time.time()
        runner.run(["crm_resource", "--resource", "validator", "--clear"], check=True)
        pacemaker.wait_for("the validator back", lambda s: s.started_on("validator") == (active,), 120)
        assert score(runner, standby) == "-INFINITY"
        deadline = time.monotonic() + 120
        while score(runner, standby) == "-INFINITY":
            assert time.monotonic() < deadline, "the failed start still bans the standby after 120 s"
            time.sleep(2)
        assert time.time() - failed >= 45  # the failure-timeout, not sooner
        assert pacemaker.status().started_on("validator") == (active,)
    finally:
        runner.run(["crm_resource", "--resource", "validator", "--clear"])
        journal.rmdir()
        if saved.exists():
            saved.rename(journal)
        runner.run(["crm_resource", "--cleanup", "--resource", "validator"], check=True)


# Collects a real cluster's evidence over SSH (argv: inventory, key, known_hosts, folder); prints what it could not.
COLLECT = """
import json, sys
from pathlib import Path
from highlander.drill.remote import RemoteSite
from highlander.inventory import load
inventory, key, known_hosts, folder = map(Path, sys.argv[1:])
site = RemoteSite(load(inventory), folder / "cache", key_file=key, known_hosts=known_hosts)
print(json.dumps(site.collect(folder, 0.0)))
site.close()
"""


@pytest.mark.lab
def test_a_real_clusters_evidence_is_collected_over_ssh(lab: Path, tmp_path: Path) -> None:
    plan, _ = load_plan(lab)
    ssh = lab / "ssh"
    argv = [
        "ip",
        "netns",
        "exec",
        plan.switch,
        sys.executable,
        "-c",
        COLLECT,
        str(plan.inventory),
        str(ssh / SSH_KEY),
        str(ssh / "known_hosts"),
        str(tmp_path),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env=system_env())
    assert result.returncode == 0, result.stdout + result.stderr
    problems = json.loads(result.stdout)
    assert all("journalctl" in problem for problem in problems), problems  # the lab's nodes run no systemd
    for node in ("node-a", "node-b", "node-w"):
        for name in (
            "crm_mon.txt",
            "constraints.xml",
            "cib.xml",
            "scores.txt",
            "files/var/log/pacemaker/pacemaker.log",
            "files/var/log/highlander/signstate-signstate.log",
        ):
            assert (tmp_path / node / name).stat().st_size > 0, f"{node}/{name}"
    for node in ("node-a", "node-b"):
        copy = tmp_path / node / f"files/var/log/highlander/journal-{node}.jsonl"
        original = lab / "nodes" / node / f"root/var/log/highlander/journal-{node}.jsonl"
        assert copy.read_bytes() and original.read_bytes().startswith(copy.read_bytes())


@pytest.mark.lab
def test_a_real_cluster_is_not_touched_without_confirmation_or_known_hosts(lab: Path, tmp_path: Path) -> None:
    before = bmc_events(lab)
    typed = remote(lab, "power-cut-active", stdin="prod\n")
    assert typed.returncode == 1 and "'prod' is not 'lab': nothing was done" in typed.stdout + typed.stderr
    refused = remote(lab, "freeze-active", "--yes")
    assert refused.returncode == 1 and "lab only" in refused.stderr
    (tmp_path / "known_hosts").write_text("")
    unknown = remote(lab, "power-cut-active", "--yes", known_hosts=tmp_path / "known_hosts")
    assert unknown.returncode == 1 and "unknown host key" in unknown.stderr
    assert bmc_events(lab) == before  # no power was cut


@pytest.mark.lab
def test_lab_down_after_the_drill_leaves_nothing(lab: Path) -> None:
    result = run("lab", "down", "--dir", str(lab), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert leftovers(lab) == []
