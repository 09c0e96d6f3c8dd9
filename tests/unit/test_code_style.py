"""The code is laid out by ``ruff format`` and passes ruff's bug-finding rules.

The settings (line length, the rules) are in ``pyproject.toml``; ruff is
pinned in the ``test`` extra, because a formatter's output may change
between releases. To fix a failure, from the checkout's root:
``/opt/highlander/venv/bin/ruff format . && /opt/highlander/venv/bin/ruff check --fix .``
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        import ruff  # noqa: F401  (only to say how to get it)
    except ImportError:
        pytest.fail(
            "ruff is not installed: it comes with the test extra (pip install -e '.[test]', or ./bootstrap test)"
        )
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", str(ROOT)], capture_output=True, text=True, check=False
    )


def test_the_code_is_formatted() -> None:
    result = ruff("format", "--check")
    assert result.returncode == 0, f"files not formatted (run `ruff format .`):\n{result.stdout}{result.stderr}"


def test_the_code_passes_the_lint_rules() -> None:
    result = ruff("check")
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"
