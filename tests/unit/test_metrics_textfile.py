"""The textfiles short-lived programs leave for node_exporter: counted across
runs, replaced whole, readable by all, read back by prometheus_client's parser."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from highlander.adapters.metrics import DRILL_TEXTFILE, FENCE_TEXTFILE, record_drill, record_fence


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def fence_runs(path: Path, agent: str, action: str, result: str) -> float | None:
    labels = (("action", action), ("agent", agent), ("result", result))
    return samples(path).get(("highlander_fence_runs_total", labels))


def test_fence_runs_are_counted_across_runs_and_agents(tmp_path: Path) -> None:
    path = record_fence(tmp_path, "fence_highlander_ipmi", "off", "success", 0.12)
    record_fence(tmp_path, "fence_highlander_ipmi", "off", "success", 0.2)
    record_fence(tmp_path, "fence_highlander_redfish", "reboot", "failure", 3.5)
    assert path == tmp_path / FENCE_TEXTFILE
    assert fence_runs(path, "fence_highlander_ipmi", "off", "success") == 2
    assert fence_runs(path, "fence_highlander_redfish", "reboot", "failure") == 1
    found = samples(path)
    last = (("action", "off"), ("agent", "fence_highlander_ipmi"), ("result", "success"))
    assert found[("highlander_fence_last_duration_seconds", last)] == 0.2
    assert found[("highlander_fence_last_timestamp_seconds", last)] > 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [FENCE_TEXTFILE]  # no temporary, no lock file


def test_a_damaged_file_is_started_afresh_and_foreign_samples_dropped(tmp_path: Path) -> None:
    (tmp_path / FENCE_TEXTFILE).write_bytes(b"\xff not the exposition format {{{")
    path = record_fence(tmp_path, "fence_highlander_ipmi", "status", "success", 0.05)
    assert fence_runs(path, "fence_highlander_ipmi", "status", "success") == 1
    path.write_text(
        path.read_text() + '# TYPE other gauge\nother{node="10.0.0.1"} 1\n'
        'highlander_fence_runs_total{agent="x",action="off",result="success",ip="10.0.0.1"} 9\n'
    )
    record_fence(tmp_path, "fence_highlander_ipmi", "status", "success", 0.05)
    assert fence_runs(path, "fence_highlander_ipmi", "status", "success") == 2
    assert "10.0.0.1" not in path.read_text()


def test_agents_finishing_at_once_lose_no_count(tmp_path: Path) -> None:
    def agent() -> None:
        for _ in range(10):
            record_fence(tmp_path, "fence_highlander_ipmi", "monitor", "success", 0.01)

    threads = [threading.Thread(target=agent) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fence_runs(tmp_path / FENCE_TEXTFILE, "fence_highlander_ipmi", "monitor", "success") == 60


def phases(total: float) -> dict[str, object]:
    stats = {"min": total - 1, "median": total, "max": total + 1, "n": 3}
    return {"detection": stats, "fencing": None, "promotion": stats, "signing_gap": stats, "total": stats}


def test_a_drill_writes_its_outcome_and_durations_and_replaces_only_its_own(tmp_path: Path) -> None:
    first = {"ok": True, "iterations": 3, "double_signs": 0, "phases": phases(9.0)}
    path = record_drill(tmp_path, "power-cut-active", first)
    record_drill(tmp_path, "kill-signer", {**first, "ok": False, "phases": phases(2.0)})
    again = {"ok": False, "iterations": 1, "double_signs": 1, "phases": phases(20.0)}
    record_drill(tmp_path, "power-cut-active", again)
    assert path == tmp_path / DRILL_TEXTFILE
    found = samples(path)
    assert found[("highlander_drill_ok", (("drill", "power-cut-active"),))] == 0
    assert found[("highlander_drill_double_signs", (("drill", "power-cut-active"),))] == 1
    assert found[("highlander_drill_ok", (("drill", "kill-signer"),))] == 0
    total = (("drill", "power-cut-active"), ("phase", "total"), ("scenario", "power-cut-active"), ("stat", "median"))
    assert found[("highlander_drill_phase_seconds", total)] == 20.0
    assert not any(dict(labels).get("phase") == "fencing" for _, labels in found)  # a phase it did not have
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_soak_writes_each_scenarios_durations(tmp_path: Path) -> None:
    soak = {
        "ok": True,
        "iterations": 4,
        "double_signs": 0,
        "scenarios": {"power-cut-active": {"phases": phases(9.0)}, "kill-signer": {"phases": phases(2.0)}},
    }
    found = samples(record_drill(tmp_path, "soak", soak))
    median = (("drill", "soak"), ("phase", "total"), ("scenario", "kill-signer"), ("stat", "median"))
    assert found[("highlander_drill_phase_seconds", median)] == 2.0
    assert found[("highlander_drill_iterations", (("drill", "soak"),))] == 4
