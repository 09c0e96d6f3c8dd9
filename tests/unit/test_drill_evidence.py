"""The drill's handling of failures, without a cluster: a failed or stopped
iteration keeps its evidence before the next one runs, an unasked move of the
validator between iterations is a finding of its own (which stops the drill
when the next iteration could measure nothing valid), and the report names
each evidence folder. The evidence itself, collected from a real lab, is
tested in tests/cluster/test_drill.py and test_drill_negative.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from highlander.adapters.pacemaker import ClusterStatus, ResourceState
from highlander.drill.workload import DEMO
from highlander.drill import measure, report, scenarios
from highlander.drill.scenarios import SCENARIOS, Drill, DrillError
from highlander.inventory import parse

INVENTORY = """\
cluster: {name: t}
nodes:
  - {name: node-a, addresses: [192.0.2.1], fence: [{method: ipmi, address: 192.0.2.101, username: f, password_file: /p}]}
  - {name: node-b, addresses: [192.0.2.2], fence: [{method: ipmi, address: 192.0.2.102, username: f, password_file: /p}]}
  - {name: node-w, role: witness, addresses: [192.0.2.3],
     fence: [{method: ipmi, address: 192.0.2.103, username: f, password_file: /p}]}
validator: {command: /usr/bin/signer, chain_id: t-1, key_id: v, health_url: "http://127.0.0.1:26657/status"}
"""
LOG = "/var/log/pacemaker/pacemaker.log"
# What node-w (the DC) and node-b log when the validator moves from node-a to node-b.
MOVE = """\
Nov 22 03:00:01.000 node-w pacemaker-controld  [80] (log_executor_event) \tnotice: Result of stop operation for validator on node-a: ok | CIB update 50, graph action confirmed; call=40 key=validator_stop_0 rc=0
Nov 22 03:00:02.000 node-w pacemaker-controld  [80] (log_executor_event) \tnotice: Result of start operation for validator on node-b: ok | CIB update 51, graph action confirmed; call=31 key=validator_start_0 rc=0
"""
ALSO_ON_B = """\
Nov 22 03:00:02.001 node-b pacemaker-controld  [90] (log_executor_event) \tnotice: Result of start operation for validator on node-b: ok | CIB update 51, graph action confirmed; call=31 key=validator_start_0 rc=0
Nov 22 03:00:03.000 node-b pacemaker-controld  [90] (log_executor_event) \tnotice: Result of monitor operation for validator on node-b: ok | call=32
"""


def status(on: tuple[str, ...], fail_counts: dict[tuple[str, str], int] | None = None) -> ClusterStatus:
    names = ("node-a", "node-b", "node-w")
    resources = (
        ResourceState("validator", "ocf:highlander:validator", "Started", bool(on), False, on),
        *(ResourceState("signstate", "ocf:highlander:signstate", "Started", True, False, (n,)) for n in names),
    )
    return ClusterStatus("node-w", True, names, resources, fail_counts or {})


class FakeSite:
    """A cluster told by hand: its status, each node's Pacemaker log, and the
    evidence it is asked for (one file per collection)."""

    failures = frozenset({"power"})
    workload = DEMO

    def chain(self) -> None:
        return None

    def __init__(self) -> None:
        self.inventory = parse(yaml.safe_load(INVENTORY))
        self.now = status(("node-a",))
        self.logs = {"node-a": b"", "node-b": b"", "node-w": b""}
        self.collected: list[Path] = []

    def status(self, avoid: str | None = None) -> ClusterStatus:
        return self.now

    def file_size(self, name: str, path: str) -> int:
        return len(self.logs[name]) if path == LOG else 0

    def read_from(self, name: str, path: str, offset: int) -> bytes:
        return self.logs[name][offset:] if path == LOG else b""

    def journal_paths(self) -> list[Path]:
        return []

    def collect(self, folder: Path, since: float) -> list[str]:
        (folder / "node-a").mkdir(parents=True)
        (folder / "node-a" / "crm_mon.txt").write_text(f"as seen when collected into {folder.name}\n")
        self.collected.append(folder)
        return ["node-b: powered off"]


@pytest.fixture
def site() -> FakeSite:
    return FakeSite()


def steps(monkeypatch: pytest.MonkeyPatch, results: list[Any]) -> list[int]:
    """Every scenario's step replaced by the next of ``results``: a record's ``ok``,
    an exception to raise, or a callable run first (a move between iterations)."""
    ran: list[int] = []

    def step(drill: Drill, iteration: int, name: str) -> dict[str, Any]:
        ran.append(iteration)
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return {
            "iteration": iteration,
            "scenario": name,
            "ok": result,
            "double_signs": 0,
            "dual_active": 0,
            "failed_expectations": [] if result else ["the validator moves to the other active node"],
            "phases": dict.fromkeys(report.PHASES),
        }

    for name, scenario in list(SCENARIOS.items()):
        monkeypatch.setitem(scenarios.SCENARIOS, name, replace(scenario, step=step))
    return ran


def test_a_failed_iteration_keeps_its_evidence_and_the_drill_goes_on(
    site: FakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = steps(monkeypatch, [True, False, True])
    drill = Drill(site, say=lambda line: None, report_dir=tmp_path)  # type: ignore[arg-type]
    records = drill.run("power-cut-active", 3)
    assert ran == [1, 2, 3] and [r["ok"] for r in records] == [True, False, True]
    assert "evidence" not in records[0] and records[1]["evidence"] == "evidence/02-power-cut-active"
    folder = tmp_path / records[1]["evidence"]
    assert site.collected == [folder] and (folder / "node-a" / "crm_mon.txt").read_text()
    assert json.loads((folder / "record.json").read_text())["failed_expectations"] == [
        "the validator moves to the other active node"
    ]
    index = json.loads((folder / "index.json").read_text())
    assert index["not_collected"] == ["node-b: powered off"]
    assert {"drill.log", "record.json", "node-a/crm_mon.txt"} <= set(index["files"])
    assert "iteration 2 (power-cut-active) failed" in index["what"]


def test_an_error_keeps_its_evidence_and_ends_the_drill(
    site: FakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    ran = steps(monkeypatch, [True, DrillError("[2] the validator did not sign elsewhere within 120 s"), True])
    drill = Drill(site, say=lines.append, report_dir=tmp_path)  # type: ignore[arg-type]
    records = drill.run("power-cut-active", 3)
    assert ran == [1, 2] and len(records) == 2  # the third never ran
    failed = records[1]
    assert not failed["ok"] and failed["error"] == "[2] the validator did not sign elsewhere within 120 s"
    assert failed["phases"] == dict.fromkeys(report.PHASES) and failed["evidence"] == "evidence/02-power-cut-active"
    log = (tmp_path / failed["evidence"] / "drill.log").read_text()
    assert "[2] FAILED: [2] the validator did not sign elsewhere" in log and "Traceback" in log
    assert any("keeping the evidence in" in line for line in lines)
    summary = report.summarize(records, 8760)
    assert not summary["ok"] and summary["failures"] == [
        "iteration 2 (power-cut-active) FAILED: [2] the validator did not sign elsewhere within 120 s; "
        "evidence: evidence/02-power-cut-active"
    ]
    assert "  ! iteration 2 (power-cut-active) FAILED" in report.table("power-cut-active", summary)


def test_without_a_report_directory_the_evidence_gets_one(
    site: FakeSite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    steps(monkeypatch, [False])
    drill = Drill(site, say=lambda line: None)  # type: ignore[arg-type]
    (record,) = drill.run("kill-signer", 1)
    assert drill.report_dir is not None and drill.report_dir.parent == tmp_path
    assert (drill.report_dir / record["evidence"] / "index.json").exists()


def test_validator_operations_are_read_once_each_from_every_log() -> None:
    lines = measure.parse_log(MOVE + ALSO_ON_B, 2026)
    changes = measure.placement_changes(lines)
    assert [c.text.split("notice: ")[1].split(" |")[0] for c in changes] == [
        "Result of stop operation for validator on node-a: ok",
        "Result of start operation for validator on node-b: ok",
    ]
    assert measure.placement_changes(lines, "signstate") == []


def moved(site: FakeSite, on: tuple[str, ...], fail_counts: dict[tuple[str, str], int] | None = None) -> None:
    """What the cluster did unasked: the logs of a move, and where it runs now."""
    site.logs["node-w"] += MOVE.encode()
    site.logs["node-b"] += ALSO_ON_B.encode()
    site.now = status(on, fail_counts)


def test_a_move_between_iterations_is_a_finding_with_its_evidence(
    site: FakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = steps(monkeypatch, [True, True])
    lines: list[str] = []
    drill = Drill(site, say=lines.append, report_dir=tmp_path)  # type: ignore[arg-type]
    taken: list[object] = []
    where = drill.placement

    def placement() -> scenarios.Placement | None:
        taken.append(left := where())
        if len(taken) == 2:
            moved(site, ("node-b",))  # once the first iteration ended: nobody asked
        return left

    monkeypatch.setattr(drill, "placement", placement)
    records = drill.run("power-cut-active", 2)
    assert ran == [1, 2] and all(r["ok"] for r in records)  # the next iteration measures from node-b
    (finding,) = drill.findings
    assert finding["before_iteration"] == 2 and finding["left_on"] == ["node-a"] and finding["now_on"] == ["node-b"]
    assert len(finding["operations"]) == 2 and not finding["stops_drill"]
    assert finding["evidence"] == "evidence/before-02" and site.collected == [tmp_path / "evidence/before-02"]
    assert any("UNASKED MOVE before this iteration" in line for line in lines)
    summary = report.summarize(records, 8760, findings=drill.findings)
    assert not summary["ok"] and summary["unasked_moves"] == 1
    assert summary["failures"] == [
        "before iteration 2: the validator moved UNASKED (left on node-a, then on "
        "node-b, 2 start/stop); evidence: evidence/before-02"
    ]
    paths = report.write(tmp_path, "power-cut-active", records, summary, drill.findings)
    assert json.loads(paths[0].read_text())["findings"][0]["evidence"] == "evidence/before-02"
    page = paths[2].read_text()
    assert "unasked move before iteration 2" in page and 'href="evidence/before-02/"' in page
    assert page.index("unasked move before iteration 2") < page.index("iteration 2</h2>")


def test_a_move_that_bans_an_active_node_stops_the_drill(
    site: FakeSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = steps(monkeypatch, [True, True])
    drill = Drill(site, say=lambda line: None, report_dir=tmp_path)  # type: ignore[arg-type]
    left = drill.placement()
    assert left is not None and left.nodes == ("node-a",)
    moved(site, ("node-b",), {("node-a", "validator"): scenarios.BANNED})  # its start failed on node-a
    assert drill.check_placement(5, left) is False
    (finding,) = drill.findings
    assert finding["stops_drill"] and "bans the validator from node-a" in finding["reason"]
    assert finding["fail_counts"] == {"node-a": scenarios.BANNED}
    assert ran == []


def test_a_second_active_stops_the_drill_and_nothing_moved_is_no_finding(site: FakeSite, tmp_path: Path) -> None:
    drill = Drill(site, say=lambda line: None, report_dir=tmp_path, timeout=0.1)  # type: ignore[arg-type]
    left = drill.placement()
    assert left is not None and drill.check_placement(1, left) and drill.findings == []
    site.now = status(("node-a", "node-b"))
    assert drill.check_placement(2, left) is False
    (finding,) = drill.findings
    assert finding["now_on"] == ["node-a", "node-b"] and finding["operations"] == []
    assert "not healthy" in finding["reason"]
