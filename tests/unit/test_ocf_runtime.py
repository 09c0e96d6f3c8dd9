"""execute(): every way an action ends, as Pacemaker sees it — the exit code,
the ``ocf-exit-reason:`` line and what is logged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from highlander.ocf import codes
from highlander.ocf.codes import OCFError
from highlander.ocf.runtime import EXIT_REASON_PREFIX, Resource, execute
from highlander.ocf.spec import Action, Agent, Parameter

ALL_CODES = [
    codes.SUCCESS,
    codes.ERR_GENERIC,
    codes.ERR_ARGS,
    codes.ERR_UNIMPLEMENTED,
    codes.ERR_PERM,
    codes.ERR_INSTALLED,
    codes.ERR_CONFIGURED,
    codes.NOT_RUNNING,
    codes.RUNNING_PROMOTED,
    codes.FAILED_PROMOTED,
    codes.DEGRADED,
    codes.DEGRADED_PROMOTED,
]
ERROR_CODES = [c for c in ALL_CODES if c != codes.SUCCESS]
# Keep the tests off syslog; everything is still logged to stderr.
QUIET = {"HA_LOGFACILITY": "none"}

Handler = Callable[[Resource], int]


class Recorder:
    """An agent whose handlers are set per test and which keeps the Resource
    each call received."""

    def __init__(self, monitor_depths: tuple[int, ...] = (0, 10, 20)) -> None:
        self.seen: list[Resource] = []
        self.behaviour: Handler = lambda res: codes.SUCCESS
        self.validated: list[Resource] = []
        self.validate_behaviour: Handler = lambda res: codes.SUCCESS

        def handle(res: Resource) -> int:
            self.seen.append(res)
            return self.behaviour(res)

        def validate(res: Resource) -> int:
            self.validated.append(res)
            return self.validate_behaviour(res)

        monitors = [
            Action("monitor", handle, timeout=10 + depth, interval=10 + depth, depth=depth) for depth in monitor_depths
        ]
        self.agent = Agent(
            "tester",
            "1.0",
            "A test agent",
            "An agent whose behaviour each test sets.",
            parameters=[
                Parameter("name", "Name", "A required name.", required=True),
                Parameter("count", "Count", "An integer.", type="integer", default=3),
                Parameter("enabled", "Enabled", "A boolean.", type="boolean", default=False),
                Parameter("mode", "Mode", "A choice.", type="select", choices=("fast", "safe"), default="safe"),
                Parameter(
                    "path",
                    "Path",
                    "An absolute path.",
                    default="/tmp",
                    check=lambda v: None if str(v).startswith("/") else "must be an absolute path",
                ),
            ],
            actions=[
                Action("start", handle, timeout=120),
                Action("stop", handle, timeout=60, strict=False),
                *monitors,
                Action("promote", handle, timeout=30),
            ],
            validate=validate,
        )

    @property
    def last(self) -> Resource:
        return self.seen[-1]


def env(**params: str) -> dict[str, str]:
    return {**QUIET, "OCF_RESKEY_name": "n1", **{f"OCF_RESKEY_{k}": v for k, v in params.items()}}


def exit_reasons(stderr: str) -> list[str]:
    return [line[len(EXIT_REASON_PREFIX) :] for line in stderr.splitlines() if line.startswith(EXIT_REASON_PREFIX)]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR: " in line]


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " WARNING: " in line]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


# --- what the handler decides --------------------------------------------------


@pytest.mark.parametrize("code", ALL_CODES, ids=codes.name)
def test_the_handlers_exit_code_is_the_actions(rec: Recorder, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    rec.behaviour = lambda res: code
    assert execute(rec.agent, ["start"], env()) == code
    assert rec.last.action == "start"


def test_success_writes_no_exit_reason(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute(rec.agent, ["start"], env()) == codes.SUCCESS
    assert exit_reasons(capsys.readouterr().err) == []


@pytest.mark.parametrize("code", ERROR_CODES, ids=codes.name)
def test_an_ocf_error_ends_the_action_with_its_code_and_reason(
    rec: Recorder, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(res: Resource) -> int:
        raise OCFError(code, f"failed with {codes.name(code)}")

    rec.behaviour = fail
    assert execute(rec.agent, ["start"], env()) == code
    err = capsys.readouterr().err
    assert exit_reasons(err) == [f"failed with {codes.name(code)}"]
    assert len(error_lines(err)) == 1


def test_the_exit_reason_is_written_to_the_stderr_file_descriptor(
    rec: Recorder, capfd: pytest.CaptureFixture[str]
) -> None:
    def fail(res: Resource) -> int:
        raise OCFError(codes.ERR_PERM, "no permission")

    rec.behaviour = fail
    assert execute(rec.agent, ["start"], env()) == codes.ERR_PERM
    out, err = capfd.readouterr()
    assert "ocf-exit-reason:no permission\n" in err
    assert out == ""


def test_an_unexpected_exception_is_a_generic_error_with_a_reason(
    rec: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(res: Resource) -> int:
        raise RuntimeError("boom")

    rec.behaviour = crash
    assert execute(rec.agent, ["start"], env()) == codes.ERR_GENERIC
    err = capsys.readouterr().err
    assert exit_reasons(err) == ["internal error in start: RuntimeError: boom"]
    assert error_lines(err)
    assert "Traceback" not in err  # only with HA_debug


def test_the_traceback_of_an_unexpected_exception_is_logged_at_debug(
    rec: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(res: Resource) -> int:
        raise KeyError("missing")

    rec.behaviour = crash
    assert execute(rec.agent, ["monitor"], {**env(), "HA_debug": "1"}) == codes.ERR_GENERIC
    err = capsys.readouterr().err
    assert "DEBUG: Traceback (most recent call last):" in err
    assert exit_reasons(err) == ["internal error in monitor: KeyError: 'missing'"]


def test_log_lines_are_tagged_with_agent_and_instance(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    def fail(res: Resource) -> int:
        raise OCFError(codes.ERR_GENERIC, "bad")

    rec.behaviour = fail
    execute(rec.agent, ["start"], {**env(), "OCF_RESOURCE_INSTANCE": "db:1"})
    assert rec.last.instance == "db:1"
    assert "tester(db:1) ERROR: bad" in capsys.readouterr().err


def test_the_instance_defaults_to_the_agent_name(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    execute(rec.agent, ["start"], env())
    assert rec.last.instance == "tester"


# --- what the framework answers itself ----------------------------------------------


def test_no_action_is_err_args_with_usage(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute(rec.agent, [], env()) == codes.ERR_ARGS
    assert "usage: tester {" in capsys.readouterr().err
    assert rec.seen == []


@pytest.mark.parametrize("word", ["usage", "help", "--help", "-h"])
def test_usage_and_help_succeed_and_list_the_actions(
    rec: Recorder, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert execute(rec.agent, [word], env()) == codes.SUCCESS
    out = capsys.readouterr().out
    assert out.strip() == "usage: tester {start|stop|monitor|promote|meta-data|validate-all}"


def test_an_unknown_action_is_unimplemented_and_named(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute(rec.agent, ["migrate_to"], env()) == codes.ERR_UNIMPLEMENTED
    reasons = exit_reasons(capsys.readouterr().err)
    assert len(reasons) == 1 and "'migrate_to'" in reasons[0]
    assert rec.seen == []


def test_meta_data_prints_the_xml(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute(rec.agent, ["meta-data"], {}) == codes.SUCCESS
    out = capsys.readouterr().out
    assert out.startswith('<?xml version="1.0"?>')
    assert '<resource-agent name="tester" version="1.0">' in out


def test_meta_data_needs_no_parameters(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute(rec.agent, ["meta-data"], {"OCF_RESKEY_count": "not a number"}) == codes.SUCCESS


@pytest.mark.parametrize("major", ["2", "0"])
def test_an_unsupported_api_version_is_an_error(rec: Recorder, major: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = execute(rec.agent, ["start"], {**env(), "OCF_RA_VERSION_MAJOR": major, "OCF_RA_VERSION_MINOR": "0"})
    assert code == codes.ERR_GENERIC
    reasons = exit_reasons(capsys.readouterr().err)
    assert len(reasons) == 1 and f"version {major}" in reasons[0]
    assert rec.seen == []


def test_api_version_1_is_supported(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    environ = {**env(), "OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}
    assert execute(rec.agent, ["start"], environ) == codes.SUCCESS


# --- parameters ---------------------------------------------------------------------------


def test_the_handler_gets_typed_parameters(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute(rec.agent, ["start"], env(count="8", enabled="yes", mode="fast")) == codes.SUCCESS
    assert rec.last.params == {"name": "n1", "count": 8, "enabled": True, "mode": "fast", "path": "/tmp"}


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        pytest.param({**QUIET}, "'name'", id="missing-required"),
        pytest.param({**QUIET, "OCF_RESKEY_name": ""}, "'name'", id="empty-required"),
        pytest.param(env(count="3.5"), "count=", id="not-an-integer"),
        pytest.param(env(enabled="sometimes"), "enabled=", id="bad-boolean"),
        pytest.param(env(mode="turbo"), "mode=", id="bad-select"),
        pytest.param(env(path="relative/dir"), "path=", id="failing-check"),
    ],
)
@pytest.mark.parametrize("action", ["start", "monitor", "promote", "validate-all"])
def test_an_invalid_parameter_is_err_configured_naming_it(
    rec: Recorder, environ: dict[str, str], named: str, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert execute(rec.agent, [action], environ) == codes.ERR_CONFIGURED
    reasons = exit_reasons(capsys.readouterr().err)
    assert len(reasons) == 1 and named in reasons[0]
    assert rec.seen == []


def test_all_parameter_problems_are_in_one_reason(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute(rec.agent, ["start"], {**QUIET, "OCF_RESKEY_count": "x"}) == codes.ERR_CONFIGURED
    (reason,) = exit_reasons(capsys.readouterr().err)
    assert "'name'" in reason and "count=" in reason


def test_a_non_strict_action_runs_with_defaults_and_warns(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    rec.behaviour = lambda res: codes.SUCCESS
    environ = {**QUIET, "OCF_RESKEY_count": "lots", "OCF_RESKEY_mode": "turbo"}
    assert execute(rec.agent, ["stop"], environ) == codes.SUCCESS
    assert rec.last.params == {"name": None, "count": 3, "enabled": False, "mode": "safe", "path": "/tmp"}
    err = capsys.readouterr().err
    warnings = warning_lines(err)
    assert len(warnings) == 3
    assert all("ignored for stop" in w for w in warnings)
    assert exit_reasons(err) == [] and error_lines(err) == []


def test_a_non_strict_action_still_reports_its_own_failure(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    def fail(res: Resource) -> int:
        raise OCFError(codes.ERR_GENERIC, "could not stop")

    rec.behaviour = fail
    assert execute(rec.agent, ["stop"], {**QUIET}) == codes.ERR_GENERIC
    assert exit_reasons(capsys.readouterr().err) == ["could not stop"]


# --- probes --------------------------------------------------------------------------------


def _not_running(res: Resource) -> int:
    raise OCFError(codes.NOT_RUNNING, "not running")


def test_a_probe_is_a_monitor_with_interval_zero(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    execute(rec.agent, ["monitor"], {**env(), "OCF_RESKEY_CRM_meta_interval": "0"})
    assert rec.last.is_probe
    execute(rec.agent, ["monitor"], {**env(), "OCF_RESKEY_CRM_meta_interval": "10000"})
    assert not rec.last.is_probe
    execute(rec.agent, ["monitor"], env())
    assert not rec.last.is_probe
    execute(rec.agent, ["start"], {**env(), "OCF_RESKEY_CRM_meta_interval": "0"})
    assert not rec.last.is_probe


def test_a_probe_that_finds_nothing_running_logs_no_error(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    rec.behaviour = _not_running
    code = execute(rec.agent, ["monitor"], {**env(), "OCF_RESKEY_CRM_meta_interval": "0"})
    assert code == codes.NOT_RUNNING
    err = capsys.readouterr().err
    assert error_lines(err) == []
    assert exit_reasons(err) == ["not running"]


def test_a_recurring_monitor_that_finds_nothing_running_logs_an_error(
    rec: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    rec.behaviour = _not_running
    code = execute(rec.agent, ["monitor"], {**env(), "OCF_RESKEY_CRM_meta_interval": "10000"})
    assert code == codes.NOT_RUNNING
    err = capsys.readouterr().err
    assert error_lines(err) == ["tester(tester) ERROR: not running"]


def test_a_probe_that_fails_otherwise_logs_an_error(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(res: Resource) -> int:
        raise OCFError(codes.ERR_GENERIC, "half alive")

    rec.behaviour = broken
    code = execute(rec.agent, ["monitor"], {**env(), "OCF_RESKEY_CRM_meta_interval": "0"})
    assert code == codes.ERR_GENERIC
    assert error_lines(capsys.readouterr().err) == ["tester(tester) ERROR: half alive"]


# --- OCF_CHECK_LEVEL ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "level"),
    [(None, 0), ("", 0), ("0", 0), ("10", 10), ("15", 10), ("20", 20), ("25", 20), ("5", 0), ("-1", 0)],
)
def test_monitor_runs_the_requested_or_next_lower_depth(
    rec: Recorder, raw: str | None, level: int, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = env() if raw is None else {**env(), "OCF_CHECK_LEVEL": raw}
    assert execute(rec.agent, ["monitor"], environ) == codes.SUCCESS
    assert rec.last.check_level == level


@pytest.mark.parametrize(("raw", "level"), [("10", 0), ("15", 0), ("20", 20), ("99", 20)])
def test_monitor_falls_back_to_the_next_lower_declared_depth(
    raw: str, level: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = Recorder(monitor_depths=(0, 20))
    assert execute(rec.agent, ["monitor"], {**env(), "OCF_CHECK_LEVEL": raw}) == codes.SUCCESS
    assert rec.last.check_level == level


@pytest.mark.parametrize("action", ["monitor", "validate-all"])
def test_a_check_level_that_is_not_a_number_is_err_configured(
    rec: Recorder, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert execute(rec.agent, [action], {**env(), "OCF_CHECK_LEVEL": "abc"}) == codes.ERR_CONFIGURED
    reasons = exit_reasons(capsys.readouterr().err)
    assert len(reasons) == 1 and "OCF_CHECK_LEVEL" in reasons[0] and "'abc'" in reasons[0]
    assert rec.seen == [] and rec.validated == []


def test_a_bad_check_level_does_not_fail_a_stop(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    # Stop is non-strict so that a configuration mistake never turns it into
    # a failed stop (and a fence); stop has no check levels to choose from.
    assert execute(rec.agent, ["stop"], {**env(), "OCF_CHECK_LEVEL": "abc"}) == codes.SUCCESS
    assert rec.last.action == "stop"


# --- timeouts ------------------------------------------------------------------------------


def test_the_timeout_comes_from_crm_meta_timeout(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    execute(rec.agent, ["start"], {**env(), "OCF_RESKEY_CRM_meta_timeout": "4000"})
    res = rec.last
    assert res.timeout == 4.0
    assert 0 < res.time_left() <= 4.0


@pytest.mark.parametrize(
    ("action", "level", "timeout"),
    [
        ("start", None, 120),
        ("stop", None, 60),
        ("promote", None, 30),
        ("monitor", None, 10),
        ("monitor", "10", 20),
        ("monitor", "15", 20),
        ("monitor", "20", 30),
    ],
)
def test_without_crm_meta_timeout_the_declared_timeout_applies(
    rec: Recorder, action: str, level: str | None, timeout: int, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = env() if level is None else {**env(), "OCF_CHECK_LEVEL": level}
    execute(rec.agent, [action], environ)
    assert rec.last.timeout == timeout
    assert 0 < rec.last.time_left() <= timeout


@pytest.mark.parametrize("raw", ["", "0", "abc", "-5"])
def test_an_unusable_crm_meta_timeout_falls_back_to_the_declared_one(
    rec: Recorder, raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(rec.agent, ["start"], {**env(), "OCF_RESKEY_CRM_meta_timeout": raw})
    assert rec.last.timeout == 120


# --- validate-all ---------------------------------------------------------------------------


def test_validate_all_defaults_to_level_10_and_runs_the_agents_validate(
    rec: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert execute(rec.agent, ["validate-all"], env()) == codes.SUCCESS
    assert len(rec.validated) == 1
    assert rec.validated[0].check_level == 10
    assert rec.seen == []


@pytest.mark.parametrize("level", ["10", "20"])
def test_validate_all_at_level_10_or_more_runs_the_agents_validate(
    rec: Recorder, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert execute(rec.agent, ["validate-all"], {**env(), "OCF_CHECK_LEVEL": level}) == codes.SUCCESS
    assert len(rec.validated) == 1


def test_validate_all_at_level_0_skips_the_agents_validate(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(res: Resource) -> int:
        raise OCFError(codes.ERR_INSTALLED, "the program is missing")

    rec.validate_behaviour = broken
    assert execute(rec.agent, ["validate-all"], {**env(), "OCF_CHECK_LEVEL": "0"}) == codes.SUCCESS
    assert rec.validated == []


@pytest.mark.parametrize("code", [codes.ERR_INSTALLED, codes.ERR_CONFIGURED, codes.ERR_ARGS, codes.ERR_PERM])
def test_validate_all_reports_the_agents_validate_error(
    rec: Recorder, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(res: Resource) -> int:
        raise OCFError(code, "not here")

    rec.validate_behaviour = broken
    assert execute(rec.agent, ["validate-all"], env()) == code
    assert exit_reasons(capsys.readouterr().err) == ["not here"]


def test_resource_validate_runs_the_agents_validate_from_a_handler(
    rec: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    def start(res: Resource) -> int:
        res.validate()
        return codes.SUCCESS

    def broken(res: Resource) -> int:
        raise OCFError(codes.ERR_INSTALLED, "the program is missing")

    rec.behaviour = start
    rec.validate_behaviour = broken
    assert execute(rec.agent, ["start"], env()) == codes.ERR_INSTALLED
    assert exit_reasons(capsys.readouterr().err) == ["the program is missing"]


def test_validate_all_warns_about_unknown_parameters(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    environ = {
        **env(conut="4", colour="red"),
        "OCF_RESKEY_CRM_meta_timeout": "20000",
        "OCF_RESKEY_CRM_meta_interval": "0",
        "OCF_RESKEY_crm_feature_set": "3.16.2",
    }
    assert execute(rec.agent, ["validate-all"], environ) == codes.SUCCESS
    warnings = warning_lines(capsys.readouterr().err)
    assert len(warnings) == 2
    assert "unknown parameter 'colour'" in warnings[0]
    assert "unknown parameter 'conut'" in warnings[1]


def test_other_actions_do_not_warn_about_unknown_parameters(rec: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    assert execute(rec.agent, ["start"], env(conut="4")) == codes.SUCCESS
    assert warning_lines(capsys.readouterr().err) == []


def test_validate_all_without_a_validate_hook_checks_parameters_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    agent = Agent(
        "plain",
        "1.0",
        "s",
        "l",
        parameters=[Parameter("n", "s", "l", type="integer")],
        actions=[Action(name, lambda res: codes.SUCCESS, timeout=20) for name in ("start", "stop", "monitor")],
    )
    assert execute(agent, ["validate-all"], {**QUIET}) == codes.SUCCESS
    assert execute(agent, ["validate-all"], {**QUIET, "OCF_RESKEY_n": "x"}) == codes.ERR_CONFIGURED
