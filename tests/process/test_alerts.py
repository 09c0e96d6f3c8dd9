"""The shipped alert rules, checked by Prometheus's own ``promtool``.

``templates/alerts.yml.j2`` is rendered as ``highlander render`` renders it;
``promtool check rules`` must accept it, and ``promtool test rules`` plays
input series for every alert (``tests/data/alerts_test.yml``): each fires when
it should, with its labels and text, and a healthy trio fires none. A rule
that was weakened must make the same tests fail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from highlander import templates
from highlander.commands.render import MISSED_BLOCKS, NO_SIGNATURE_SECONDS

CASES = Path(__file__).parents[1] / "data" / "alerts_test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # ./bootstrap installs Debian's prometheus: missing means a missing install step
        pytest.fail("promtool not found: install Debian's prometheus package (./bootstrap does)")
    return found


def rendered(directory: Path, **context: object) -> Path:
    directory.mkdir(exist_ok=True)
    rules = directory / "alerts.yml"
    defaults = {"cluster": "lab", "no_signature_seconds": NO_SIGNATURE_SECONDS, "missed_blocks": MISSED_BLOCKS}
    rules.write_text(templates.render_template("alerts.yml.j2", **{**defaults, **context}))
    shutil.copy(CASES, directory / CASES.name)
    return rules


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid(promtool: str, tmp_path: Path) -> None:
    checked = run(promtool, "check", "rules", str(rendered(tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_every_alert_fires_when_it_should_and_not_otherwise(promtool: str, tmp_path: Path) -> None:
    rendered(tmp_path)
    tested = run(promtool, "test", "rules", str(tmp_path / CASES.name))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_negative_control_a_weakened_rule_fails_its_test(promtool: str, tmp_path: Path) -> None:
    """A signer silent for a day before anyone is told: the test of that alert must catch it."""
    rendered(tmp_path, no_signature_seconds=86400)
    tested = run(promtool, "test", "rules", str(tmp_path / CASES.name))
    assert tested.returncode != 0
    assert "HighlanderNoSignature" in tested.stdout + tested.stderr


def test_negative_control_a_blind_missed_blocks_rule_fails_its_test(promtool: str, tmp_path: Path) -> None:
    """A thousand unsigned heights before anyone is told: the test of that alert must catch it."""
    rendered(tmp_path, missed_blocks=1000)
    tested = run(promtool, "test", "rules", str(tmp_path / CASES.name))
    assert tested.returncode != 0
    assert "HighlanderMissedBlocks" in tested.stdout + tested.stderr


def test_render_writes_the_rules_for_the_cluster(promtool: str, tmp_path: Path) -> None:
    """The file ``highlander render`` writes beside the nodes' is the one tested above."""
    from highlander.commands import render
    from highlander.inventory import load

    example = Path(__file__).parents[2] / "examples" / "trio.yml"
    out = render.write(render.render_files(load(example)), tmp_path / "out")
    checked = run(promtool, "check", "rules", str(out / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f'cluster: "{load(example).cluster_name}"' in (out / "alerts.yml").read_text()
