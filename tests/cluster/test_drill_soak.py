"""``highlander drill --soak 50`` on a lab of its own: fifty iterations of mixed
scenarios (rounds of all eight, each round shuffled) with zero double signs and
zero dual-active moments. About 20 minutes on two cores, so it is marked
``soak`` and left out of the default run (setup.cfg); run it with
``./bootstrap test -m soak``. The default run has a short soak in
test_drill.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from lab_support import run, running_lab

from highlander.lab.cleanup import leftovers


@pytest.mark.soak
@pytest.mark.lab
def test_a_soak_of_fifty_mixed_iterations_never_double_signs(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    with running_lab(lab):
        result = run("drill", "--soak", "50", "--dir", str(lab), "--report", str(tmp_path), timeout=4 * 3600)
        print(result.stdout, result.stderr)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert leftovers(lab) == []
    data = json.loads((tmp_path / "soak.json").read_text())
    summary = data["summary"]
    assert summary["iterations"] == 50 and summary["ok"]
    assert summary["double_signs"] == 0 and summary["dual_active"] == 0
    assert all(it["ok"] and it["double_signs"] == 0 and it["dual_active"] == 0 for it in data["iterations"])
    counts = Counter(it["scenario"] for it in data["iterations"])
    assert len(counts) == 8 and min(counts.values()) >= 6  # six rounds of eight, and two more
