"""ocf:highlander:validator through execute(), with real daemons: the demo
chain on loopback, sleep, sh. Each test uses its own resource instance, so
its processes are found by their marker and killed by PID afterwards, even
when the test fails."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from harness import HIGHLANDER

from highlander.adapters import process
from highlander.agents.validator import AGENT, DAEMON_PATH
from highlander.ocf import codes
from highlander.ocf.runtime import EXIT_REASON_PREFIX, execute

UNSET = None


@dataclass
class Outcome:
    code: int
    stderr: str

    @property
    def reasons(self) -> list[str]:
        return [
            line[len(EXIT_REASON_PREFIX) :] for line in self.stderr.splitlines() if line.startswith(EXIT_REASON_PREFIX)
        ]

    @property
    def reason(self) -> str:
        assert len(self.reasons) == 1, self.stderr
        return self.reasons[0]

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if " ERROR: " in line]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if " WARNING: " in line]


class Validator:
    """One resource instance of the agent, run the way Pacemaker runs it."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.instance = f"test-{uuid4().hex[:12]}"
        self.tag = process.marker("validator", self.instance)
        self.pidfile = tmp_path / "run" / "validator.pid"
        self.logfile = tmp_path / "log" / "validator.log"
        self.params: dict[str, str | None] = {
            "command": "sleep 600",
            "signstate": "false",  # the sign-state gate has tests of its own
            "pidfile": str(self.pidfile),
            "logfile": str(self.logfile),
        }
        self.seen_pids: set[int] = set()

    def environ(self, params: dict[str, str | None], extra: dict[str, str]) -> dict[str, str]:
        env = {
            "HA_LOGFACILITY": "none",
            "OCF_RESOURCE_INSTANCE": self.instance,
            "OCF_RA_VERSION_MAJOR": "1",
            "OCF_RA_VERSION_MINOR": "1",
            "OCF_RESKEY_crm_feature_set": "3.16.2",
        }
        merged = {**self.params, **params}
        env.update({f"OCF_RESKEY_{k}": v for k, v in merged.items() if v is not None})
        env.update(extra)
        return env

    def run(
        self,
        action: str,
        *,
        level: int | str | None = None,
        probe: bool = False,
        timeout_ms: int = 30000,
        **params: str | None,
    ) -> Outcome:
        extra = {"OCF_RESKEY_CRM_meta_timeout": str(timeout_ms)}
        if action == "monitor":
            extra["OCF_RESKEY_CRM_meta_interval"] = "0" if probe else "10000"
        if level is not None:
            extra["OCF_CHECK_LEVEL"] = str(level)
        self.capsys.readouterr()
        code = execute(AGENT, [action], self.environ(params, extra))
        pid = self.pid()
        if pid is not None:
            self.seen_pids.add(pid)
        return Outcome(code, self.capsys.readouterr().err)

    def pid(self) -> int | None:
        return process.read_pidfile(str(self.pidfile))

    def live_pid(self) -> int:
        pid = process.running_pid(str(self.pidfile), self.tag)
        assert pid is not None, "the daemon is not running"
        return pid

    def tagged(self) -> list[int]:
        return process.find_tagged(self.tag)

    def cleanup(self) -> None:
        killed = self.tagged()
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Daemons started in this process are its children: reap them.
        for pid in self.seen_pids | set(killed):
            try:
                os.waitpid(pid, 0 if pid in killed else os.WNOHANG)
            except ChildProcessError:
                pass


@pytest.fixture
def validator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Validator]:
    v = Validator(tmp_path, capsys)
    try:
        yield v
    finally:
        v.cleanup()


def chain_command(port: int, block_time: float = 0.2, catch_up: float = 0.0) -> str:
    return shlex.join(
        [
            *HIGHLANDER,
            "demo-chain",
            "--listen",
            f"127.0.0.1:{port}",
            "--block-time",
            str(block_time),
            "--catch-up",
            str(catch_up),
        ]
    )


