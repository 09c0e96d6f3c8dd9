"""Running one fence action, as Pacemaker (or an operator) calls an agent.

:func:`main` is the whole contract: read the options, refuse bad input
before any device is contacted, act, verify, and map the outcome to the
exit codes of the fence-agents API (0 success, 1 failure, 2 status "off").
Every failure ends with exactly one line on standard error; no traceback
and no secret reaches any output. The guard is a redaction layer in front
of standard output, standard error, the debug file and Python logging, so
a driver that logs its password by mistake still does not leak it.

The actions follow fence-agents where the cluster relies on it (verified
off, reboot = verified off then on with the exit status of the off part,
delay before off and reboot only, ``Status: ON``/``Status: OFF``, monitor
succeeding for a reachable device whatever its power state) but poll the
device every 0.1 s instead of every second, and never wait without reason
(``power_wait`` defaults to 0).
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from highlander.fencing import address
from highlander.fencing.driver import OFF, ON, FenceError, LoginDenied
from highlander.fencing.log import (
    Failed,
    Log,
    RedactingStream,
    Redactor,
    bridge_logging,
    one_line,
)
from highlander.fencing.options import (
    HELP,
    INFO_ACTIONS,
    OptionError,
    check_password_script,
    parse,
    problems,
    run_password_script,
)
from highlander.fencing.spec import AGENT_ACTIONS, EXIT_FAILED, EXIT_OFF, EXIT_OK, succeeded

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import IO

    from highlander.fencing.driver import PowerDriver
    from highlander.fencing.options import Options
    from highlander.fencing.spec import FenceAgent

POLL_INTERVAL = 0.1
# The actions that reach the device, and so have an outcome worth counting.
DEVICE_ACTIONS = tuple(a for a in AGENT_ACTIONS if a not in (*INFO_ACTIONS, "validate-all"))


class Device:
    """A connected driver and the plug it acts on, with fence-agents' rules
    for verifying a power change and the wording of its failures."""

    def __init__(self, driver: PowerDriver, plug: str | None, values: Mapping[str, object], log: Log) -> None:
        self.driver = driver
        self.plug = plug
        self.log = log
        self.power_wait = float(values.get("power_wait") or 0)  # type: ignore[arg-type]
        self.power_timeout = float(values.get("power_timeout") or 0)  # type: ignore[arg-type]
        self.retry_on = int(values.get("retry_on") or 0)  # type: ignore[call-overload]

    def status(self) -> str:
        try:
            state = self.driver.power_status(self.plug)
        except FenceError as exc:
            raise Failed(f"Unable to obtain correct plug status: {exc}") from None
        if state not in (ON, OFF):
            raise Failed(f"Unable to obtain correct plug status: the device answered {state!r}")
        self.log.debug(f"power status: {state.upper()}")
        return state

    def wait_for(self, state: str) -> tuple[bool, str | None]:
        """Poll every POLL_INTERVAL until the plug is in ``state`` (True) or
        power_timeout has passed (False, with the last read error if any).
        A read that fails is retried until then: BMCs are often busy right
        after a power change. A power_timeout of 0 waits without limit, as in
        fence-agents (Pacemaker's own timeout then ends the agent)."""
        deadline = time.monotonic() + self.power_timeout
        last_error = None
        polls = 0
        while True:
            polls += 1
            try:
                seen = self.driver.power_status(self.plug)
            except LoginDenied:
                raise
            except FenceError as exc:
                last_error = str(exc)
                self.log.debug(f"poll {polls}: status read failed: {exc}")
            else:
                self.log.debug(f"poll {polls}: {str(seen).upper()}")
                if seen == state:
                    return True, None
            if self.power_timeout > 0 and time.monotonic() >= deadline:
                return False, last_error
            time.sleep(POLL_INTERVAL)

    def switch(self, state: str, attempts: int) -> None:
        """Ask for ``state`` and verify it, up to ``attempts`` times."""
        word = state.upper()
        failure = f"Timed out waiting to power {word}"
        for attempt in range(1, max(1, attempts) + 1):
            self.log.info(f"power {word} requested (attempt {attempt} of {max(1, attempts)})")
            try:
                self.driver.set_power(self.plug, state)
                if self.power_wait > 0:
                    time.sleep(self.power_wait)
                reached, last_error = self.wait_for(state)
            except FenceError as exc:
                failure = f"Unable to power {word}: {exc}"
                self.log.info(failure)
                continue
            if reached:
                return
            failure = f"Timed out waiting to power {word}"
            if last_error:
                failure += f" (last status read failed: {last_error})"
            self.log.info(failure)
        raise Failed(failure)

    def reset(self, attempts: int) -> None:
        failure = ""
        for attempt in range(1, max(1, attempts) + 1):
            self.log.info(f"reset (power cycle) requested (attempt {attempt})")
            try:
                self.driver.reset(self.plug)
                return
            except FenceError as exc:
                failure = f"Unable to reset (power cycle): {exc}"
                self.log.info(failure)
        raise Failed(failure)

    def plugs(self) -> Mapping[str, str]:
        try:
            return self.driver.plugs()
        except FenceError as exc:
            raise Failed(f"Unable to list plugs: {exc}") from None


# --- the actions --------------------------------------------------------------------


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def act_status(device: Device, agent: FenceAgent) -> int:
    state = device.status()
    _say(f"Status: {state.upper()}")
    return EXIT_OK if state == ON else EXIT_OFF


def act_monitor(device: Device, agent: FenceAgent) -> int:
    """Reachable and answering is healthy, whatever the power state: the
    device of a node fenced off must not be reported failed (fence_ipmilan's
    monitor exits 0 for an off plug too)."""
    if agent.multi_plug:
        device.plugs()
    else:
        device.status()
    return EXIT_OK


def act_off(device: Device, agent: FenceAgent) -> int:
    if device.status() == OFF:
        _say("Success: Already OFF")
        return EXIT_OK
    device.switch(OFF, 1)
    _say("Success: Powered OFF")
    return EXIT_OK


def act_on(device: Device, agent: FenceAgent) -> int:
    if device.status() == ON:
        _say("Success: Already ON")
        return EXIT_OK
    device.switch(ON, 1 + device.retry_on)
    _say("Success: Powered ON")
    return EXIT_OK


def _power_on_after_fencing(device: Device, what: str) -> int:
    """The second half of a reboot: its failure does not undo the fencing."""
    try:
        device.switch(ON, 1 + device.retry_on)
    except Exception as exc:  # noqa: BLE001 - whatever happens now, the node was fenced
        reason = exc if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}"
        device.log.report(f"Warning: {what}, but powering it on again failed: {reason}")
        _say("Success: Rebooted (the node is fenced; power ON failed)")
        return EXIT_OK
    _say("Success: Rebooted")
    return EXIT_OK


