"""What the iLO SSH tests share: running simulators and running fence agents.

Not a test module. Every simulator started here is stopped by the caller's
``with`` block or fixture, also when the test fails; every agent run is a
child process that has exited (or been killed at AGENT_TIMEOUT) on return.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fence_agents import SYSTEM_PATH, Run, debian, run, stdin_text  # noqa: F401 - re-exported

from highlander.lab.ilosim import ILOSimulator

FENCE_ILO_SSH = "/usr/sbin/fence_ilo_ssh"


def fence_ilo_ssh() -> list[str]:
    return debian(FENCE_ILO_SSH)
USERNAME = "fenceuser"
# Distinctive, so that finding it anywhere it must not be is meaningful.
PASSWORD = "pw-" + secrets.token_hex(12)


@contextmanager
def running_ilo(workdir: Path, **settings: object) -> Iterator[ILOSimulator]:
    """An iLO simulator on 127.0.0.1 (any free port); stopped whatever happens."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings.setdefault("password", PASSWORD)
    settings.setdefault("username", USERNAME)
    sim = ILOSimulator(workdir / "power", **settings)  # type: ignore[arg-type]
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def known_hosts_for(sim: ILOSimulator, path: Path) -> Path:
    path.write_text(sim.known_hosts_line())
    return path


def ssh_options(known_hosts: Path) -> str:
    """What fence_ilo_ssh needs to check the host key instead of accepting it.

    fence_ilo_ssh runs /usr/bin/ssh and answers "yes" to its unknown-host
    question, which also writes the key into the user's ~/.ssh/known_hosts.
    Its only way to check a key is its ``ssh_options``: a known_hosts file of
    our own, nothing global, strict checking (so ssh never asks and never
    writes), and no user configuration.
    """
    return (
        f"-F /dev/null -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null "
        "-o StrictHostKeyChecking=yes"
    )


def debian_options(sim: ILOSimulator, known_hosts: Path, **extra: object) -> dict[str, object]:
    """stdin for fence_ilo_ssh against ``sim`` (``ssh=1``: it defaults to telnet on port 23)."""
    options: dict[str, object] = {
        "ip": sim.host,
        "ipport": sim.port,
        "username": sim.username,
        "password": sim.password,
        "ssh": 1,
        "ssh_options": ssh_options(known_hosts),
        "power_wait": 0,  # its default 5 s waits for hardware; the simulator switches at once
    }
    options.update(extra)
    return options


@pytest.fixture
def user_known_hosts_untouched() -> Iterator[None]:
    """Fail if a run of fence_ilo_ssh wrote into this user's own known_hosts."""
    path = Path(os.path.expanduser("~/.ssh/known_hosts"))
    before = path.read_bytes() if path.exists() else None
    yield
    after = path.read_bytes() if path.exists() else None
    assert after == before, f"{path} was changed by a test run"
