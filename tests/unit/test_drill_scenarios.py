"""The pure parts of the drill scenarios, without a lab: the measures read from
Pacemaker's log lines and the journals (restart in place, quorum loss, failed
fencing, the largest pause, the timeline's rows), recognising the signer's
command line, and the one table that drives the CLI."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from highlander.drill import measure
from highlander.drill.journal import Entry
from highlander.drill.workload import DEMO
from highlander.drill.scenarios import SCENARIOS, is_signer, unmet
from highlander.signstate.register import HRS

RESTART_LOG = """\
Nov 22 02:10:00.100 node-a pacemaker-controld  [110] (log_executor_event) \tnotice: Result of monitor operation for validator on node-a: ok | call=31
Nov 22 02:10:04.250 node-a pacemaker-controld  [110] (log_executor_event) \tnotice: Result of monitor operation for validator on node-a: not running | call=32 key=validator_monitor_5000 rc=7
Nov 22 02:10:04.400 node-a pacemaker-controld  [110] (log_executor_event) \tnotice: Result of monitor operation for validator on node-a: Cancelled | call=31
Nov 22 02:10:04.900 node-a pacemaker-controld  [110] (log_executor_event) \tnotice: Result of stop operation for validator on node-a: ok | call=33
Nov 22 02:10:06.000 node-a pacemaker-controld  [110] (log_executor_event) \tnotice: Result of start operation for validator on node-a: ok | call=34
"""

QUORUM_LOG = """\
Nov 22 02:20:06.000 node-b pacemaker-controld  [99] (quorum_notification_cb) \tnotice: Quorum lost | membership=9 members=1
Nov 22 02:20:06.500 node-a pacemaker-controld  [110] (quorum_notification_cb) \tnotice: Quorum lost | membership=9 members=1
Nov 22 02:20:07.200 node-a pacemaker-controld  [110] (log_executor_event) \tnotice: Result of stop operation for validator on node-a: ok | call=40
Nov 22 02:20:09.000 node-a pacemaker-controld  [110] (tengine_stonith_callback) \tnotice: Fence operation 5 for node-b failed: No such device (aborting transition)
Nov 22 02:20:19.000 node-a pacemaker-controld  [110] (tengine_stonith_callback) \tnotice: Fence operation 6 for node-b failed: Timer expired (aborting transition)
Nov 22 02:20:29.000 node-a pacemaker-controld  [110] (tengine_stonith_callback) \tnotice: Fence operation 7 for node-w failed: Timer expired (aborting transition)
Nov 22 02:21:30.000 node-w pacemaker-controld  [80] (log_executor_event) \tnotice: Result of start operation for validator on node-b: ok | call=12
"""


def entry(node: str, epoch: int, height: int, when: float) -> Entry:
    return Entry("j", height, "k", HRS(height, 0, 1), "ab", node, epoch, when, "sig")


def test_a_restart_in_place_is_read_from_the_monitor_failure_and_the_start() -> None:
    lines = measure.parse_log(RESTART_LOG, 2026)
    since = lines[0].time
    restart = measure.restart_events(lines, "node-a", since)
    assert restart.failed is not None and "not running" in restart.failed.text
    assert restart.started is not None and restart.started.time - restart.failed.time == pytest.approx(1.75)
    assert measure.restart_events(lines, "node-b", since) == measure.RestartEvents(None, None)
    assert measure.restart_events(lines, "node-a", restart.started.time + 1) == measure.RestartEvents(None, None)
    assert measure.first_start(lines, since) == restart.started


def test_a_quorum_loss_is_read_on_the_surviving_node_only() -> None:
    lines = measure.parse_log(QUORUM_LOG, 2026)
    since = lines[0].time - 1
    loss = measure.quorum_loss(lines, "node-a", since)
    assert loss.lost is not None and loss.lost.node == "node-a" and loss.lost.time == lines[1].time
    assert loss.stopped is not None and loss.stopped.time == lines[2].time
    assert measure.quorum_loss(lines, "node-w", since) == measure.QuorumLoss(None, None)
    start = measure.first_start(lines, since)
    assert start is not None and "on node-b: ok" in start.text


def test_failed_fencing_attempts_are_counted_per_target_and_since() -> None:
    lines = measure.parse_log(QUORUM_LOG, 2026)
    assert measure.fence_failures(lines, "node-b", lines[0].time) == 2
    assert measure.fence_failures(lines, "node-b", lines[4].time) == 1
    assert measure.fence_failures(lines, "node-w", lines[0].time) == 1
    assert measure.fence_failures(lines, "node-a", lines[0].time) == 0


def test_the_largest_gap_overlaps_the_window_and_counts_the_pause_across_its_start() -> None:
    entries = [entry("node-a", 1, h, t) for h, t in enumerate((0.0, 0.5, 1.0, 3.2, 3.7, 4.2, 9.0), start=1)]
    gap = measure.largest_gap(entries, 2.0, 5.0)  # 4.2 -> 9.0 starts inside the window: it counts
    assert gap.last_before is not None and gap.first_after is not None
    assert (gap.last_before.time, gap.first_after.time) == (4.2, 9.0)
    gap = measure.largest_gap(entries, 2.0, 4.0)  # then 1.0 -> 3.2, across the start, is the largest
    assert gap.seconds == pytest.approx(2.2)
    assert measure.largest_gap(entries, 10.0, 12.0).seconds is None
    assert measure.largest_gap(entries[:1], 0.0, 1.0).seconds is None


def test_a_restart_in_place_has_a_signing_gap_by_any_node() -> None:
    entries = [entry("node-a", 1, 1, 1.0), entry("node-a", 2, 2, 9.0)]
    assert measure.signing_gap(entries, 2.0, "node-a").first_after is None
    assert measure.signing_gap(entries, 2.0, None).seconds == pytest.approx(8.0)


def test_signature_rows_are_the_window_sorted_by_time() -> None:
    entries = [entry("node-b", 3, 12, 20.5), entry("node-a", 2, 10, 9.0), entry("node-a", 2, 11, 10.0)]
    assert measure.signature_rows(entries, 9.5, 21.0) == [["node-a", 2, 11, 10.0], ["node-b", 3, 12, 20.5]]
    assert measure.signature_rows(entries, 30.0, 40.0) == []


def test_between_is_none_when_an_end_is_unknown() -> None:
    assert measure.between(1.0, 2.5) == 1.5
    assert measure.between(None, 2.5) is None and measure.between(1.0, None) is None


def test_unmet_lists_the_expectations_not_met_in_order() -> None:
    assert unmet({"nobody is fenced": True, "the signer signs again": False, "zero gaps": False}) == [
        "the signer signs again",
        "zero gaps",
    ]
    assert unmet({}) == []


@pytest.mark.parametrize(
    ("argv", "node", "expected"),
    [
        (
            ["/opt/v/bin/python3", "/opt/v/bin/highlander", "demo-signer", "--node", "node-a", "--block-time", "0.5"],
            "node-a",
            True,
        ),
        (["/opt/v/bin/python3", "/opt/v/bin/highlander", "demo-signer", "--node", "node-a"], "node-b", False),
        (["/opt/v/bin/python3", "/opt/v/bin/highlander", "signstate", "--node", "node-a"], "node-a", False),
        (["/bin/sh", "-c", "exec /opt/v/bin/highlander demo-signer --node node-a"], "node-a", False),
        (
            ["/opt/v/bin/python3", "/opt/v/bin/highlander-demo-signer", "demo-signer", "--node", "node-a"],
            "node-a",
            False,
        ),
        ([], "node-a", False),
    ],
)
def test_only_the_signers_exact_command_line_is_the_signer(argv: list[str], node: str, expected: bool) -> None:
    assert is_signer(argv, node) is expected


def test_one_table_drives_the_choices_and_the_help() -> None:
    from highlander.cli.drill import drill

    assert list(SCENARIOS) == [
        "power-cut-active",
        "freeze-active",
        "partition-active",
        "bmc-down-and-power-cut-active",
        "kill-signer",
        "power-cut-standby",
        "power-cut-witness",
        "two-nodes-down",
    ]
    (argument,) = [p for p in drill.params if isinstance(p, click.Argument)]
    assert isinstance(argument.type, click.Choice) and list(argument.type.choices) == list(SCENARIOS)
    shown = CliRunner().invoke(drill, ["--help"]).output
    for scenario in SCENARIOS.values():
        assert f"{scenario.name}: {scenario.summary}" in shown
    refused = CliRunner().invoke(drill, ["power-cut-everything"])
    assert refused.exit_code == 2 and "power-cut-everything" in refused.output


class PowerOnlySite:
    """A site that can cut power and nothing else, as a real cluster; the
    scenarios below never reach it (their steps are replaced)."""

    failures = frozenset({"power"})
    workload = DEMO

    def chain(self) -> None:
        return None

    def __init__(self) -> None:
        import yaml

        from highlander.inventory import parse

        self.inventory = parse(yaml.safe_load(PROD))

    def status(self, avoid: str | None = None) -> None:
        return None  # the cluster cannot tell: no placement to check between iterations

    def file_size(self, name: str, path: str) -> int:
        return 0


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every scenario's step replaced by one that records (iteration, scenario)."""
    from dataclasses import replace

    from highlander.drill import scenarios

    calls: list[tuple[int, str]] = []

    def step(drill: object, iteration: int, name: str) -> dict[str, object]:
        calls.append((iteration, name))
        return {"iteration": iteration, "scenario": name, "ok": True}

    for name, scenario in list(SCENARIOS.items()):
        monkeypatch.setitem(scenarios.SCENARIOS, name, replace(scenario, step=step))
    return calls