def chain_height(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        return int(json.load(answer)["result"]["sync_info"]["latest_block_height"])


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def daemon_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(entry.partition("=")[::2] for entry in raw.split("\0") if entry)


@pytest.fixture
def chain(validator: Validator, reserved_port: int) -> int:
    """A started resource running the demo chain; returns its port."""
    validator.params.update(command=chain_command(reserved_port), health_url=f"http://127.0.0.1:{reserved_port}/status")
    outcome = validator.run("start")
    assert outcome.code == codes.SUCCESS, outcome.stderr
    return reserved_port


# --- start ---------------------------------------------------------------------------------


def test_start_returns_once_the_chain_has_caught_up(validator: Validator, reserved_port: int) -> None:
    validator.params.update(
        command=chain_command(reserved_port, catch_up=1.5), health_url=f"http://127.0.0.1:{reserved_port}/status"
    )
    started = validator.run("start")
    assert started.code == codes.SUCCESS, started.stderr
    assert started.reasons == [] and started.errors == []
    # Healthy right away: start waited out the catch-up period.
    monitored = validator.run("monitor", level=10)
    assert monitored.code == codes.SUCCESS, monitored.stderr
    assert validator.tagged() == [validator.live_pid()]
    assert "serving http://127.0.0.1:" in validator.logfile.read_text()


def test_the_daemon_gets_the_marker_and_a_minimal_environment(validator: Validator, chain: int) -> None:
    env = daemon_environment(validator.live_pid())
    assert env["HIGHLANDER_OCF"] == f"validator:{validator.instance}"
    assert env["PATH"] == DAEMON_PATH
    assert not [k for k in env if k.startswith(("OCF_", "HA_"))]


def test_the_daemon_runs_detached_in_its_own_session(validator: Validator, chain: int) -> None:
    pid = validator.live_pid()
    assert os.getsid(pid) == pid
    assert os.getsid(pid) != os.getsid(0)


def test_start_of_a_started_resource_succeeds_without_a_second_daemon(validator: Validator, chain: int) -> None:
    pid = validator.live_pid()
    again = validator.run("start")
    assert again.code == codes.SUCCESS, again.stderr
    assert validator.live_pid() == pid
    assert validator.tagged() == [pid]


def test_start_fails_before_its_timeout_when_the_health_url_does_not_answer(
    validator: Validator, reserved_port: int
) -> None:
    outcome = validator.run("start", timeout_ms=4000, health_url=f"http://127.0.0.1:{reserved_port}/status")
    assert outcome.code == codes.ERR_GENERIC
    assert "not healthy within the start timeout" in outcome.reason
    assert "did not answer" in outcome.reason
    assert validator.tagged() == []


@pytest.mark.parametrize(("command", "status"), [("false", 1), ("sh -c 'exit 7'", 7)])
def test_start_fails_naming_the_status_of_a_daemon_that_exits_at_once(
    validator: Validator, command: str, status: int
) -> None:
    outcome = validator.run("start", command=command)
    assert outcome.code == codes.ERR_GENERIC
    assert f"exited with status {status}" in outcome.reason
    assert str(validator.logfile) in outcome.reason
    assert validator.tagged() == []


def test_start_replaces_a_pidfile_naming_an_unrelated_process(validator: Validator) -> None:
    validator.pidfile.parent.mkdir(parents=True)
    validator.pidfile.write_text(f"{os.getpid()}\n")
    outcome = validator.run("start")
    assert outcome.code == codes.SUCCESS, outcome.stderr
    assert validator.live_pid() != os.getpid()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_start_runs_the_daemon_as_the_configured_user(validator: Validator) -> None:
    import pwd

    outcome = validator.run("start", user="nobody")
    assert outcome.code == codes.SUCCESS, outcome.stderr
    pid = validator.live_pid()
    assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("nobody").pw_uid
    assert daemon_environment(pid)["USER"] == "nobody"


# --- monitor ---------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [None, 0, 10])
def test_monitor_of_a_healthy_daemon_succeeds(validator: Validator, chain: int, level: int | None) -> None:
    outcome = validator.run("monitor", level=level)
    assert outcome.code == codes.SUCCESS, outcome.stderr
    assert outcome.reasons == []


def test_monitor_depth_20_succeeds_while_the_height_advances(validator: Validator, chain: int) -> None:
    first = validator.run("monitor", level=20)
    assert first.code == codes.SUCCESS, first.stderr
    recorded = process.read_pidfile(f"{validator.pidfile}.height")
    assert recorded is not None
    wait_for(lambda: chain_height(chain) > recorded, "the next block")
    second = validator.run("monitor", level=20)
    assert second.code == codes.SUCCESS, second.stderr


def test_monitor_depth_20_fails_when_the_height_has_not_advanced(validator: Validator, reserved_port: int) -> None:
    validator.params.update(
        command=chain_command(reserved_port, block_time=60), health_url=f"http://127.0.0.1:{reserved_port}/status"
    )
    assert validator.run("start").code == codes.SUCCESS
    assert validator.run("monitor", level=20).code == codes.SUCCESS
    outcome = validator.run("monitor", level=20)
    assert outcome.code == codes.ERR_GENERIC
    assert "has not advanced" in outcome.reason


def test_monitor_fails_while_the_chain_is_catching_up(validator: Validator, reserved_port: int) -> None:
    # Started without a health check (it would wait the catch-up out), then
    # monitored with one.
    validator.params.update(command=chain_command(reserved_port, catch_up=600))
    started = validator.run("start")
    assert started.code == codes.SUCCESS, started.stderr
    url = f"http://127.0.0.1:{reserved_port}/status"
    wait_for(lambda: _answers(url), "the demo chain to listen")
    outcome = validator.run("monitor", level=10, health_url=url)
    assert outcome.code == codes.ERR_GENERIC
    assert "catching up" in outcome.reason
    # Depth 0 only looks at the process.
    assert validator.run("monitor", level=0, health_url=url).code == codes.SUCCESS


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except OSError:
        return False
    return True


def test_monitor_fails_when_the_health_url_stops_answering(validator: Validator, chain: int) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/status"
        outcome = validator.run("monitor", level=10, health_url=url)
    assert outcome.code == codes.ERR_GENERIC
    assert "health check failed" in outcome.reason


def test_a_probe_of_a_stopped_resource_is_not_running_and_logs_no_error(validator: Validator) -> None:
    outcome = validator.run("monitor", probe=True)
    assert outcome.code == codes.NOT_RUNNING
    assert outcome.errors == []


def test_monitor_after_the_daemon_was_killed_is_not_running_with_a_reason(validator: Validator, chain: int) -> None:
    pid = validator.live_pid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: validator.tagged() == [], "the daemon to die")
    outcome = validator.run("monitor")
    assert outcome.code == codes.NOT_RUNNING
    assert str(pid) in outcome.reason
    # A probe is allowed to find it gone without an error.
    probe = validator.run("monitor", probe=True)
    assert probe.code == codes.NOT_RUNNING
    assert probe.errors == []


