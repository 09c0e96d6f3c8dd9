"""The negative control: with every guard off, the drill must catch the double sign.

A lab with ``--stack unguarded`` (stonith-enabled=false, the validator
agent's sign-state gate off, the signer run with ``--no-guard``): freezing
the active node longer than the token makes the cluster start the validator
on the other node without fencing the frozen one, which signs again as soon
as it is thawed. ``highlander drill freeze-active`` must then fail, and its
report and ``highlander check-journals`` must name the double sign (same key
and height/round/step, different digests). A checker that cannot fail
proves nothing. The failed iteration keeps its evidence in the report
directory before anything else runs: every node's crm_mon, constraints, CIB
and scores, the logs and journals, the lab's events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_support import failing_drill, journals, run, running_lab

from highlander.lab.cleanup import leftovers
from highlander.lab.controls import node_runner

# Seconds the drill may wait for the validator to sign elsewhere: nothing is
# fenced in this stack, and the drill's wait for a fence confirmation that
# never comes is bounded by the drill itself.
DRILL_TIMEOUT = 90


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("negative") / "lab"
    with running_lab(directory, "--stack", "unguarded") as up:
        assert "NOT safe" in up.stdout  # the loud warning
        yield directory


@pytest.mark.lab
def test_the_lab_says_it_runs_unguarded(lab: Path) -> None:
    status = json.loads(run("lab", "status", "--dir", str(lab), "--json").stdout)
    assert status["stack"] == "unguarded"
    config = node_runner(lab, "node-w").run(
        ["crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--query", "--quiet"], check=True
    )
    assert config.stdout.strip() == "false"


@pytest.mark.lab
def test_freeze_active_unguarded_fails_with_a_double_sign(lab: Path, tmp_path: Path) -> None:
    assert run("check-journals", *map(str, journals(lab))).returncode == 0  # nothing double-signed before the drill
    result = failing_drill(lab, tmp_path, "freeze-active", DRILL_TIMEOUT, "--json")
    assert "FAILED" in result.stderr
    (it,) = json.loads((tmp_path / "freeze-active.json").read_text())["iterations"]
    assert it["double_signs"] >= 1 and not it["ok"]
    assert it["fenced"] is None  # fencing was off: nothing stopped the thawed node
    check = run("check-journals", "--json", *map(str, journals(lab)))
    assert check.returncode == 1, check.stdout + check.stderr
    doubles = json.loads(check.stdout)["double_signs"]
    assert doubles, check.stdout
    for double in doubles:  # one key and mark, signed by both nodes with different digests
        signed = double["entries"]
        assert {(e["key"], e["height"], e["round"], e["step"]) for e in signed} == {
            (double["key"], double["height"], double["round"], double["step"])
        }
        assert len({e["digest"] for e in signed}) > 1
    assert any({e["node"] for e in d["entries"]} == {it["target"], it["new_node"]} for d in doubles)
    shown = run("check-journals", *map(str, journals(lab))).stdout
    assert "DOUBLE SIGN" in shown and "FAILED" in shown
    assert_evidence(tmp_path, it)


def assert_evidence(report_dir: Path, it: dict[str, object]) -> None:
    """The failed iteration's evidence, kept whole and named by every form of the report."""
    assert it["evidence"] == "evidence/01-freeze-active"
    folder = report_dir / "evidence" / "01-freeze-active"
    index = json.loads((folder / "index.json").read_text())
    assert "iteration 1 (freeze-active) failed" in index["what"]
    kept = ["drill.log", "record.json", "site/events.jsonl", "site/supervisor.log"]
    for node in ("node-a", "node-b", "node-w"):
        kept += [
            f"{node}/files/var/log/pacemaker/pacemaker.log",
            f"{node}/files/var/log/corosync/corosync.log",
            f"{node}/files/var/log/highlander/signstate-signstate.log",
        ]
        if f"{node}/crm_mon.txt" in index["files"]:  # a node that answered: its own view
            kept += [f"{node}/crm_mon.txt", f"{node}/constraints.xml", f"{node}/cib.xml", f"{node}/scores.txt"]
    for node in (it["target"], it["new_node"]):
        kept += [
            f"{node}/files/var/log/highlander/validator-validator.log",
            f"{node}/files/var/log/highlander/journal-{node}.jsonl",
        ]
    assert "node-w/crm_mon.txt" in index["files"]
    for name in kept:
        assert (folder / name).stat().st_size > 0, name
    assert "Migration Summary" in (folder / "node-w" / "crm_mon.txt").read_text()  # with fail counts
    assert "freeze-active" in (folder / "drill.log").read_text()
    assert "evidence: evidence/01-freeze-active" in (report_dir / "freeze-active.txt").read_text()
    assert 'href="evidence/01-freeze-active/"' in (report_dir / "freeze-active.html").read_text()


@pytest.mark.lab
def test_lab_down_leaves_nothing(lab: Path) -> None:
    result = run("lab", "down", "--dir", str(lab), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert leftovers(lab) == []