def test_a_power_only_site_runs_the_power_cut_scenarios_and_refuses_the_lab_ones(ran: list[tuple[int, str]]) -> None:
    from highlander.drill.scenarios import Drill, DrillError

    drill = Drill(PowerOnlySite(), say=lambda line: None)  # type: ignore[arg-type]
    assert drill.runnable() == [
        "power-cut-active",
        "kill-signer",
        "power-cut-standby",
        "power-cut-witness",
        "two-nodes-down",
    ]
    with pytest.raises(
        DrillError,
        match=r"freeze-active must freeze every process .* lab only; here it can run: "
        r"power-cut-active, kill-signer",
    ):
        drill.run("freeze-active", 1)
    assert ran == []
    drill.run("kill-signer", 2)
    assert ran == [(1, "kill-signer"), (2, "kill-signer")]


def test_a_soak_runs_shuffled_rounds_of_every_runnable_scenario_repeatably(ran: list[tuple[int, str]]) -> None:
    from highlander.drill.scenarios import Drill

    drill = Drill(PowerOnlySite(), say=lambda line: None)  # type: ignore[arg-type]
    records = drill.soak(12, seed=7)
    order = [name for _, name in ran]
    assert [i for i, _ in ran] == list(range(1, 13)) and [r["scenario"] for r in records] == order
    runnable = drill.runnable()
    assert sorted(order[:5]) == sorted(runnable) and sorted(order[5:10]) == sorted(runnable)
    assert set(order[10:]) <= set(runnable) and len(set(order[10:])) == 2
    assert order[:5] != runnable or order[5:10] != runnable  # shuffled
    ran.clear()
    drill.soak(12, seed=7)
    assert [name for _, name in ran] == order