def test_a_pidfile_naming_an_unrelated_live_process_is_not_running(validator: Validator) -> None:
    validator.pidfile.parent.mkdir(parents=True)
    validator.pidfile.write_text(f"{os.getpid()}\n")
    assert validator.run("monitor").code == codes.NOT_RUNNING
    assert validator.run("monitor", probe=True).code == codes.NOT_RUNNING
    # ... and stop leaves that process alone (this test would not finish otherwise).
    assert validator.run("stop").code == codes.SUCCESS


def test_monitor_reports_processes_of_the_resource_without_a_pidfile(validator: Validator) -> None:
    assert validator.run("start").code == codes.SUCCESS
    pid = validator.live_pid()
    validator.pidfile.unlink()
    outcome = validator.run("monitor")
    assert outcome.code == codes.ERR_GENERIC
    assert str(pid) in outcome.reason
    assert validator.run("stop").code == codes.SUCCESS
    assert validator.tagged() == []


# --- stop ---------------------------------------------------------------------------------------


def test_stop_ends_every_process_of_the_resource(validator: Validator, chain: int) -> None:
    outcome = validator.run("stop")
    assert outcome.code == codes.SUCCESS, outcome.stderr
    assert validator.tagged() == []
    assert not validator.pidfile.exists()
    assert "demo chain stopped" in validator.logfile.read_text()  # SIGTERM first: a clean exit
    assert validator.run("monitor", probe=True).code == codes.NOT_RUNNING


