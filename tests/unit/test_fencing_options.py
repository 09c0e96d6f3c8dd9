"""Fence agent options: stdin lines and the command line, typed, checked."""

from __future__ import annotations

import io
import re
import stat
import time
from pathlib import Path

import pytest

from highlander.fencing import address
from highlander.fencing import options as opts
from highlander.fencing.options import OptionError, parse, problems
from highlander.fencing.spec import COMMON, FenceAgent, Option


def _no_driver(values: object) -> object:
    raise AssertionError("option parsing never builds a driver")


SINGLE = FenceAgent(
    "fence_test",
    "Test agent",
    "A single-plug test agent.",
    vendor_url="",
    options=(
        *(o.replace(required=True) if o.name == "username" else o for o in COMMON.values()),
        Option("lanplus", "Use lanplus", short="P", type="boolean", default=True),
    ),
    driver=_no_driver,  # type: ignore[arg-type]
)
MULTI = FenceAgent(
    "fence_test_pdu",
    "Test PDU",
    "A multi-plug test agent.",
    vendor_url="",
    options=COMMON.values(),
    driver=_no_driver,  # type: ignore[arg-type]
    multi_plug=True,
)


class Unreadable(io.StringIO):
    def read(self, *args: object) -> str:  # type: ignore[override]
        raise AssertionError("stdin must not be read when there are arguments")


def from_stdin(text: str, agent: FenceAgent = SINGLE) -> opts.Options:
    return parse(agent, [], io.StringIO(text))


def from_argv(*argv: str, agent: FenceAgent = SINGLE) -> opts.Options:
    return parse(agent, list(argv), Unreadable())


def failure(callable_: object, *args: object) -> str:
    with pytest.raises(OptionError) as caught:
        callable_(*args)  # type: ignore[operator]
    line = str(caught.value)
    assert line.startswith("Failed: ") and "\n" not in line
    return line


# --- stdin ---------------------------------------------------------------------


def test_stdin_lines_comments_whitespace_and_last_value_wins() -> None:
    options = from_stdin(
        "# written by pacemaker-fenced\n"
        "\n"
        "   action=off\n"
        "ip=10.0.0.1\n"
        "ip=10.0.0.2\n"
        "\tusername=admin  \n"
        'password="s3cret"\n'
    )
    assert options.action == "off"
    assert options["ip"] == "10.0.0.2"
    assert options["username"] == "admin"
    assert options["password"] == "s3cret"  # one pair of quotes removed, as fence-agents does
    assert options.source == "stdin"


def test_deprecated_aliases_are_accepted_and_last_spelling_wins() -> None:
    options = from_stdin(
        "action=status\nipaddr=10.0.0.1\nlogin=admin\npasswd=pw\npasswd_script=/bin/true\n"
        "port=3\ndebug=/tmp/x.log\nip=10.0.0.9\n"
    )
    assert options.action == "status"
    assert options["ip"] == "10.0.0.9"
    assert options["username"] == "admin"
    assert options["password"] == "pw"
    assert options["password_script"] == "/bin/true"
    assert options["plug"] == "3"
    assert options["debug_file"] == "/tmp/x.log"


def test_option_is_not_an_alias_of_action() -> None:
    """fence-agents 4.12 ignores it; a stale device attribute must not turn a status into an off."""
    options = from_stdin("action=status\noption=off\nip=h\n")
    assert options.action == "status"
    assert options.ignored == ("option",)


def test_long_option_spellings_work_on_stdin() -> None:
    options = from_stdin("ip=h\npower-timeout=7\ndebug-file=/tmp/d\npower_wait=1\n")
    assert options["power_timeout"] == 7
    assert options["debug_file"] == "/tmp/d"
    assert options["power_wait"] == 1


def test_unknown_names_are_ignored_and_remembered_without_values() -> None:
    options = from_stdin("ip=h\npcmk_host_list=a,b\nfrobnicate=secret-value\nagent=fence_x\n")
    assert options.ignored == ("pcmk_host_list", "frobnicate", "agent")
    assert "secret-value" not in repr(options.ignored)