def test_a_soak_report_sums_up_and_keeps_each_scenario() -> None:
    from highlander.drill import report

    def record(scenario: str, total: float, doubles: int = 0) -> dict[str, object]:
        phases = {p: None for p in report.PHASES} | {"total": total}
        return {"scenario": scenario, "ok": not doubles, "double_signs": doubles, "dual_active": 0, "phases": phases}

    summary = report.soak_summary(
        [record("kill-signer", 2.0), record("power-cut-active", 9.0), record("kill-signer", 4.0, doubles=1)], 8760.0
    )
    assert summary["iterations"] == 3 and summary["double_signs"] == 1 and not summary["ok"]
    assert list(summary["scenarios"]) == ["kill-signer", "power-cut-active"]
    assert summary["scenarios"]["kill-signer"]["phases"]["total"]["median"] == 3.0
    text = report.table("soak", summary)
    assert text.startswith("soak: 3 iteration(s) of 2 scenarios, FAILED; double signs: 1")
    assert "\n  kill-signer: 2 iteration(s), FAILED" in text and "\n  power-cut-active: 1 iteration(s), OK" in text


def test_the_drill_needs_one_scenario_or_a_soak_and_one_site() -> None:
    from highlander.cli.drill import drill

    assert "give a SCENARIO or --soak N" in CliRunner().invoke(drill, []).output
    assert "give a SCENARIO or --soak N" in CliRunner().invoke(drill, ["kill-signer", "--soak", "3"]).output
    both = CliRunner().invoke(drill, ["kill-signer", "--dir", "/tmp", "--inventory", "/dev/null"])
    assert both.exit_code == 2 and "give one" in both.output


def test_a_real_cluster_is_drilled_only_after_its_name_is_typed(tmp_path: Path) -> None:
    """Nothing is asked of any node before the confirmation: these addresses are
    TEST-NET ones nobody answers, a wrong name ends the drill at once."""
    from highlander.cli.drill import drill

    inventory = tmp_path / "prod.yml"
    inventory.write_text(PROD)
    result = CliRunner().invoke(drill, ["power-cut-active", "--inventory", str(inventory)], input="lab\n")
    assert result.exit_code == 1
    assert "will really fail nodes of cluster 'prod'" in result.output and "node-a (active, 192.0.2.1)" in result.output
    assert "'lab' is not 'prod': nothing was done" in result.output
    refused = CliRunner().invoke(drill, ["freeze-active", "--inventory", str(inventory), "--yes"])
    assert refused.exit_code == 1 and "lab only" in refused.output and "will really" not in refused.output
    report = tmp_path / "report"
    bad = CliRunner().invoke(
        drill, ["power-cut-active", "--inventory", str(inventory), "--journals", "~/j*", "--report", str(report)]
    )
    assert bad.exit_code == 1 and "give an absolute path" in bad.output


PROD = """\
cluster: {name: prod}
nodes:
  - name: node-a
    addresses: [192.0.2.1]
    fence: [{method: ipmi, address: 192.0.2.101, username: fence, password_file: /etc/highlander/secrets/bmc-a}]
  - name: node-b
    addresses: [192.0.2.2]
    fence: [{method: ipmi, address: 192.0.2.102, username: fence, password_file: /etc/highlander/secrets/bmc-b}]
  - name: node-w
    role: witness
    addresses: [192.0.2.3]
    fence: [{method: ipmi, address: 192.0.2.103, username: fence, password_file: /etc/highlander/secrets/bmc-w}]
validator:
  command: /usr/bin/signer
  chain_id: prod-1
  key_id: validator
  health_url: http://127.0.0.1:26657/status
"""