def test_stop_ends_the_daemons_children_too(validator: Validator) -> None:
    assert validator.run("start", command="sh -c 'sleep 600 & sleep 600 & wait'").code == codes.SUCCESS
    wait_for(lambda: len(validator.tagged()) == 3, "the daemon's children")
    assert validator.run("stop").code == codes.SUCCESS
    assert validator.tagged() == []


def test_stop_of_a_stopped_resource_succeeds(validator: Validator) -> None:
    assert validator.run("stop").code == codes.SUCCESS
    assert validator.run("start").code == codes.SUCCESS
    assert validator.run("stop").code == codes.SUCCESS
    again = validator.run("stop")
    assert again.code == codes.SUCCESS
    assert again.errors == []


def test_stop_escalates_to_sigkill_for_a_daemon_that_ignores_sigterm(validator: Validator) -> None:
    started = validator.run("start", command="sh -c 'trap \"\" TERM; sleep 600'")
    assert started.code == codes.SUCCESS, started.stderr
    outcome = validator.run("stop", stop_timeout="1")
    assert outcome.code == codes.SUCCESS, outcome.stderr
    assert any("SIGKILL" in w for w in outcome.warnings)
    assert validator.tagged() == []


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"command": UNSET, "health_timeout": "soon", "stop_timeout": "-1"}, id="invalid-values"),
        pytest.param({"pidfile": "relative.pid", "user": "no-such-user-hl"}, id="relative-pidfile"),
    ],
)
def test_stop_with_invalid_parameters_still_stops(validator: Validator, chain: int, bad: dict[str, Any]) -> None:
    outcome = validator.run("stop", **bad)
    assert outcome.code == codes.SUCCESS, outcome.stderr
    assert outcome.warnings
    assert validator.tagged() == []


# --- health_command ----------------------------------------------------------------------------


def test_health_command_with_a_height_line(validator: Validator, tmp_path: Path) -> None:
    height = tmp_path / "height"
    height.write_text("5\n")
    validator.params.update(health_command=f"sh -c 'echo syncing; cat {height}'")
    started = validator.run("start")
    assert started.code == codes.SUCCESS, started.stderr
    assert validator.run("monitor", level=10).code == codes.SUCCESS
    assert validator.run("monitor", level=20).code == codes.SUCCESS
    height.write_text("6\n")
    assert validator.run("monitor", level=20).code == codes.SUCCESS
    stalled = validator.run("monitor", level=20)
    assert stalled.code == codes.ERR_GENERIC
    assert "has not advanced" in stalled.reason


def test_health_command_failure_fails_the_monitor(validator: Validator) -> None:
    assert validator.run("start").code == codes.SUCCESS
    outcome = validator.run("monitor", level=10, health_command="sh -c 'echo stuck at 12 >&2; exit 3'")
    assert outcome.code == codes.ERR_GENERIC
    assert "exited with 3: stuck at 12" in outcome.reason


def test_health_command_failure_fails_the_start(validator: Validator) -> None:
    outcome = validator.run("start", timeout_ms=3000, health_command="false")
    assert outcome.code == codes.ERR_GENERIC
    assert "health command exited with 1" in outcome.reason
    assert validator.tagged() == []


