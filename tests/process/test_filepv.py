"""CometBFT FilePV mode against a real trio: the state file is raised to the
register's mark and never lowered; the signer runs as the follower's child,
its changes are replicated while it runs, and it is killed (fail closed) when
it is superseded, when a change does not reach a majority in time, when the
local daemon is gone, when its state file is unreadable, or when the follower
dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from harness import HIGHLANDER

from highlander.adapters import files, process
from highlander.adapters.waiting import wait_until
from highlander.commands.signstate import raise_state_file, read_state_file
from highlander.lab.replicas import LoopbackReplicas
from highlander.signstate import formats
from highlander.signstate.client import SignerClient
from highlander.signstate.register import HRS, KeyId, Record

pytestmark = pytest.mark.signstate
KEY = KeyId("filepv-chain", "val")
AGENT = "/usr/lib/ocf/resource.d/highlander/validator"
# Signs a step every 0.05 s, like a fast chain: see its docstring.
FILEPV_SIGNER = Path(__file__).with_name("filepv_signer.py")
OCF_ERR_GENERIC, OCF_ERR_CONFIGURED = 1, 6


def signed(path: Path, hrs: HRS, signbytes: bytes) -> None:
    """Write the state file the way CometBFT does after signing at ``hrs``."""
    files.write_file(path, formats.dump_cometbft(formats.SignState(hrs, b"\x01" * 64, signbytes)), mode=0o600)


def on_majority(replicas: LoopbackReplicas, at_least: HRS, key: KeyId = KEY) -> bool:
    """Whether a majority of replicas (asked through node-b) hold ``at_least`` or more."""
    with SignerClient(replicas.socket("node-b")) as client:
        records = client.status(key)
    return sum(isinstance(r, Record) and r.hwm >= at_least for r in records.values()) >= 2


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


class Validator:
    """One resource instance of the installed validator agent in FilePV mode,
    run as Pacemaker runs it; its processes are found by their marker."""

    def __init__(self, replicas: LoopbackReplicas, tmp_path: Path, **params: str) -> None:
        self.instance = f"filepv-{uuid4().hex[:12]}"
        self.tag = process.marker("validator", self.instance)
        self.state = tmp_path / "priv_validator_state.json"
        self.journal = tmp_path / "signed.journal"
        self.pidfile = tmp_path / "v.pid"
        self.params = {
            "command": f"{sys.executable} {FILEPV_SIGNER} {self.state} {self.journal}",
            "pidfile": str(self.pidfile),
            "logfile": str(tmp_path / "v.log"),
            "chain_id": KEY.chain_id,
            "key_id": KEY.key_id,
            "signstate_socket": str(replicas.socket("node-a")),
            "state_file": str(self.state),
            **params,
        }

    def run(self, action: str, **params: str) -> subprocess.CompletedProcess[str]:
        env = {
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": self.instance,
            "OCF_RESKEY_CRM_meta_timeout": "30000",
            **{f"OCF_RESKEY_{k}": v for k, v in {**self.params, **params}.items()},
        }
        if action == "monitor":
            env["OCF_RESKEY_CRM_meta_interval"] = "10000"
        return subprocess.run([AGENT, action], env=env, capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        started = self.run("start")
        assert started.returncode == 0, started.stderr

    def reason(self, done: subprocess.CompletedProcess[str]) -> str:
        reasons = [line.partition(":")[2] for line in done.stderr.splitlines() if line.startswith("ocf-exit-reason:")]
        assert len(reasons) == 1, done.stderr
        return reasons[0]

    def start_signing(self, replicas: LoopbackReplicas) -> int:
        """Start, and wait until the signer's first marks are on a majority; its PID."""
        self.start()
        signer = self.signer_pid()
        wait_until(lambda: on_majority(replicas, HRS(2, 0, 1)), timeout=15, what="the signer's marks on a majority")
        return signer

    def failed_monitor(self) -> str:
        """The reason of a monitor that must fail (OCF_ERR_GENERIC)."""
        monitored = self.run("monitor")
        assert monitored.returncode == OCF_ERR_GENERIC, monitored.stderr
        return self.reason(monitored)

    def signer_pid(self) -> int:
        pid = process.read_pidfile(str(self.pidfile))
        assert pid is not None and process.is_ours(pid, self.tag), "the signer is not running"
        return pid

    def follower_pid(self) -> int:
        pid = process.read_pidfile(f"{self.pidfile}.follow")
        assert pid is not None and process.is_ours(pid, self.tag), "the follower is not running"
        return pid

    def wait_signer_killed(self, pid: int, why: str) -> None:
        """Until the signer is dead and no process of the resource is left."""
        wait_until(
            lambda: not process.is_ours(pid, self.tag) and not process.find_tagged(self.tag),
            timeout=30,
            what=f"the signer killed ({why})",
            interval=0.05,
        )

    def window(self, reason: str) -> float:
        """Seconds the signer went on signing after writing the first mark
        the register did not get (the mark the kill reason names)."""
        mark = reason.split("killed the signer: ")[1].split()[0]
        times = {}
        for line in self.journal.read_text().splitlines():
            stamp, hrs = line.split()
            times.setdefault(hrs, float(stamp))
            last = float(stamp)
        return last - times[mark]

    def kill_leftovers(self) -> None:
        process.signal_processes(process.find_tagged(self.tag), signal.SIGKILL)