def act_reboot(device: Device, agent: FenceAgent, method: str) -> int:
    state = device.status()
    if state == OFF:
        return _power_on_after_fencing(device, "the node was already OFF")
    if method == "cycle":
        device.reset(1 + device.retry_on)
        reached, last_error = device.wait_for(ON)
        if not reached:
            detail = f" (last status read failed: {last_error})" if last_error else ""
            device.log.report(f"Warning: the reset was accepted, but the node was not seen ON again{detail}")
        _say("Success: Rebooted")
        return EXIT_OK
    device.switch(OFF, 1)
    return _power_on_after_fencing(device, "the node was powered OFF (verified)")


def act_list(device: Device, agent: FenceAgent, with_status: bool) -> int:
    for plug, alias in device.plugs().items():
        if not with_status:
            _say(f"{plug},{alias}")
            continue
        try:
            state = str(device.driver.power_status(plug)).upper()
        except FenceError as exc:
            device.log.debug(f"status of plug {plug!r}: {exc}")
            state = "UNKNOWN"
        _say(f"{plug},{alias},{state if state in ('ON', 'OFF') else 'UNKNOWN'}")
    return EXIT_OK


def dispatch(device: Device, agent: FenceAgent, action: str, values: Mapping[str, object]) -> int:
    if action == "status":
        return act_status(device, agent)
    if action == "monitor":
        return act_monitor(device, agent)
    if action == "off":
        return act_off(device, agent)
    if action == "on":
        return act_on(device, agent)
    if action == "reboot":
        return act_reboot(device, agent, str(values.get("method") or "onoff"))
    if action in ("list", "list-status"):
        return act_list(device, agent, with_status=action == "list-status")
    raise Failed(f"Unrecognised action {action!r}")


# --- one invocation -------------------------------------------------------------------


def validate_all(agent: FenceAgent, options: Options) -> int:
    """Options complete and consistent; the device is not contacted and the
    password script not run (only checked to be runnable)."""
    found = problems(agent, options)
    script = options.values.get("password_script")
    if script:
        problem = check_password_script(str(script))
        if problem:
            found.append(problem)
    if found:
        raise Failed("; ".join(found))
    return EXIT_OK


