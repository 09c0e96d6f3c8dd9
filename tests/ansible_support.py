"""What the Ansible tests of every tier share: where the roles are, and the tools that run them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent
LAB_INVENTORY = ROOT / "examples" / "lab.yml"
VAULT_PASSWORD = "lab-vault-password"  # protects the test's vault file only


def tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (pip install '.[test]')")
    return path