@pytest.fixture
def validators() -> Iterator[list[Validator]]:
    made: list[Validator] = []
    try:
        yield made
    finally:
        for validator in made:
            validator.kill_leftovers()


@pytest.fixture
def validator(replicas: LoopbackReplicas, tmp_path: Path, validators: list[Validator]) -> Validator:
    made = Validator(replicas, tmp_path, replication_deadline="1000")
    validators.append(made)
    return made


def follower(
    replicas: LoopbackReplicas, state: Path, signer: list[str], tmp_path: Path, key: KeyId = KEY
) -> tuple[subprocess.Popen[bytes], int]:
    """``highlander signstate follow`` running ``signer`` for a fresh promotion
    on node-a; the follower and the signer's PID."""
    from highlander.signstate.follow import Signer

    with SignerClient(replicas.socket("node-a")) as client:
        session = client.promote(key)
    raise_state_file(state, "cometbft", session.hwm)
    pidfile = tmp_path / "signer.pid"
    proc = subprocess.Popen(
        [
            *HIGHLANDER,
            "signstate",
            "follow",
            "--socket",
            str(replicas.socket("node-a")),
            "--chain-id",
            key.chain_id,
            "--key-id",
            key.key_id,
            "--epoch",
            str(session.epoch),
            "--state-file",
            str(state),
            "--since",
            str(session.hwm),
            "--pidfile",
            str(pidfile),
            "--reason-file",
            str(tmp_path / "reason"),
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(Signer(signer, dict(os.environ)).to_json().encode())
    proc.stdin.close()
    return proc, wait_until(lambda: process.read_pidfile(str(pidfile)), timeout=10, what="the signer's PID")


def test_raising_never_lowers_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "priv_validator_state.json"
    assert raise_state_file(path, "cometbft", HRS(10, 0, 2)) == HRS(10, 0, 2)
    assert raise_state_file(path, "cometbft", HRS(9, 5, 3)) == HRS(10, 0, 2)
    assert read_state_file(path, "cometbft").hrs == HRS(10, 0, 2)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_follower_replicates_and_kills_a_superseded_signer(
    replicas: LoopbackReplicas, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "priv_validator_state.json"
    proc, signer = follower(replicas, state, ["sleep", "600"], tmp_path)  # sleep stands in for the FilePV daemon
    processes.append(proc)
    assert Path(f"/proc/{signer}/stat").read_text().split(") ")[1].split()[1] == str(proc.pid)  # its child
    signed(state, HRS(5, 0, 1), b"vote-5-1")  # at once: replicated even before the follower looks
    digest = formats.digest_of(read_state_file(state, "cometbft"))

    def replicated() -> bool:
        with SignerClient(replicas.socket("node-b")) as client:
            records = client.status(KEY)
        return (
            sum(isinstance(r, Record) and r.hwm == HRS(5, 0, 1) and r.digest == digest for r in records.values()) >= 2
        )

    wait_until(replicated, timeout=10, what="the state file's mark on a majority")

    with SignerClient(replicas.socket("node-b")) as client:
        client.promote(KEY)  # node-b takes over
    signed(state, HRS(5, 0, 2), b"vote-5-2")  # the old signer signs once more

    assert proc.wait(timeout=10) == 3
    assert not Path(f"/proc/{signer}").exists()  # SIGKILLed and reaped the moment the register said STALE_EPOCH
    assert b"STALE_EPOCH" in proc.stderr.read()  # type: ignore[union-attr]
    reason = (tmp_path / "reason").read_text()
    assert reason.startswith("killed the signer: another node was promoted; 5/0/2 was refused (STALE_EPOCH")


def test_the_follower_passes_sigterm_on_and_exits_with_the_signer(
    replicas: LoopbackReplicas, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    proc, signer = follower(
        replicas, tmp_path / "state.json", ["sh", "-c", "trap 'kill $!; exit 7' TERM; sleep 600 & wait"], tmp_path
    )
    processes.append(proc)
    proc.terminate()
    assert proc.wait(timeout=10) == 7  # the signer's own status: it ended, nothing was killed
    assert not (tmp_path / "reason").exists()


def test_the_validator_agent_in_filepv_mode(
    replicas: LoopbackReplicas, tmp_path: Path, validators: list[Validator]
) -> None:
    """Start through the agent: promoted, the state file raised by the margin
    above the register's mark, the daemon running as the follower's child;
    its signatures are replicated; stop ends both."""
    with SignerClient(replicas.socket("node-b")) as client:  # an earlier signer left a mark
        session = client.promote(KEY)
        client.advance(KEY, session.epoch, HRS(40, 0, 3), "ab" * 32)
    validator = Validator(replicas, tmp_path, command="sleep 600", height_margin="5")
    validators.append(validator)
    validator.start()
    assert read_state_file(validator.state, "cometbft").hrs == HRS(45, 0, 3)
    assert len(process.find_tagged(validator.tag)) == 2  # the daemon and its follower
    assert os.getsid(validator.signer_pid()) == validator.signer_pid()  # detached in its own session
    assert validator.run("monitor").returncode == 0

    signed(validator.state, HRS(46, 0, 1), b"vote-46-1")  # the daemon signs on its own
    wait_until(lambda: on_majority(replicas, HRS(46, 0, 1)), timeout=10, what="the daemon's new mark on a majority")
    stopped = validator.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert process.find_tagged(validator.tag) == []
    assert validator.run("monitor").returncode == 7  # cleanly stopped: not running


def test_a_signer_cut_off_from_the_majority_is_killed_within_the_deadline(
    replicas: LoopbackReplicas, validator: Validator
) -> None:
    signer = validator.start_signing(replicas)
    for peer in ("node-b", "node-c"):
        replicas.signal(peer, signal.SIGSTOP)  # node-a's daemon answers, but no majority does
    validator.wait_signer_killed(signer, "its changes no longer reach a majority")
    reason = validator.failed_monitor()
    assert "killed the signer: " in reason and " was not on a majority within 1 s (" in reason, reason
    print(f"signed unchecked for {validator.window(reason):.3f} s (bound: 1 s deadline + 0.02 s poll); {reason}")
    assert validator.run("stop").returncode == 0
    assert validator.run("monitor").returncode == 7


@pytest.mark.parametrize("user", [None, "nobody"])
def test_the_signer_dies_with_its_follower(replicas: LoopbackReplicas, validator: Validator, user: str | None) -> None:
    if user and os.geteuid() != 0:
        pytest.skip("running the daemon as another user needs root")
    validator.params.update(command="sleep 600", **({"user": user} if user else {}))
    validator.start()
    signer, guard = validator.signer_pid(), validator.follower_pid()
    if user:
        assert Path(f"/proc/{signer}").stat().st_uid != 0
    os.kill(guard, signal.SIGKILL)
    validator.wait_signer_killed(signer, "its follower was killed")
    assert f"the follower guarding the daemon (PID {guard}) is gone" in validator.failed_monitor()
    assert validator.run("stop").returncode == 0


def test_a_lost_daemon_connection_with_a_pending_change_kills_the_signer(
    replicas: LoopbackReplicas, validator: Validator
) -> None:
    signer = validator.start_signing(replicas)
    replicas.kill("node-a")  # the local sign-state daemon dies; the signer goes on signing
    validator.wait_signer_killed(signer, "its sign-state daemon is gone")
    reason = validator.failed_monitor()
    assert " was not on a majority within 1 s (" in reason and "sign-state daemon" in reason, reason


def test_an_unreadable_state_file_kills_the_signer(replicas: LoopbackReplicas, validator: Validator) -> None:
    validator.params.update(command="sleep 600")  # signs nothing: only the file changes
    validator.start()
    signer = validator.signer_pid()
    files.write_file(validator.state, '{"height": "7", "round": 0', mode=0o600)
    validator.wait_signer_killed(signer, "its state file is unreadable")
    reason = validator.failed_monitor()
    assert "killed the signer: the state file was unreadable for 1 s (" in reason, reason


@pytest.mark.parametrize(
    ("bad", "named"), [({"chain_id": "../x"}, "chain_id '../x'"), ({"key_id": ".hidden"}, "key_id '.hidden'")]
)
def test_a_key_the_register_cannot_name_is_refused_at_validate_time(
    replicas: LoopbackReplicas, validator: Validator, bad: dict[str, str], named: str
) -> None:
    for action in ("validate-all", "start"):
        refused = validator.run(action, **bad)
        assert refused.returncode == OCF_ERR_CONFIGURED, refused.stderr
        assert named in validator.reason(refused)
    assert process.find_tagged(validator.tag) == []


def test_export_and_import_through_the_cli(replicas: LoopbackReplicas, tmp_path: Path) -> None:
    highlander = [*HIGHLANDER, "signstate"]
    key = ["--chain-id", KEY.chain_id, "--key-id", "exported"]
    with SignerClient(replicas.socket("node-a")) as client:
        session = client.promote(KeyId(KEY.chain_id, "exported"))
        client.advance(KeyId(KEY.chain_id, "exported"), session.epoch, HRS(7, 1, 2), "cd" * 32)
    out = tmp_path / "exported.json"
    done = subprocess.run(
        [*highlander, "export", "--socket", str(replicas.socket("node-b")), *key, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert read_state_file(out, "cometbft").hrs == HRS(7, 1, 2)

    # With a margin: the mark the agent raises a state file to (test_the_validator_agent_in_filepv_mode).
    margin = subprocess.run(
        [*highlander, "export", "--socket", str(replicas.socket("node-b")), *key, "--height-margin", "3"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert margin.returncode == 0, margin.stderr
    assert formats.parse_cometbft(margin.stdout).hrs == HRS(10, 0, 3)

    # Import raises a (stopped) replica from a signer's file, and refuses a running one's.
    signed(out, HRS(9, 0, 1), b"vote-9-1")
    refused = subprocess.run(
        [*highlander, "import", "--config", str(replicas.config("node-c")), *key, str(out)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0 and "in use by another process" in refused.stderr
    replicas.stop("node-c")
    imported = subprocess.run(
        [*highlander, "import", "--config", str(replicas.config("node-c")), *key, str(out)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert imported.returncode == 0, imported.stderr
    assert '"height": 9' in imported.stdout

    # The register's majority rule: with node-a gone too, one replica of three is not enough.
    replicas.stop("node-a")
    alone = subprocess.run(
        [*highlander, "export", "--socket", str(replicas.socket("node-b")), *key],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert alone.returncode == 1
    assert "only 1 of 3 replicas answered; a majority is needed" in alone.stderr
