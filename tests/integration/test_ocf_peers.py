"""The installed validator agent judged by Pacemaker's own tools: ocf-tester,
crm_resource --validate, meta-data as user nobody with a bare environment,
and the OCF 1.1 RelaxNG schema."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from highlander.adapters import process

AGENT_PATH = Path("/usr/lib/ocf/resource.d/highlander/validator")
_CLI = Path(sys.executable).parent / "highlander"
HIGHLANDER = (
    [str(_CLI)] if _CLI.is_file() else [sys.executable, "-c", "from highlander.cli import main; main()"]
)

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="ocf-tester, runuser and crm_resource's agent runs need root"
    ),
    pytest.mark.skipif(
        any(
            shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None
            for tool in ("ocf-tester", "crm_resource", "xmllint", "runuser")
        ),
        reason="needs ocf-tester (resource-agents), crm_resource (pacemaker-cli-utils), xmllint and runuser",
    ),
]


@pytest.fixture(scope="module")
def agent() -> Path:
    assert AGENT_PATH.is_file(), f"{AGENT_PATH} is missing: run 'highlander install' first"
    return AGENT_PATH


class Instance:
    """A resource name of our own, and the processes carrying its marker."""

    def __init__(self, tmp_path: Path) -> None:
        self.name = f"peer-{uuid4().hex[:12]}"
        self.tag = process.marker("validator", self.name)
        self.pidfile = tmp_path / "validator.pid"
        self.logfile = tmp_path / "validator.log"

    def kill_leftovers(self) -> None:
        for pid in process.find_tagged(self.tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    i = Instance(tmp_path)
    try:
        yield i
    finally:
        i.kill_leftovers()


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, **kwargs)  # type: ignore[call-overload]


def test_ocf_tester_passes(agent: Path, instance: Instance, free_port: int) -> None:
    command = shlex.join(
        [
            *HIGHLANDER,
            "demo-chain",
            "--listen",
            f"127.0.0.1:{free_port}",
            "--block-time",
            "0.5",
            "--catch-up",
            "1",
        ]
    )
    done = run(
        [
            "ocf-tester",
            "-n",
            instance.name,
            "-o",
            f"command={command}",
            "-o",
            f"health_url=http://127.0.0.1:{free_port}/status",
            "-o",
            f"pidfile={instance.pidfile}",
            "-o",
            f"logfile={instance.logfile}",
            str(agent),
        ]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed all tests" in done.stdout
    assert process.find_tagged(instance.tag) == []  # ocf-tester ends with stop


def crm_validate(*options: str, level: str | None = None) -> subprocess.CompletedProcess[str]:
    validate = "--validate" if level is None else f"--validate={level}"
    argv = ["crm_resource", validate, "--class", "ocf", "--provider", "highlander", "--agent", "validator"]
    for option in options:
        argv += ["--option", option]
    return run(argv)


def test_crm_resource_validate_accepts_a_good_configuration(agent: Path) -> None:
    done = crm_validate("command=sleep 600", "health_url=http://127.0.0.1:26657/status")
    assert done.returncode == 0, done.stdout + done.stderr


def test_crm_resource_validate_without_command_is_not_configured(agent: Path) -> None:
    done = crm_validate()
    assert done.returncode == 6, done.stdout + done.stderr
    assert "'command'" in done.stdout + done.stderr


def test_crm_resource_validate_with_a_missing_program_is_not_installed(agent: Path) -> None:
    done = crm_validate("command=no-such-daemon-hl")
    assert done.returncode == 5, done.stdout + done.stderr


def test_crm_resource_validate_at_level_0_checks_only_the_parameters(agent: Path) -> None:
    assert crm_validate("command=no-such-daemon-hl", level="0").returncode == 0
    assert crm_validate("command=sleep 1", "pidfile=relative.pid", level="0").returncode == 6


def meta_data_as_nobody(agent: Path) -> subprocess.CompletedProcess[str]:
    # Pacemaker's bare environment: no PATH, no PYTHONPATH.
    return run(["env", "-i", "/usr/sbin/runuser", "-u", "nobody", "--", str(agent), "meta-data"], cwd="/")


def test_meta_data_as_nobody_in_a_bare_environment(agent: Path) -> None:
    done = meta_data_as_nobody(agent)
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)
    assert root.tag == "resource-agent" and root.get("name") == "validator"


def test_meta_data_as_nobody_validates_against_the_ocf_schema(agent: Path, ocf_schema: Path) -> None:
    done = meta_data_as_nobody(agent)
    assert done.returncode == 0, done.stderr
    lint = run(["xmllint", "--noout", "--relaxng", str(ocf_schema), "-"], input=done.stdout)
    assert lint.returncode == 0, lint.stderr