def test_nodename_is_the_plug_when_no_plug_or_port_is_given() -> None:
    assert from_stdin("ip=h\nnodename=node-b\n", MULTI)["plug"] == "node-b"
    assert from_stdin("ip=h\nnodename=node-b\nport=7\n", MULTI)["plug"] == "7"
    assert from_stdin("ip=h\nplug=5\nnodename=node-b\n", MULTI)["plug"] == "5"
    assert from_stdin("ip=h\nnodename=node-b\n", MULTI).nodename == "node-b"


def test_defaults_fill_what_is_not_given() -> None:
    options = from_stdin("ip=h\n")
    assert options.action == "reboot"
    assert options["power_timeout"] == 20
    assert options["power_wait"] == 0
    assert options["delay"] == 0
    assert options["method"] == "onoff"
    assert options["verbose"] is False
    assert options["lanplus"] is True
    assert options["password"] is None
    assert options.given == {"ip"}


def test_an_empty_value_is_unset() -> None:
    options = from_stdin("ip=h\npower_timeout=\nusername=\n")
    assert options["power_timeout"] == 20
    assert options["username"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("garbage\n", "Failed: stdin line 1 is not name=value"),
        ("ip=h\nthis is not an option\n", "Failed: stdin line 2 is not name=value"),
        ("=value\n", "Failed: stdin line 1 is not name=value"),
        ("ip=h\0\n", "Failed: stdin contains a NUL byte"),
    ],
)
def test_garbage_on_stdin_is_refused(text: str, expected: str) -> None:
    assert failure(from_stdin, text) == expected


def test_a_refused_line_is_never_quoted() -> None:
    line = failure(from_stdin, "ip=h\npassword hunter2\n")
    assert "hunter2" not in line


def test_binary_stdin_is_refused() -> None:
    assert failure(parse, SINGLE, [], io.BytesIO(b"ip=\xff\xfe\n")) == "Failed: stdin is not UTF-8 text"
    assert parse(SINGLE, [], io.BytesIO(b"ip=h\n"))["ip"] == "h"


def test_huge_stdin_is_refused() -> None:
    assert "larger than" in failure(from_stdin, "#" * (opts.STDIN_LIMIT + 1))


# --- typed values ----------------------------------------------------------------


def test_values_are_typed() -> None:
    options = from_stdin(
        "ip=h\nipport=623\npower_timeout=1.5\ndelay=3\nretry_on=0\nverbose=yes\nlanplus=off\nmethod=CYCLE\n"
    )
    assert options["ipport"] == 623
    assert options["power_timeout"] == 1.5
    assert options["delay"] == 3 and isinstance(options["delay"], int)
    assert options["retry_on"] == 0
    assert options["verbose"] is True
    assert options["lanplus"] is False
    assert options["method"] == "cycle"  # choices compare without case, as in fence-agents


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ipport=abc", "Failed: option ipport='abc' is not a valid integer"),
        ("ipport=1_000", "Failed: option ipport='1_000' is not a valid integer"),
        ("ipport=70000", "Failed: option ipport='70000' must be at least 1 and at most 65535"),
        ("retry_on=-1", "Failed: option retry_on='-1' must be at least 0"),
        ("power_timeout=soon", "Failed: option power_timeout='soon' is not a valid time in seconds"),
        ("delay=-5", "Failed: option delay='-5' is not a valid time in seconds"),
        ("delay=inf", "Failed: option delay='inf' is not a valid time in seconds"),
        ("verbose=maybe", "Failed: option verbose='maybe' is not a boolean (use 1/yes/on/true/0/no/off/false)"),
        ("method=pull", "Failed: option method='pull' is not one of: onoff, cycle"),
        ("action=explode", "Failed: Unrecognised action 'explode'"),
    ],
)
def test_bad_values_fail_with_one_clear_line(line: str, expected: str) -> None:
    assert failure(from_stdin, f"ip=h\n{line}\n") == expected


def test_a_secret_value_is_never_quoted_in_an_error() -> None:
    agent = FenceAgent(
        "fence_t",
        "T",
        "T.",
        vendor_url="",
        driver=_no_driver,  # type: ignore[arg-type]
        options=[*COMMON.values(), Option("pin", "PIN", type="integer", secret=True)],
    )
    line = failure(parse, agent, [], io.StringIO("ip=h\npin=hunter2\n"))
    assert line == "Failed: option pin is not a valid integer"