def test_depth_20_needs_a_height_from_the_health_command(validator: Validator) -> None:
    assert validator.run("start", health_command="true").code == codes.SUCCESS
    outcome = validator.run("monitor", level=20, health_command="true")
    assert outcome.code == codes.ERR_GENERIC
    assert "no block height" in outcome.reason


def test_depth_20_without_a_health_check_is_the_process_check(validator: Validator) -> None:
    assert validator.run("start").code == codes.SUCCESS
    assert validator.run("monitor", level=20).code == codes.SUCCESS
    assert validator.run("monitor", level=20).code == codes.SUCCESS


# --- environment_file -------------------------------------------------------------------------------


def test_environment_file_reaches_the_daemon_and_the_health_command(validator: Validator, tmp_path: Path) -> None:
    env_file = tmp_path / "daemon.env"
    env_file.write_text(
        "# chain settings\n"
        "\n"
        "CHAIN_ID=test-1\n"
        "export MONIKER=node a\n"
        'QUOTED="with spaces"\n'
        "SINGLE='x=y'\n"
        "  INDENTED=1\n"
        "EMPTY=\n"
    )
    validator.params.update(
        environment_file=str(env_file),
        health_command="sh -c 'test \"$CHAIN_ID\" = test-1'",
    )
    outcome = validator.run("start")
    assert outcome.code == codes.SUCCESS, outcome.stderr
    env = daemon_environment(validator.live_pid())
    assert env["CHAIN_ID"] == "test-1"
    assert env["MONIKER"] == "node a"
    assert env["QUOTED"] == "with spaces"
    assert env["SINGLE"] == "x=y"
    assert env["INDENTED"] == "1"
    assert env["EMPTY"] == ""
    assert validator.run("monitor", level=10).code == codes.SUCCESS


@pytest.mark.parametrize("action", ["validate-all", "start"])
@pytest.mark.parametrize("bad_line", ["just words", "1ABC=x", "BAD-KEY=x", "=value"])
def test_a_bad_environment_file_line_is_err_configured_naming_it(
    validator: Validator, tmp_path: Path, action: str, bad_line: str
) -> None:
    env_file = tmp_path / "daemon.env"
    env_file.write_text(f"# comment\nGOOD=1\n{bad_line}\n")
    outcome = validator.run(action, environment_file=str(env_file))
    assert outcome.code == codes.ERR_CONFIGURED
    assert "line 3" in outcome.reason
    assert repr(bad_line) in outcome.reason
    assert validator.tagged() == []


@pytest.mark.parametrize("action", ["validate-all", "start"])
def test_a_missing_environment_file_is_err_args(validator: Validator, tmp_path: Path, action: str) -> None:
    missing = tmp_path / "absent.env"
    outcome = validator.run(action, environment_file=str(missing))
    assert outcome.code == codes.ERR_ARGS
    assert str(missing) in outcome.reason
    assert validator.tagged() == []


# --- configuration errors ----------------------------------------------------------------------------


def test_validate_all_accepts_a_good_configuration(validator: Validator, tmp_path: Path) -> None:
    outcome = validator.run("validate-all", health_url="http://127.0.0.1:1/status")
    assert outcome.code == codes.SUCCESS, outcome.stderr
    assert outcome.warnings == []


def test_validate_all_warns_about_a_misspelt_parameter(validator: Validator) -> None:
    outcome = validator.run("validate-all", helth_url="http://127.0.0.1:1/status")
    assert outcome.code == codes.SUCCESS
    assert len(outcome.warnings) == 1 and "'helth_url'" in outcome.warnings[0]


