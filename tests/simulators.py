"""The simulated BMCs the fence tests run against, and how clients reach the iLO one.

Not a test module; the fixtures built on it are in conftest.py. Every
simulator is started through :func:`running`, which stops it (ipmi_sim and
sushy-emulator by PID) whatever happens, also when starting it failed
halfway.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from fence_agents import debian

from highlander.lab.ilosim import ILOSimulator
from highlander.lab.ipmisim import IpmiSim


class Simulator(Protocol):
    """What IpmiSim, ILOSimulator and RedfishSimulator have in common."""

    def start(self) -> object: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Simulator)


@contextmanager
def running(sim: S) -> Iterator[S]:
    """``sim`` started for the block; stopped on the way out, whatever happens."""
    try:
        sim.start()
        yield sim
    finally:
        sim.stop()


# -- the iLO simulator ---------------------------------------------------------------------------

ILO_USERNAME = "fenceuser"
# Distinctive, so that finding it anywhere it must not be is meaningful.
ILO_PASSWORD = "pw-" + secrets.token_hex(12)
FENCE_ILO_SSH = "/usr/sbin/fence_ilo_ssh"


@contextmanager
def running_ilo(workdir: Path, **settings: object) -> Iterator[ILOSimulator]:
    """An iLO simulator on 127.0.0.1 (any free port) with the test credentials."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings.setdefault("password", ILO_PASSWORD)
    settings.setdefault("username", ILO_USERNAME)
    with running(ILOSimulator(workdir / "power", **settings)) as sim:  # type: ignore[arg-type]
        yield sim


def fence_ilo_ssh() -> list[str]:
    """Debian's fence_ilo_ssh: the client nobody here wrote."""
    return debian(FENCE_ILO_SSH)


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


def ipmi_options(bmc: IpmiSim, password_file: Path) -> list[str]:
    """``highlander fence``'s options for a device-less fence of ``bmc`` (its password in ``password_file``)."""
    where = ["--ip", "127.0.0.1", "--ipport", str(bmc.port)]
    return ["--method", "ipmi", *where, "--username", "admin", "--password-file", str(password_file)]
