"""The installed agents judged by Pacemaker's own tools: ocf-tester,
crm_resource --validate, meta-data as user nobody with a bare environment,
and the OCF 1.1 RelaxNG schema."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from harness import HIGHLANDER

from highlander.adapters import process
from highlander.lab.replicas import LoopbackReplicas
from highlander.signstate.client import SignerClient
from highlander.signstate.register import KeyId, Record

AGENT_PATH = Path("/usr/lib/ocf/resource.d/highlander/validator")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ocf-tester, runuser and crm_resource's agent runs need root")
OCF_DIR = Path("/usr/lib/ocf/resource.d/highlander")
TOOLS = ("ocf-tester", "crm_resource", "xmllint", "runuser")


@pytest.fixture(scope="module")
def agent() -> Path:
    missing = [t for t in TOOLS if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    assert not missing, f"not installed: {', '.join(missing)} (./bootstrap installs them)"
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


def test_ocf_tester_passes(agent: Path, instance: Instance, reserved_port: int, replicas: LoopbackReplicas) -> None:
    """With the sign-state gate on: every start promotes through a real trio."""
    command = shlex.join(
        [
            *HIGHLANDER,
            "demo-chain",
            "--listen",
            f"127.0.0.1:{reserved_port}",
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
            f"health_url=http://127.0.0.1:{reserved_port}/status",
            "-o",
            f"pidfile={instance.pidfile}",
            "-o",
            f"logfile={instance.logfile}",
            "-o",
            "chain_id=test-chain",
            "-o",
            "key_id=ocf-tester",
            "-o",
            f"signstate_socket={replicas.socket('node-a')}",
            str(agent),
        ]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed all tests" in done.stdout
    assert process.find_tagged(instance.tag) == []  # ocf-tester ends with stop
    # Each start was a promotion: the register's epoch moved on.
    with SignerClient(replicas.socket("node-a")) as client:
        records = client.status(KeyId("test-chain", "ocf-tester"))
    assert all(isinstance(r, Record) and r.promised.counter >= 2 for r in records.values()), records


def test_the_validator_does_not_start_without_a_sign_state_majority(
    agent: Path, instance: Instance, replicas: LoopbackReplicas
) -> None:
    replicas.kill("node-b")
    replicas.kill("node-c")
    env = {
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": instance.name,
        "OCF_RESKEY_CRM_meta_timeout": "6000",
        "OCF_RESKEY_command": "sleep 600",
        "OCF_RESKEY_pidfile": str(instance.pidfile),
        "OCF_RESKEY_logfile": str(instance.logfile),
        "OCF_RESKEY_chain_id": "test-chain",
        "OCF_RESKEY_key_id": "no-majority",
        "OCF_RESKEY_signstate_socket": str(replicas.socket("node-a")),
    }
    done = run([str(agent), "start"], env=env)
    assert done.returncode == 1, done.stderr
    assert "no majority" in done.stderr and "must not start" in done.stderr
    assert process.find_tagged(instance.tag) == []


def test_ocf_tester_passes_for_the_signstate_agent(replicas: LoopbackReplicas, tmp_path: Path) -> None:
    replicas.stop("node-a")  # the agent runs node-a's daemon itself
    agent = OCF_DIR / "signstate"
    done = run(
        [
            "ocf-tester",
            "-n",
            f"ss-{uuid4().hex[:8]}",
            "-o",
            f"config={replicas.config('node-a')}",
            "-o",
            f"pidfile={tmp_path / 'signstate.pid'}",
            "-o",
            f"logfile={tmp_path / 'signstate.log'}",
            str(agent),
        ]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed all tests" in done.stdout


def test_ocf_tester_passes_for_the_privval_agent(replicas: LoopbackReplicas, tmp_path: Path) -> None:
    """Start, promote (through the real register), demote, stop — and every
    monitor in between — of the promotable remote signer."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from privval_support import write_key

    key = write_key(tmp_path / "priv_validator_key.json", Ed25519PrivateKey.generate())
    config = tmp_path / "privval.toml"
    state, register, control = tmp_path / "state.json", replicas.socket("node-a"), tmp_path / "privval.sock"
    config.write_text(
        f'chain_id = "ocf-tester"\nkey_file = "{key}"\nstate_file = "{state}"\nregister = "{register}"\n'
        f'nodes = ["tcp://127.0.0.1:1"]\ncontrol = "{control}"\n'
    )
    done = run(
        [
            "ocf-tester",
            "-n",
            f"pv-{uuid4().hex[:8]}",
            "-o",
            f"config={config}",
            "-o",
            f"pidfile={tmp_path / 'privval.pid'}",
            "-o",
            f"logfile={tmp_path / 'privval.log'}",
            str(OCF_DIR / "privval"),
        ]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed all tests" in done.stdout
    assert "event=promoted" in (tmp_path / "privval.log").read_text()


def crm_validate(*options: str, level: str | None = None) -> subprocess.CompletedProcess[str]:
    validate = "--validate" if level is None else f"--validate={level}"
    argv = ["crm_resource", validate, "--class", "ocf", "--provider", "highlander", "--agent", "validator"]
    for option in options:
        argv += ["--option", option]
    return run(argv)


def test_crm_resource_validate_accepts_a_good_configuration(agent: Path) -> None:
    done = crm_validate("command=sleep 600", "health_url=http://127.0.0.1:26657/status", "chain_id=c", "key_id=k")
    assert done.returncode == 0, done.stdout + done.stderr


def test_crm_resource_validate_wants_the_signing_key_while_the_gate_is_on(agent: Path) -> None:
    done = crm_validate("command=sleep 600")
    assert done.returncode == 6, done.stdout + done.stderr
    assert "chain_id and key_id are required" in done.stdout + done.stderr
    assert crm_validate("command=sleep 600", "signstate=false").returncode == 0


def test_crm_resource_validate_without_command_is_not_configured(agent: Path) -> None:
    done = crm_validate()
    assert done.returncode == 6, done.stdout + done.stderr
    assert "'command'" in done.stdout + done.stderr


def test_crm_resource_validate_with_a_missing_program_is_not_installed(agent: Path) -> None:
    done = crm_validate("command=no-such-daemon-hl", "signstate=false")
    assert done.returncode == 5, done.stdout + done.stderr


def test_crm_resource_validate_at_level_0_checks_only_the_parameters(agent: Path) -> None:
    assert crm_validate("command=no-such-daemon-hl", level="0").returncode == 0
    assert crm_validate("command=sleep 1", "pidfile=relative.pid", level="0").returncode == 6


@pytest.fixture(params=["validator", "signstate", "privval"])
def any_agent(request: pytest.FixtureRequest, agent: Path) -> Path:
    return OCF_DIR / request.param


def meta_data_as_nobody(agent: Path) -> subprocess.CompletedProcess[str]:
    # Pacemaker's bare environment: no PATH, no PYTHONPATH.
    return run(["env", "-i", "/usr/sbin/runuser", "-u", "nobody", "--", str(agent), "meta-data"], cwd="/")


def test_meta_data_as_nobody_in_a_bare_environment(any_agent: Path) -> None:
    done = meta_data_as_nobody(any_agent)
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)
    assert root.tag == "resource-agent" and root.get("name") == any_agent.name


def test_meta_data_as_nobody_validates_against_the_ocf_schema(any_agent: Path, ocf_schema: Path) -> None:
    done = meta_data_as_nobody(any_agent)
    assert done.returncode == 0, done.stderr
    lint = run(["xmllint", "--noout", "--relaxng", str(ocf_schema), "-"], input=done.stdout)
    assert lint.returncode == 0, lint.stderr