def test_actions_are_case_insensitive_and_meta_data_is_metadata() -> None:
    assert from_stdin("action=OFF\nip=h\n").action == "off"
    assert from_stdin("action=meta-data\n").action == "metadata"


def test_metadata_and_manpage_ignore_everything_else() -> None:
    assert from_stdin("action=metadata\nipport=abc\n").action == "metadata"
    assert from_argv("-o", "manpage", "--ipport", "abc").action == "manpage"


# --- command line ----------------------------------------------------------------


def test_command_line_long_and_short_forms() -> None:
    options = from_argv(
        "--ip=10.0.0.1",
        "--username",
        "admin",
        "-p",
        "pw",
        "-o",
        "status",
        "-u",
        "6230",
        "--power-timeout=3",
        "-v",
        "--plug",
        "4",
    )
    assert options.source == "command line"
    assert options.action == "status"
    assert options["ip"] == "10.0.0.1"
    assert options["username"] == "admin"
    assert options["password"] == "pw"
    assert options["ipport"] == 6230
    assert options["power_timeout"] == 3
    assert options["verbose"] is True
    assert options["plug"] == "4"


def test_command_line_booleans_are_flags_and_last_value_wins() -> None:
    options = from_argv("-a", "one", "--ip", "two", "--lanplus", "-P")
    assert options["ip"] == "two"
    assert options["lanplus"] is True


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--ipaddr=h"], "Failed: command line: option --ipaddr not recognized"),
        (["-a"], "Failed: command line: option -a requires argument"),
        (["--verbose=1"], "Failed: command line: option --verbose must not have an argument"),
        (["-a", "h", "status"], "Failed: command line: unexpected argument 'status'"),
        (["-a", "h", "-u", "x"], "Failed: option ipport='x' is not a valid integer"),
        (["-o", "dance"], "Failed: Unrecognised action 'dance'"),
    ],
)
def test_command_line_errors(argv: list[str], expected: str) -> None:
    assert failure(from_argv, *argv) == expected


def test_help_is_asked_for_on_the_command_line_only() -> None:
    assert from_argv("-h").action == opts.HELP
    assert from_argv("--help", "-u", "abc").action == opts.HELP
    assert failure(from_stdin, "action=help\n") == "Failed: Unrecognised action 'help'"


def test_stdin_is_not_read_when_there_are_arguments() -> None:
    from_argv("-o", "status", "-a", "h")  # Unreadable raises if read


# --- consistency -------------------------------------------------------------------


def test_problems_are_fence_agents_messages() -> None:
    assert problems(SINGLE, from_stdin("action=off\n")) == [
        "You have to enter fence address",
        "You have to set login name",
    ]
    assert problems(SINGLE, from_stdin("action=off\nip=h\nlogin=a\n")) == []


def test_a_required_password_is_satisfied_by_a_password_script() -> None:
    agent = FenceAgent(
        "fence_t",
        "T",
        "T.",
        vendor_url="",
        driver=_no_driver,  # type: ignore[arg-type]
        options=[o.replace(required=True) if o.name == "password" else o for o in COMMON.values()],
    )
    missing = parse(agent, [], io.StringIO("ip=h\n"))
    assert problems(agent, missing) == ["You have to enter password or password script"]
    scripted = parse(agent, [], io.StringIO("ip=h\npassword_script=/bin/pw\n"))
    assert problems(agent, scripted) == []


@pytest.mark.parametrize("action", ["on", "off", "reboot", "status"])
def test_multi_plug_devices_need_a_plug_to_act_on_one(action: str) -> None:
    expected = ["You have to enter plug number or machine identification"]
    assert problems(MULTI, from_stdin(f"action={action}\nip=h\n", MULTI)) == expected
    assert problems(MULTI, from_stdin(f"action={action}\nip=h\nnodename=n1\n", MULTI)) == []


@pytest.mark.parametrize("action", ["list", "list-status", "monitor", "validate-all"])
def test_other_actions_need_no_plug(action: str) -> None:
    assert problems(MULTI, from_stdin(f"action={action}\nip=h\n", MULTI)) == []