def device_values(agent: FenceAgent, options: Options, log: Log) -> dict[str, object]:
    """The options handed to the driver: the address split into host
    (``ip``) and port (``ipport``), the password resolved. The plug is
    passed on for single-plug devices too (Pacemaker sends the node's name):
    a driver may use it to choose among a BMC's systems, or ignore it."""
    values = dict(options.values)
    port = values.get("ipport")
    values["ip"], values["ipport"] = address.split(str(values["ip"]), port if isinstance(port, int) else None)
    script = values.get("password_script")
    if script:
        if values.get("password") is not None:
            log.debug("both password and password_script given: the script's password is used")
        values["password"] = run_password_script(str(script))
        log.redact.add(str(values["password"]))
        log.debug("password read from password_script")
    log.redact.add_credentials(
        None if values.get("username") is None else str(values["username"]),
        None if values.get("password") is None else str(values["password"]),
    )
    return values


def perform(agent: FenceAgent, options: Options, log: Log) -> int:
    action = options.action
    found = problems(agent, options)
    if found:
        raise Failed("; ".join(found))
    if action in ("list", "list-status") and not agent.multi_plug:
        # What fence_ipmilan does: accepted, nothing to list, success.
        _say("NOTICE: list is not available on a single-plug device")
        return EXIT_OK
    values = device_values(agent, options, log)
    delay = float(values.get("delay") or 0)  # type: ignore[arg-type]
    if action in ("off", "reboot") and delay > 0:
        log.info(f"waiting {delay:g} s (delay) before fencing")
        time.sleep(delay)
    undo_logging = bridge_logging(log)
    try:
        try:
            driver = agent.driver(values)
        except FenceError as exc:
            raise Failed(str(exc)) from None
        with ExitStack() as session:
            log.info(f"connecting to {values.get('ip')} for {action}")
            try:
                session.enter_context(driver)
            except FenceError as exc:
                raise Failed(f"Unable to connect/login to fencing device: {exc}") from None
            plug = None if values.get("plug") is None else str(values["plug"])
            return dispatch(Device(driver, plug, values, log), agent, action, values)
    finally:
        undo_logging()


def _invoke(agent: FenceAgent, options: Options, log: Log) -> int:
    if options.action == HELP:
        from highlander.fencing.manpage import usage

        _say(usage(agent).rstrip("\n"))
        return EXIT_OK
    if options.action in INFO_ACTIONS:
        if options.action == "metadata":
            from highlander.fencing.metadata import render_fence_metadata as render
        else:
            from highlander.fencing.manpage import render_fence_manpage as render
        sys.stdout.write(render(agent))
        return EXIT_OK
    log.verbose = bool(options.values.get("verbose"))
    if options.values.get("debug_file"):
        log.open_file(str(options.values["debug_file"]))
    log.debug(f"{agent.name}: action {options.action}, options from {options.source}")
    for name in options.ignored:
        log.debug(f"ignoring unknown option {name!r}")
    if options.action == "validate-all":
        return validate_all(agent, options)
    return perform(agent, options, log)


def record_outcome(agent: FenceAgent, options: Options, code: int, seconds: float, log: Log) -> None:
    """Count this run in ``metrics_dir`` when it is set and the action touched the device.

    A metrics file that cannot be written never changes the fence's
    outcome: it is one warning line.
    """
    directory = options.values.get("metrics_dir")
    if not directory or options.action not in DEVICE_ACTIONS:
        return
    from highlander.adapters.metrics import record_fence

    result = "success" if succeeded(options.action, code) else "failure"
    try:
        record_fence(Path(str(directory)), agent.name, options.action, result, seconds)
    except OSError as exc:
        log.report(f"Warning: the outcome was not written to metrics_dir {directory}: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the fence's own outcome stands
        log.report(f"Warning: the outcome was not written to metrics_dir {directory}: {type(exc).__name__}: {exc}")


def main(agent: FenceAgent, argv: Sequence[str], stdin: IO[str] | IO[bytes]) -> int:
    """Run one invocation of ``agent``; returns its exit code (0, 1 or 2).

    Standard output and error are wrapped by the redaction layer for the
    whole call, then restored.
    """
    started = time.monotonic()
    redact = Redactor()
    out = RedactingStream(sys.stdout, redact)
    err = RedactingStream(sys.stderr, redact)
    sys.stdout, sys.stderr = out, err
    log = Log(agent.name, redact)
    options: Options | None = None
    code = EXIT_FAILED
    try:
        options = parse(agent, argv, stdin)
        for secret in options.secrets:
            log.redact.add(secret)
        code = _invoke(agent, options, log)
    except OptionError as exc:
        log.report(str(exc))
    except Failed as exc:
        log.report(f"Failed: {exc}")
    except FenceError as exc:
        log.report(f"Failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        import traceback

        log.debug(one_line(traceback.format_exc()))
        log.report(f"Failed: internal error: {type(exc).__name__}: {exc}")
    finally:
        if options is not None:
            record_outcome(agent, options, code, time.monotonic() - started, log)
        log.close()
        sys.stdout = out.release()
        sys.stderr = err.release()
    return code
