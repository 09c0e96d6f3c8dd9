"""Running fence agents in tests the way pacemaker-fenced does: options on
standard input, a bare environment. Shared by the IPMI, iLO and Redfish tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
AGENT_TIMEOUT = 120  # an upper bound for one agent run, never an assertion


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def stdin_text(options: Mapping[str, object]) -> str:
    return "".join(f"{k}={v}\n" for k, v in options.items())


def run(command: list[str], stdin: str | bytes | Mapping[str, object], env: Mapping[str, str] | None = None) -> Run:
    """One agent run: ``stdin`` as text, raw bytes (bad input), or options."""
    data = stdin if isinstance(stdin, bytes) else (stdin if isinstance(stdin, str) else stdin_text(stdin)).encode()
    completed = subprocess.run(
        command,
        input=data,
        capture_output=True,
        check=False,
        env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", **(env or {})},
        timeout=AGENT_TIMEOUT,
    )
    return Run(
        completed.returncode, completed.stdout.decode(errors="replace"), completed.stderr.decode(errors="replace")
    )


def ours(name: str) -> list[str]:
    """Our installed agent: this environment's copy, or the one in /usr/sbin."""
    for candidate in (Path(sys.executable).parent / name, Path("/usr/sbin") / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    pytest.fail(f"{name} is not installed (run ./bootstrap test)")


def debian(path: str) -> list[str]:
    """A fence-agents agent to compare with."""
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not installed (Debian fence-agents; run ./bootstrap test)")
    return [path]