def test_single_plug_devices_need_no_plug() -> None:
    assert problems(SINGLE, from_stdin("action=off\nip=h\nlogin=a\n")) == []


# --- the device's address ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "port", "expected"),
    [
        ("10.0.0.5", 443, ("10.0.0.5", 443)),
        (" bmc.example ", 623, ("bmc.example", 623)),
        ("bmc.example:8443", 443, ("bmc.example", 8443)),
        ("[fe80::1]:8443", 443, ("fe80::1", 8443)),
        ("[fe80::1]", 22, ("fe80::1", 22)),
        ("fe80::1", 623, ("fe80::1", 623)),
        ("10.0.0.5", None, ("10.0.0.5", None)),
    ],
)
def test_the_address_is_read_alike_for_every_agent(ip: str, port: int | None, expected: tuple[str, int]) -> None:
    assert address.split(ip, port) == expected


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("bmc:abc", "'abc' after the colon is not a TCP port number"),
        ("bmc:70000", "port 70000 is not a TCP port"),
        ("[fe80::1]:0", "port 0 is not a TCP port"),
        ("[fe80::1]x", "write an IPv6 address as [address]"),
        ("[]", "give the device's address"),
        (":623", "give the device's address"),
    ],
)
def test_a_bad_address_is_a_problem_before_any_device_is_contacted(ip: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        address.split(ip, 623)
    found = problems(SINGLE, from_stdin(f"action=off\nip={ip}\nlogin=a\n"))
    assert len(found) == 1 and reason in found[0]


def test_addresses_are_written_with_brackets_for_ipv6() -> None:
    assert address.join("10.0.0.5", 623) == "10.0.0.5:623"
    assert address.join("fe80::1", 443) == "[fe80::1]:443"


# --- password_script ------------------------------------------------------------------


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pw.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_password_script_first_line_is_the_password(tmp_path: Path) -> None:
    path = script(tmp_path, 'printf "%s\\n" "$1 with spaces" second-line\n')
    assert opts.run_password_script(f"{path} 'pass word'") == "pass word with spaces"


def test_password_script_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = script(tmp_path, 'printf "%s\\n" "$@"\n')
    command = f"{path} '$HOME;touch {marker}' ; touch {marker}"
    assert opts.run_password_script(command) == f"$HOME;touch {marker}"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("echo hunter2; exit 3\n", "failed with exit status 3"),
        ("exit 0\n", "printed no password"),
        ("echo; echo hunter2\n", "printed no password"),
        ("kill -9 $$\n", "was killed by signal 9"),
    ],
)
def test_password_script_failures(tmp_path: Path, body: str, expected: str) -> None:
    path = script(tmp_path, body)
    line = failure(opts.run_password_script, str(path))
    assert line == f"Failed: password_script {str(path)!r} {expected}"
    assert "hunter2" not in line


def test_password_script_timeout_kills_it_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    path = script(tmp_path, f"sleep 30 & echo $! > {pidfile}; wait\n")
    line = failure(opts.run_password_script, str(path), 0.5)
    assert line == f"Failed: password_script {str(path)!r} did not finish within 0.5 s"
    child = int(pidfile.read_text())
    # SIGKILL is delivered asynchronously and the orphan is reaped by init: give
    # it a generous bound (never a timing assertion), then it must be dead.
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running, not a zombie (Z) or dead (X) waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))
    return state not in ("Z", "X")


def test_password_script_that_cannot_run(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert failure(opts.run_password_script, str(missing)) == (
        f"Failed: password_script: cannot run {str(missing)!r}: No such file or directory"
    )
    assert failure(opts.run_password_script, "'unbalanced") == (
        "Failed: password_script is not a valid command line: No closing quotation"
    )
    assert failure(opts.run_password_script, "  ") == "Failed: password_script is empty"


def test_check_password_script_does_not_run_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = script(tmp_path, f"touch {marker}; echo pw\n")
    assert opts.check_password_script(f"{path} --arg") is None
    assert opts.check_password_script("true") is None  # found on PATH
    assert not marker.exists()
    path.chmod(0o644)
    assert opts.check_password_script(str(path)) == f"password_script: {str(path)!r} is not an executable file"
    assert opts.check_password_script("no-such-program-here") is not None
