"""The OCF agents' start-up path imports no ``typing`` (see highlander/__init__.py):
every module that writes ``TYPE_CHECKING = False`` for that reason, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import highlander

ROOT = Path(highlander.__file__).parent
PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(" ".join(sorted(m for m in sys.modules if m == "typing" or m.startswith("typing."))))
"""


def modules_that_avoid_typing() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if any(line.startswith("TYPE_CHECKING = False") for line in path.read_text().splitlines()):
            found.append(".".join(("highlander", *path.relative_to(ROOT).with_suffix("").parts)))
    return found


def test_the_modules_on_the_agents_path_import_no_typing(tmp_path: Path) -> None:
    names = modules_that_avoid_typing()
    assert "highlander.agents.validator" in names and "highlander.ocf.runtime" in names
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *names], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [], f"{' '.join(names)} pull in typing"
