"""Fence actions end to end against a fake device: exit codes, verification,
reboot semantics, delay, password_script, redaction, bad input.

The device is a fake declared here (this is the domain layer); the clock is
a fake too, so timeouts of many seconds take no time.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

from highlander.fencing import run
from highlander.fencing.driver import OFF, ON, DeviceFailure, LoginDenied, PowerDriver, Unreachable
from highlander.fencing.run import main
from highlander.fencing.spec import COMMON, FenceAgent

PASSWORD = "hunter2 S3cret/@"


# --- the fakes ---------------------------------------------------------------------


class Clock:
    """time.monotonic/sleep for run.py: sleeping advances the clock at once."""

    def __init__(self, events: list[tuple[object, ...]]) -> None:
        self.now = 1000.0
        self.events = events

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", round(seconds, 3)))
        self.now += seconds

    def strftime(self, fmt: str) -> str:
        import time

        return time.strftime(fmt)


class Device:
    """The machine behind the fake BMC, and how the BMC misbehaves."""

    def __init__(self, state: str = ON, plugs: Mapping[str, str] | None = None) -> None:
        # A single-plug device's one plug is None (the plug argument the driver gets).
        self.states: dict[str | None, str] = dict.fromkeys(plugs or [None], state)
        self.plugs = dict(plugs or {})
        self.unreachable = False
        self.deny_login = False
        self.obeys = {ON: True, OFF: True}
        self.ignore_requests = 0  # the first N set_power requests are lost
        self.lag = 0  # status polls that still show the old state after a change
        self.status_errors: list[Exception] = []
        self.fail_set: Exception | None = None
        self.fail_reset: Exception | None = None
        self.plugs_fail = False
        self.pending: dict[str | None, tuple[str, int]] = {}

    def key(self, plug: str | None) -> str | None:
        """A single-plug device has one plug, whatever the driver is told."""
        return plug if self.plugs else None

    def read(self, plug: str | None) -> str:
        plug = self.key(plug)
        if plug in self.pending:
            state, polls = self.pending[plug]
            if polls <= 0:
                self.states[plug] = state
                del self.pending[plug]
            else:
                self.pending[plug] = (state, polls - 1)
        return self.states[plug]

    def change(self, plug: str | None, state: str) -> None:
        plug = self.key(plug)
        if self.ignore_requests:
            self.ignore_requests -= 1
            return
        if self.obeys[state]:
            self.pending[plug] = (state, self.lag)


class FakeDriver(PowerDriver):
    def __init__(self, device: Device, values: Mapping[str, object], events: list[tuple[object, ...]]) -> None:
        self.device = device
        self.values = values
        self.events = events
        self.events.append(("driver",))

    def connect(self) -> None:
        self.events.append(("connect",))
        if self.device.unreachable:
            raise Unreachable(f"no answer from {self.values['ip']}:623 within 5 s")
        if self.device.deny_login:
            raise LoginDenied("the BMC refused user 'admin'")

    def power_status(self, plug: str | None) -> str:
        self.events.append(("status", plug))
        if self.device.status_errors:
            raise self.device.status_errors.pop(0)
        return self.device.read(plug)

    def set_power(self, plug: str | None, state: str) -> None:
        self.events.append(("set", plug, state))
        if self.device.fail_set is not None:
            raise self.device.fail_set
        self.device.change(plug, state)

    def reset(self, plug: str | None) -> None:
        self.events.append(("reset", plug))
        if self.device.fail_reset is not None:
            raise self.device.fail_reset
        self.device.states[self.device.key(plug)] = ON

    def plugs(self) -> Mapping[str, str]:
        self.events.append(("plugs",))
        if self.device.plugs_fail:
            raise DeviceFailure("outlet table: timeout")
        return self.device.plugs

    def close(self) -> None:
        self.events.append(("close",))


class Bench:
    """One agent wired to one fake device, and what happened."""

    def __init__(self, device: Device, multi_plug: bool = False, driver: type[FakeDriver] = FakeDriver) -> None:
        self.device = device
        self.events: list[tuple[object, ...]] = []
        self.built: list[Mapping[str, object]] = []

        def factory(values: Mapping[str, object]) -> FakeDriver:
            self.built.append(dict(values))
            return driver(device, values, self.events)

        self.agent = FenceAgent(
            "fence_fake_pdu" if multi_plug else "fence_fake",
            "Fake agent",
            "A fence agent for a fake device.",
            vendor_url="",
            options=COMMON.values(),
            driver=factory,  # type: ignore[arg-type]
            multi_plug=multi_plug,
        )

    def kinds(self) -> list[object]:
        return [event[0] for event in self.events]

    def requests(self) -> list[tuple[object, ...]]:
        return [e for e in self.events if e[0] in ("set", "reset")]


class Result(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock([])
    monkeypatch.setattr(run, "time", fake)
    return fake


@pytest.fixture
def bench(clock: Clock) -> Bench:
    b = Bench(Device())
    clock.events = b.events
    return b


def stdin_text(action: str, extra: str = "") -> str:
    return f"action={action}\nip=10.0.0.9\nusername=admin\npassword={PASSWORD}\n{extra}"


def invoke(bench: Bench, capsys: pytest.CaptureFixture[str], text: str = "", argv: list[str] | None = None) -> Result:
    code = main(bench.agent, argv or [], io.StringIO(text))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def one_failure_line(result: Result) -> str:
    assert result.code == 1
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("Failed: ")
    assert "Traceback" not in result.err
    return lines[0]


# --- status and monitor ------------------------------------------------------------------


def test_status_on(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(bench, capsys, stdin_text("status"))
    assert result == Result(0, "Status: ON\n", "")
    assert bench.kinds() == ["driver", "connect", "status", "close"]


def test_status_off_exits_2(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.states[None] = OFF
    assert invoke(bench, capsys, stdin_text("status")) == Result(2, "Status: OFF\n", "")


def test_status_unreachable_exits_1_with_the_drivers_reason(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.unreachable = True
    line = one_failure_line(invoke(bench, capsys, stdin_text("status")))
    assert line == "Failed: Unable to connect/login to fencing device: no answer from 10.0.0.9:623 within 5 s"
    assert bench.kinds() == ["driver", "connect", "close"]


def test_login_denied(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.deny_login = True
    line = one_failure_line(invoke(bench, capsys, stdin_text("off")))
    assert line == "Failed: Unable to connect/login to fencing device: the BMC refused user 'admin'"
    assert bench.requests() == []


def test_status_read_failure(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.status_errors = [DeviceFailure("chassis status: completion code 0xc1")]
    line = one_failure_line(invoke(bench, capsys, stdin_text("status")))
    assert line == "Failed: Unable to obtain correct plug status: chassis status: completion code 0xc1"


def test_a_status_that_is_neither_on_nor_off_is_a_failure(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.states[None] = "standby"
    line = one_failure_line(invoke(bench, capsys, stdin_text("status")))
    assert line == "Failed: Unable to obtain correct plug status: the device answered 'standby'"


@pytest.mark.parametrize("state", [ON, OFF])
def test_monitor_single_plug_is_healthy_when_the_device_answers(
    bench: Bench, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    """As fence_ipmilan: 0 for an off plug too (the device of a fenced node is fine)."""
    bench.device.states[None] = state
    assert invoke(bench, capsys, stdin_text("monitor")) == Result(0, "", "")
    assert bench.kinds() == ["driver", "connect", "status", "close"]


def test_monitor_unreachable(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.unreachable = True
    one_failure_line(invoke(bench, capsys, stdin_text("monitor")))


def test_monitor_multi_plug_lists(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    b = Bench(Device(plugs={"1": "node-a", "2": "node-b"}), multi_plug=True)
    assert invoke(b, capsys, stdin_text("monitor")) == Result(0, "", "")
    assert b.kinds() == ["driver", "connect", "plugs", "close"]
    b.device.plugs_fail = True
    line = one_failure_line(invoke(b, capsys, stdin_text("monitor")))
    assert line == "Failed: Unable to list plugs: outlet table: timeout"


# --- off and on: verified --------------------------------------------------------------------


def test_off_is_verified_by_polling(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.lag = 3
    result = invoke(bench, capsys, stdin_text("off"))
    assert result == Result(0, "Success: Powered OFF\n", "")
    assert bench.events == [
        ("driver",),
        ("connect",),
        ("status", None),
        ("set", None, OFF),
        ("status", None),
        ("sleep", 0.1),
        ("status", None),
        ("sleep", 0.1),
        ("status", None),
        ("sleep", 0.1),
        ("status", None),
        ("close",),
    ]


def test_off_when_already_off(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.states[None] = OFF
    assert invoke(bench, capsys, stdin_text("off")) == Result(0, "Success: Already OFF\n", "")
    assert bench.requests() == []


def test_off_that_never_happens_times_out(bench: Bench, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.obeys[OFF] = False
    started = clock.now
    line = one_failure_line(invoke(bench, capsys, stdin_text("off", "power_timeout=3\n")))
    assert line == "Failed: Timed out waiting to power OFF"
    assert clock.now - started == pytest.approx(3.0, abs=0.11)
    polls = [e for e in bench.events if e[0] == "status"]
    assert 30 <= len(polls) <= 32  # every 0.1 s
    assert bench.requests() == [("set", None, OFF)]  # off is asked for once
    assert bench.kinds()[-1] == "close"


def test_power_wait_is_an_extra_wait_after_the_request(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    invoke(bench, capsys, stdin_text("off", "power_wait=2\n"))
    assert bench.events[3:6] == [("set", None, OFF), ("sleep", 2), ("status", None)]


def test_status_read_errors_while_polling_are_retried_until_the_timeout(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    bench.device.lag = 1

    class Flaky(FakeDriver):
        polls = 0

        def power_status(self, plug: str | None) -> str:
            Flaky.polls += 1
            if Flaky.polls in (2, 3):  # the BMC is busy right after the change
                self.events.append(("status", plug))
                raise DeviceFailure("busy")
            return super().power_status(plug)

    flaky = Bench(bench.device, driver=Flaky)
    result = invoke(flaky, capsys, stdin_text("off"))
    assert result.code == 0 and result.out == "Success: Powered OFF\n"


def test_a_timeout_reports_the_last_read_error(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(FakeDriver):
        first = True

        def power_status(self, plug: str | None) -> str:
            if Broken.first:
                Broken.first = False
                return ON
            raise Unreachable("no answer within 1 s")

    broken = Bench(bench.device, driver=Broken)
    line = one_failure_line(invoke(broken, capsys, stdin_text("off", "power_timeout=1\n")))
    assert line == "Failed: Timed out waiting to power OFF (last status read failed: no answer within 1 s)"


def test_a_refused_request_fails_the_off(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.fail_set = DeviceFailure("chassis control: insufficient privilege")
    line = one_failure_line(invoke(bench, capsys, stdin_text("off")))
    assert line == "Failed: Unable to power OFF: chassis control: insufficient privilege"


def test_on_is_verified(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.states[None] = OFF
    assert invoke(bench, capsys, stdin_text("on")) == Result(0, "Success: Powered ON\n", "")
    assert bench.requests() == [("set", None, ON)]


def test_on_when_already_on(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(bench, capsys, stdin_text("on")) == Result(0, "Success: Already ON\n", "")


def test_on_retries_retry_on_times(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.states[None] = OFF
    bench.device.ignore_requests = 1  # the first request is lost
    result = invoke(bench, capsys, stdin_text("on", "power_timeout=1\n"))  # retry_on defaults to 1
    assert result == Result(0, "Success: Powered ON\n", "")
    assert bench.requests() == [("set", None, ON), ("set", None, ON)]


def test_on_gives_up_after_its_retries(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.states[None] = OFF
    bench.device.obeys[ON] = False
    line = one_failure_line(invoke(bench, capsys, stdin_text("on", "power_timeout=1\nretry_on=2\n")))
    assert line == "Failed: Timed out waiting to power ON"
    assert bench.requests() == [("set", None, ON)] * 3


def test_a_power_timeout_of_zero_waits_without_limit(
    bench: Bench, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    """As fence-agents (its disable_timeout): Pacemaker's own timeout ends the agent."""
    bench.device.lag = 500  # 50 s at 0.1 s per poll
    started = clock.now
    assert invoke(bench, capsys, stdin_text("off", "power_timeout=0\n")).code == 0
    assert clock.now - started == pytest.approx(50.0, abs=0.2)