BAD_CONFIGURATIONS = [
    pytest.param({"command": UNSET}, codes.ERR_CONFIGURED, "'command'", id="missing-command"),
    pytest.param({"command": "  "}, codes.ERR_CONFIGURED, "command=", id="blank-command"),
    pytest.param({"command": "sleep '600"}, codes.ERR_CONFIGURED, "command=", id="unbalanced-quote"),
    pytest.param(
        {"command": "no-such-daemon-hl --flag"},
        codes.ERR_INSTALLED,
        "'no-such-daemon-hl'",
        id="program-not-on-path",
    ),
    pytest.param(
        {"command": "/nonexistent/bin/daemon"},
        codes.ERR_INSTALLED,
        "/nonexistent/bin/daemon",
        id="program-path-missing",
    ),
    pytest.param(
        {"health_command": "no-such-check-hl"},
        codes.ERR_INSTALLED,
        "'no-such-check-hl'",
        id="health-program-missing",
    ),
    pytest.param({"user": "no-such-user-hl"}, codes.ERR_CONFIGURED, "user='no-such-user-hl'", id="unknown-user"),
    pytest.param(
        {"health_url": "http://127.0.0.1:1/status", "health_command": "true"},
        codes.ERR_CONFIGURED,
        "health_url or health_command",
        id="both-health-checks",
    ),
    pytest.param({"pidfile": "run/v.pid"}, codes.ERR_CONFIGURED, "pidfile=", id="relative-pidfile"),
    pytest.param({"logfile": "v.log"}, codes.ERR_CONFIGURED, "logfile=", id="relative-logfile"),
    pytest.param({"directory": "var/lib"}, codes.ERR_CONFIGURED, "directory=", id="relative-directory"),
    pytest.param({"directory": "/nonexistent/dir"}, codes.ERR_ARGS, "/nonexistent/dir", id="missing-directory"),
    pytest.param({"environment_file": "daemon.env"}, codes.ERR_CONFIGURED, "environment_file=", id="relative-env-file"),
    pytest.param(
        {"health_url": "127.0.0.1:26657/status"}, codes.ERR_CONFIGURED, "health_url=", id="url-without-scheme"
    ),
    pytest.param({"health_timeout": "0"}, codes.ERR_CONFIGURED, "health_timeout=", id="zero-health-timeout"),
    pytest.param({"health_timeout": "5s"}, codes.ERR_CONFIGURED, "health_timeout=", id="health-timeout-not-integer"),
    pytest.param({"stop_timeout": "-1"}, codes.ERR_CONFIGURED, "stop_timeout=", id="negative-stop-timeout"),
]


@pytest.mark.parametrize("action", ["validate-all", "start"])
@pytest.mark.parametrize(("bad", "code", "named"), BAD_CONFIGURATIONS)
def test_a_bad_configuration_is_refused_with_a_reason(
    validator: Validator, action: str, bad: dict[str, Any], code: int, named: str
) -> None:
    outcome = validator.run(action, **bad)
    assert outcome.code == code, outcome.stderr
    assert named in outcome.reason
    assert validator.tagged() == []
    assert not validator.pidfile.exists()


@pytest.mark.parametrize("action", ["validate-all", "start"])
def test_a_program_that_is_not_executable_is_not_installed(validator: Validator, tmp_path: Path, action: str) -> None:
    program = tmp_path / "daemon"
    program.write_text("#!/bin/sh\nexec sleep 600\n")
    program.chmod(0o644)
    outcome = validator.run(action, command=f"{program} --serve")
    assert outcome.code == codes.ERR_INSTALLED
    assert str(program) in outcome.reason
    assert validator.tagged() == []


def test_validate_all_at_level_0_does_not_look_at_the_host(validator: Validator) -> None:
    outcome = validator.run("validate-all", level=0, command="no-such-daemon-hl", user="no-such-user-hl")
    assert outcome.code == codes.SUCCESS, outcome.stderr


def test_an_unknown_action_is_unimplemented(validator: Validator) -> None:
    outcome = validator.run("promote")
    assert outcome.code == codes.ERR_UNIMPLEMENTED
    assert "'promote'" in outcome.reason