# --- reboot ------------------------------------------------------------------------------------


def test_reboot_onoff_is_off_verified_then_on(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(bench, capsys, stdin_text("reboot"))
    assert result == Result(0, "Success: Rebooted\n", "")
    assert bench.requests() == [("set", None, OFF), ("set", None, ON)]
    assert bench.device.states[None] == ON


def test_reboot_is_the_default_action(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    text = f"ip=10.0.0.9\npassword={PASSWORD}\n"
    assert invoke(bench, capsys, text) == Result(0, "Success: Rebooted\n", "")


def test_reboot_succeeds_when_only_the_on_part_fails(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.obeys[ON] = False
    result = invoke(bench, capsys, stdin_text("reboot", "power_timeout=1\nretry_on=0\n"))
    assert result.code == 0
    assert result.out == "Success: Rebooted (the node is fenced; power ON failed)\n"
    assert result.err == (
        "Warning: the node was powered OFF (verified), but powering it on again failed: Timed out waiting to power ON\n"
    )
    assert bench.device.states[None] == OFF


def test_reboot_succeeds_when_the_on_part_raises(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    class Crashing(FakeDriver):
        def set_power(self, plug: str | None, state: str) -> None:
            if state == ON:
                raise RuntimeError("driver bug")
            super().set_power(plug, state)

    crashing = Bench(bench.device, driver=Crashing)
    result = invoke(crashing, capsys, stdin_text("reboot"))
    assert result.code == 0
    assert "powering it on again failed: RuntimeError: driver bug" in result.err
    assert len(result.err.splitlines()) == 1


def test_reboot_fails_when_the_off_part_fails(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.obeys[OFF] = False
    line = one_failure_line(invoke(bench, capsys, stdin_text("reboot", "power_timeout=1\n")))
    assert line == "Failed: Timed out waiting to power OFF"
    assert bench.requests() == [("set", None, OFF)]  # never on after an unverified off


def test_reboot_of_a_node_already_off_only_powers_it_on(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.states[None] = OFF
    assert invoke(bench, capsys, stdin_text("reboot")) == Result(0, "Success: Rebooted\n", "")
    assert bench.requests() == [("set", None, ON)]


def test_reboot_cycle_resets_then_waits_for_on(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(bench, capsys, stdin_text("reboot", "method=cycle\n"))
    assert result == Result(0, "Success: Rebooted\n", "")
    assert bench.requests() == [("reset", None)]
    assert bench.kinds() == ["driver", "connect", "status", "reset", "status", "close"]


def test_reboot_cycle_fails_when_the_reset_is_refused(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.fail_reset = DeviceFailure("power cycle refused")
    line = one_failure_line(invoke(bench, capsys, stdin_text("reboot", "method=cycle\nretry_on=1\n")))
    assert line == "Failed: Unable to reset (power cycle): power cycle refused"
    assert bench.requests() == [("reset", None)] * 2


def test_reboot_cycle_warns_when_the_node_is_not_seen_on_again(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    class Dark(FakeDriver):
        def reset(self, plug: str | None) -> None:
            self.events.append(("reset", plug))
            self.device.states[self.device.key(plug)] = OFF

    dark = Bench(bench.device, driver=Dark)
    result = invoke(dark, capsys, stdin_text("reboot", "method=cycle\npower_timeout=1\n"))
    assert result.code == 0
    assert result.err == "Warning: the reset was accepted, but the node was not seen ON again\n"


# --- delay -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["off", "reboot"])
def test_delay_comes_before_contacting_the_device(
    bench: Bench, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    assert invoke(bench, capsys, stdin_text(action, "delay=15\n")).code == 0
    assert bench.events[:2] == [("sleep", 15), ("driver",)]


@pytest.mark.parametrize("action", ["on", "status", "monitor"])
def test_no_delay_for_other_actions(bench: Bench, capsys: pytest.CaptureFixture[str], action: str) -> None:
    bench.device.states[None] = OFF
    invoke(bench, capsys, stdin_text(action, "delay=15\n"))
    assert ("sleep", 15) not in bench.events


# --- list ---------------------------------------------------------------------------------------


def test_list_and_list_status_on_a_multi_plug_device(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    b = Bench(Device(plugs={"1": "node-a", "2": "node-b", "3": "spare"}), multi_plug=True)
    b.device.states["2"] = OFF
    assert invoke(b, capsys, stdin_text("list")) == Result(0, "1,node-a\n2,node-b\n3,spare\n", "")
    b.device.status_errors = [DeviceFailure("x")]  # the first plug's status cannot be read
    result = invoke(b, capsys, stdin_text("list-status"))
    assert result == Result(0, "1,node-a,UNKNOWN\n2,node-b,OFF\n3,spare,ON\n", "")


def test_list_on_a_single_plug_device_is_a_notice_as_in_fence_ipmilan(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    for action in ("list", "list-status"):
        result = invoke(bench, capsys, stdin_text(action))
        assert result == Result(0, "NOTICE: list is not available on a single-plug device\n", "")
    assert bench.events == []


def test_multi_plug_status_acts_on_the_nodename(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    b = Bench(Device(plugs={"node-a": "", "node-b": ""}), multi_plug=True)
    b.device.states["node-b"] = OFF
    assert invoke(b, capsys, stdin_text("status", "nodename=node-b\n")).code == 2
    assert ("status", "node-b") in b.events


def test_single_plug_drivers_get_the_plug_pacemaker_sends(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(bench, capsys, stdin_text("status", "port=node-b\nnodename=node-b\n"))
    assert result == Result(0, "Status: ON\n", "")
    assert bench.built[0]["plug"] == "node-b"
    assert ("status", "node-b") in bench.events


# --- validate-all, metadata, manpage, help ---------------------------------------------------------------


def test_validate_all_never_contacts_the_device(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(bench, capsys, stdin_text("validate-all")) == Result(0, "", "")
    assert bench.events == [] and bench.built == []


def test_validate_all_reports_every_problem_on_one_line(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(bench, capsys, "action=validate-all\npassword_script=/nonexistent/pw\n")
    assert one_failure_line(result) == (
        "Failed: You have to enter fence address; password_script: '/nonexistent/pw' is not an executable file"
    )
    assert bench.built == []


def test_validate_all_does_not_run_the_password_script(
    bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    script = executable(tmp_path / "pw", f"#!/bin/sh\ntouch {marker}\necho pw\n")
    assert invoke(bench, capsys, f"action=validate-all\nip=h\npassword_script={script}\n").code == 0
    assert not marker.exists()


def test_metadata_manpage_and_help(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(bench, capsys, "action=metadata\n")
    assert result.code == 0 and result.out.startswith('<?xml version="1.0" ?>\n<resource-agent name="fence_fake"')
    result = invoke(bench, capsys, argv=["-o", "manpage"])
    assert result.code == 0 and result.out.startswith(".TH FENCE_FAKE 8")
    result = invoke(bench, capsys, argv=["--help"])
    assert result.code == 0 and result.out.startswith("Usage: fence_fake [OPTION]...")
    assert bench.events == []


def test_the_command_line_works_like_stdin(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(bench, capsys, argv=["-o", "status", "-a", "10.0.0.9", "-l", "admin", "-p", PASSWORD])
    assert result == Result(0, "Status: ON\n", "")
    assert bench.built[0]["ip"] == "10.0.0.9" and bench.built[0]["password"] == PASSWORD


def test_the_driver_gets_the_address_split_into_host_and_port(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(bench, capsys, stdin_text("status", "ipport=623\n")).code == 0
    assert (bench.built[-1]["ip"], bench.built[-1]["ipport"]) == ("10.0.0.9", 623)
    text = stdin_text("status", "ipport=623\n").replace("ip=10.0.0.9", "ip=[fe80::9]:6230")
    assert invoke(bench, capsys, text).code == 0
    assert (bench.built[-1]["ip"], bench.built[-1]["ipport"]) == ("fe80::9", 6230)
    result = invoke(bench, capsys, text.replace("6230", "99999"))
    assert "port 99999 is not a TCP port" in one_failure_line(result)
    assert len(bench.built) == 2  # the bad address stopped the agent before its driver existed


# --- bad input: one line, nothing sent ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("garbage\n", "Failed: stdin line 1 is not name=value"),
        ("\x00\x01\x02", "Failed: stdin contains a NUL byte"),
        (stdin_text("explode"), "Failed: Unrecognised action 'explode'"),
        ("action=off\nusername=admin\n", "Failed: You have to enter fence address"),
        (stdin_text("off", "ipport=abc\n"), "Failed: option ipport='abc' is not a valid integer"),
        (
            stdin_text("off", "power_timeout=soon\n"),
            "Failed: option power_timeout='soon' is not a valid time in seconds",
        ),
        (stdin_text("off", "method=yank\n"), "Failed: option method='yank' is not one of: onoff, cycle"),
    ],
)
def test_bad_input_fails_before_any_driver_exists(
    bench: Bench, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    assert one_failure_line(invoke(bench, capsys, text)) == expected
    assert bench.built == [] and bench.events == []


def test_binary_garbage_on_stdin(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(bench.agent, [], io.BytesIO(b"\xff\xfe\x00garbage"))
    assert code == 1
    assert capsys.readouterr().err == "Failed: stdin is not UTF-8 text\n"
    assert bench.built == []


def test_bad_command_line(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_failure_line(invoke(bench, capsys, argv=["-o", "off", "--frobnicate"]))
    assert line == "Failed: command line: option --frobnicate not recognized"
    assert bench.built == []


def test_multi_plug_off_without_a_plug(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    b = Bench(Device(plugs={"1": "a"}), multi_plug=True)
    line = one_failure_line(invoke(b, capsys, stdin_text("off")))
    assert line == "Failed: You have to enter plug number or machine identification"
    assert b.built == []


def test_an_unexpected_driver_error_is_one_line_not_a_traceback(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    class Buggy(FakeDriver):
        def power_status(self, plug: str | None) -> str:
            raise KeyError("chassis")

    buggy = Bench(bench.device, driver=Buggy)
    line = one_failure_line(invoke(buggy, capsys, stdin_text("status")))
    assert line == "Failed: internal error: KeyError: 'chassis'"
    assert buggy.kinds()[-1] == "close"


def test_a_close_that_raises_does_not_change_the_outcome(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    class BadClose(FakeDriver):
        def close(self) -> None:
            super().close()
            raise OSError("socket already gone")

    for unreachable, expected in ((False, Result(0, "Status: ON\n", "")), (True, None)):
        bench.device.unreachable = unreachable
        bad = Bench(bench.device, driver=BadClose)
        result = invoke(bad, capsys, stdin_text("status"))
        if expected is None:  # the connect failed: its error is what the operator reads
            assert "no answer from 10.0.0.9" in one_failure_line(result)
        else:
            assert result == expected
        assert bad.kinds()[-1] == "close"


def test_the_driver_as_a_context_manager_closes_after_a_failed_connect(bench: Bench) -> None:
    bench.device.deny_login = True
    events: list[tuple[object, ...]] = []
    with pytest.raises(LoginDenied), FakeDriver(bench.device, {}, events):
        pytest.fail("the body must not run without a connection")
    assert [e[0] for e in events] == ["driver", "connect", "close"]
    bench.device.deny_login = False
    with FakeDriver(bench.device, {}, events) as driver:
        assert driver.power_status(None) == ON
    assert [e[0] for e in events][-3:] == ["connect", "status", "close"]


def test_a_driver_that_cannot_be_built(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(values: Mapping[str, object]) -> FakeDriver:
        raise DeviceFailure("hexadecimal_kg is not hexadecimal")

    agent = FenceAgent("fence_x", "X", "X.", vendor_url="", options=COMMON.values(), driver=refuse)  # type: ignore[arg-type]
    code = main(agent, [], io.StringIO(stdin_text("status")))
    assert code == 1
    assert capsys.readouterr().err == "Failed: hexadecimal_kg is not hexadecimal\n"


def test_a_multi_line_driver_message_is_folded_into_one_line(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    bench.device.status_errors = [DeviceFailure("first line\nsecond line\n")]
    line = one_failure_line(invoke(bench, capsys, stdin_text("status")))
    assert line == "Failed: Unable to obtain correct plug status: first line second line"


# --- password_script ---------------------------------------------------------------------------------------


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_password_script_gives_the_driver_its_password(
    bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    script = executable(tmp_path / "pw", f"#!/bin/sh\necho '{PASSWORD}'\n")
    text = f"action=status\nip=h\nusername=admin\npassword=stale\npassword_script={script}\n"
    assert invoke(bench, capsys, text) == Result(0, "Status: ON\n", "")
    assert bench.built[0]["password"] == PASSWORD


def test_a_failing_password_script_stops_before_the_driver(
    bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    script = executable(tmp_path / "pw", f"#!/bin/sh\necho '{PASSWORD}'\nexit 4\n")
    result = invoke(bench, capsys, f"action=off\nip=h\npassword_script={script}\n")
    assert one_failure_line(result) == f"Failed: password_script {str(script)!r} failed with exit status 4"
    assert PASSWORD not in result.err and PASSWORD not in result.out
    assert bench.built == []


# --- redaction, verbose, debug file ----------------------------------------------------------------------------


class Leaky(FakeDriver):
    """A driver that mentions its password everywhere it can."""

    def connect(self) -> None:
        from urllib.parse import quote

        password = str(self.values["password"])
        logging.getLogger("leaky").debug("login with password %s", password)
        logging.getLogger("leaky").warning("retrying %r", password)
        logging.getLogger("leaky").info("url https://admin:%s@bmc/", quote(password, safe=""))
        import base64

        basic = base64.b64encode(f"admin:{password}".encode()).decode()
        logging.getLogger("leaky").debug("Authorization: Basic %s", basic)
        print(f"stray print {password}")
        sys.stderr.write(f"stray stderr {password[:4]}")  # a secret written in two pieces
        sys.stderr.write(f"{password[4:]} end\n")
        super().connect()

    def power_status(self, plug: str | None) -> str:
        raise DeviceFailure(f"status refused for password {self.values['password']}")


@pytest.mark.parametrize("verbose", [False, True])
def test_a_leaky_driver_cannot_leak_the_password(
    clock: Clock, capsys: pytest.CaptureFixture[str], tmp_path: Path, verbose: bool
) -> None:
    leaky = Bench(Device(), driver=Leaky)
    debug = tmp_path / "debug.log"
    extra = f"debug_file={debug}\n" + ("verbose=1\n" if verbose else "")
    result = invoke(leaky, capsys, stdin_text("status", extra))
    assert result.code == 1
    everything = result.out + result.err + debug.read_text()
    assert PASSWORD not in everything
    assert "hunter2%20S3cret" not in everything
    assert "aHVudGVy" not in everything  # base64 of the credentials
    assert "******" in debug.read_text()
    assert "Failed: Unable to obtain correct plug status: status refused for password ******" in result.err
    assert "stray print ******" in result.out
    if verbose:
        assert "leaky: login with password ******" in result.err
    else:
        # Only the result line (and what the driver wrote itself) on stderr.
        assert [line for line in result.err.splitlines() if line.startswith(("DEBUG", "INFO", "WARNING"))] == []


def test_a_password_from_the_script_is_redacted_too(
    clock: Clock, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    leaky = Bench(Device(), driver=Leaky)
    script = executable(tmp_path / "pw", f"#!/bin/sh\necho '{PASSWORD}'\n")
    result = invoke(leaky, capsys, f"action=status\nip=h\nverbose=1\npassword_script={script}\n")
    assert result.code == 1
    assert PASSWORD not in result.out + result.err


def test_verbose_logs_the_exchange_to_stderr(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(bench, capsys, stdin_text("off", "verbose=on\nfrobnicate=x\n"))
    assert result.code == 0 and result.out == "Success: Powered OFF\n"
    assert "INFO: connecting to 10.0.0.9 for off" in result.err
    assert "INFO: power OFF requested (attempt 1 of 1)" in result.err
    assert "DEBUG: poll 1: OFF" in result.err
    assert "DEBUG: ignoring unknown option 'frobnicate'" in result.err
    assert PASSWORD not in result.err


def test_the_debug_file_is_created_0600_and_appended(
    bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    debug = tmp_path / "fence.log"
    previous = os.umask(0o022)
    try:
        invoke(bench, capsys, stdin_text("status", f"debug_file={debug}\n"))
        first = debug.read_text()
        invoke(bench, capsys, stdin_text("status", f"debug={debug}\n"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(debug.stat().st_mode) == 0o600
    second = debug.read_text()
    assert second.startswith(first) and len(second) > len(first)
    assert "fence_fake[" in first and "DEBUG: power status: ON" in first
    assert capsys.readouterr().err == ""  # not verbose: nothing on stderr


def test_a_debug_file_that_cannot_be_created(bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "fence.log"
    line = one_failure_line(invoke(bench, capsys, stdin_text("off", f"debug_file={target}\n")))
    assert line == f"Failed: Unable to create file {target}: No such file or directory"
    assert bench.built == []


def test_a_debug_file_symlink_is_refused(bench: Bench, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    link = tmp_path / "fence.log"
    link.symlink_to(victim)
    result = invoke(bench, capsys, stdin_text("status", f"debug_file={link}\n"))
    assert result.code == 1 and victim.read_text() == "keep me\n"


def test_streams_are_restored(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    before = (sys.stdout, sys.stderr)
    invoke(bench, capsys, stdin_text("status"))
    invoke(bench, capsys, "garbage\n")
    assert (sys.stdout, sys.stderr) == before
    root = logging.getLogger()
    assert not any(type(h).__name__ == "_Handler" for h in root.handlers)


def test_redactor_forms() -> None:
    redact = run.Redactor()
    redact.add("pa ss/wörd")
    redact.add_credentials("admin", "pa ss/wörd")
    assert redact("x pa ss/wörd y") == "x ****** y"
    assert redact("pa%20ss%2Fw%C3%B6rd") == "******"
    assert redact("pa+ss%2Fw%C3%B6rd") == "******"
    import base64

    assert redact(base64.b64encode("admin:pa ss/wörd".encode()).decode()) == "******"
    redact.add("")
    assert redact("nothing here") == "nothing here"


@pytest.fixture(autouse=True)
def _no_handlers_left() -> Iterator[None]:
    yield
    assert not any(type(h).__name__ == "_Handler" for h in logging.getLogger().handlers)


# --- metrics_dir: the outcome counted for node_exporter -----------------------------------


def fence_runs(directory: Path) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = (directory / "highlander_fence.prom").read_text()
    return {
        (s.labels["action"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "highlander_fence_runs_total"
    }


def test_metrics_dir_counts_each_device_action_by_its_result(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = f"metrics_dir={tmp_path}\n"
    bench.device.states[None] = OFF
    assert invoke(bench, capsys, stdin_text("status", extra)).code == 2  # an answer: success
    bench.device.states[None] = ON
    bench.device.obeys[OFF] = False
    assert invoke(bench, capsys, stdin_text("off", extra + "power_timeout=1\n")).code == 1
    assert invoke(bench, capsys, stdin_text("metadata", extra)).code == 0  # describes, touches nothing
    assert fence_runs(tmp_path) == {("status", "success"): 1, ("off", "failure"): 1}
    assert PASSWORD not in (tmp_path / "highlander_fence.prom").read_text()


def test_a_metrics_failure_is_a_warning_and_the_fence_stands(
    bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from highlander.adapters import metrics

    def broken(*args: object) -> None:
        raise ValueError("no")

    monkeypatch.setattr(metrics, "record_fence", broken)
    result = invoke(bench, capsys, stdin_text("status", f"metrics_dir={tmp_path}\n"))
    assert result.code == 0 and result.out == "Status: ON\n"
    assert result.err == f"Warning: the outcome was not written to metrics_dir {tmp_path}: ValueError: no\n"
