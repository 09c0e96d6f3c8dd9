"""Reading a fence agent's options: ``name=value`` lines on stdin, or the command line.

The calling convention is fence-agents': Pacemaker writes the options to
stdin, one per line; an operator types ``--ip=X``/``-a X`` instead. Exactly
one source is read (stdin when there are no arguments). Both end in the
same :class:`Options`: every declared option typed, defaults filled in.

Pure except for :func:`run_password_script`, so the rules (aliases, last
value wins, which problems stop an action) are tested without a device.
An :class:`OptionError` carries the one line the operator sees; it never
quotes the value of a secret option.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from highlander.fencing import address
from highlander.fencing.spec import AGENT_ACTIONS

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import IO

    from highlander.fencing.spec import FenceAgent, Option

# Actions that only describe the agent: no other option is checked for them,
# so ``-o metadata`` works whatever else is (mis)configured.
INFO_ACTIONS = ("metadata", "manpage")
HELP = "help"  # -h/--help on the command line; not an agent action
# Actions that act on one plug of a multi-plug device, and so need it.
PLUG_ACTIONS = ("on", "off", "reboot", "status")
# The words fence-agents accepts for booleans on stdin.
TRUE_WORDS = ("1", "yes", "on", "true")
FALSE_WORDS = ("0", "no", "off", "false")
STDIN_LIMIT = 1 << 20
PASSWORD_SCRIPT_TIMEOUT = 10.0

# fence-agents' wording for a missing option, so an operator who knows its
# agents recognises ours.
MISSING = {
    "ip": "You have to enter fence address",
    "username": "You have to set login name",
    "password": "You have to enter password or password script",
    "plug": "You have to enter plug number or machine identification",
}
# An option that stands in for a missing required one.
SATISFIED_BY = {"password": "password_script"}
# Bounds of the common integer options: (lowest, highest or None).
BOUNDS = {"ipport": (1, 65535), "retry_on": (0, None)}

_INTEGER = re.compile(r"-?[0-9]+")
_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_NAME = re.compile(r"[^\s=]+")


class OptionError(ValueError):
    """Input the agent cannot act on; ``str()`` is the operator's one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Failed: {reason}")


class Options:
    """What one invocation was asked to do, typed.

    ``values`` holds every declared option (None when unset and without a
    default). ``given`` names the options set explicitly; ``ignored`` the
    unknown stdin names (never their values); ``nodename`` is the node
    Pacemaker fences, the plug when no plug/port was given; ``secrets`` the
    values of secret options, for redaction. (A plain class: dataclasses
    would import ``inspect`` on every fencing request.)
    """

    def __init__(
        self,
        action: str,
        values: dict[str, object],
        source: str,
        given: Iterable[str] = (),
        ignored: Iterable[str] = (),
        nodename: str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.action = action
        self.values = values
        self.source = source
        self.given = frozenset(given)
        self.ignored = tuple(ignored)
        self.nodename = nodename
        self.secrets = list(secrets)

    def __getitem__(self, name: str) -> object:
        return self.values[name]


# --- reading -----------------------------------------------------------------


def read_text(stdin: IO[str] | IO[bytes]) -> str:
    """All of stdin as text; garbage (binary, NUL bytes, megabytes) is refused."""
    data = stdin.read(STDIN_LIMIT + 1)
    if len(data) > STDIN_LIMIT:
        raise OptionError(f"stdin is larger than {STDIN_LIMIT} bytes")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise OptionError("stdin is not UTF-8 text") from None
    if "\0" in data:
        raise OptionError("stdin contains a NUL byte")
    return data


def read_stdin(text: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of stdin, in order.

    Blank lines and ``#`` comments are skipped; whitespace around a line is
    stripped and one pair of double quotes around a value removed, as
    fence-agents does. A line that is not ``name=value`` stops the agent
    (unlike fence-agents, which skips it): a mangled line may be a mangled
    password, and acting on half a configuration is worse than not acting.
    Its content is not quoted, for the same reason.
    """
    pairs = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or not _NAME.fullmatch(name):
            raise OptionError(f"stdin line {number} is not name=value")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        pairs.append((name, value))
    return pairs


def stdin_names(agent: FenceAgent) -> dict[str, Option]:
    """Every stdin spelling of every option: its name, its long option with
    ``-`` or ``_``, and its deprecated aliases. Current names win a clash."""
    names: dict[str, Option] = {}
    for option in agent.options:
        for spelling in (option.name, option.long, option.long.replace("-", "_")):
            names.setdefault(spelling, option)
    for option in agent.options:
        for alias in option.aliases:
            names.setdefault(alias, option)
    return names


def map_stdin(agent: FenceAgent, pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str], str | None]:
    """Raw values by option name (last one wins, aliases included), the
    unknown names, and ``nodename``."""
    names = stdin_names(agent)
    raw: dict[str, str] = {}
    ignored: list[str] = []
    nodename = None
    for name, value in pairs:
        option = names.get(name)
        if option is not None:
            raw[option.name] = value
        elif name == "nodename":
            nodename = value or None
        elif name not in ignored:
            ignored.append(name)
    return raw, ignored, nodename


def read_command_line(agent: FenceAgent, argv: Sequence[str]) -> tuple[dict[str, str | bool], bool]:
    """Raw values by option name from getopt-style arguments, and whether
    ``-h``/``--help`` was asked for. Booleans are flags; the last value wins."""
    import getopt

    shorts, longs = "h", ["help"]
    by_flag: dict[str, Option] = {}
    for option in agent.options:
        takes_value = option.type != "boolean"
        if option.short:
            shorts += option.short + (":" if takes_value else "")
            by_flag["-" + option.short] = option
        longs.append(option.long + ("=" if takes_value else ""))
        by_flag["--" + option.long] = option
    try:
        pairs, rest = getopt.gnu_getopt(list(argv), shorts, longs)
    except getopt.GetoptError as exc:
        raise OptionError(f"command line: {exc.msg}") from None
    if rest:
        raise OptionError(f"command line: unexpected argument {rest[0]!r}")
    raw: dict[str, str | bool] = {}
    wants_help = False
    for flag, value in pairs:
        if flag in ("-h", "--help"):
            wants_help = True
            continue
        option = by_flag[flag]
        raw[option.name] = True if option.type == "boolean" else value
    return raw, wants_help


# --- typing ------------------------------------------------------------------


def _shown(option: Option, raw: str) -> str:
    return f"option {option.name}" if option.secret else f"option {option.name}={raw!r}"


def convert(option: Option, raw: str | bool) -> object:
    """The typed value of one raw value; None for an empty one (unset)."""
    if isinstance(raw, bool):  # a command-line flag
        return raw
    if raw == "":
        return None
    if option.type == "integer":
        if not _INTEGER.fullmatch(raw):
            raise OptionError(f"{_shown(option, raw)} is not a valid integer")
        number = int(raw)
        low, high = BOUNDS.get(option.name, (None, None))
        if (low is not None and number < low) or (high is not None and number > high):
            upper = "" if high is None else f" and at most {high}"
            raise OptionError(f"{_shown(option, raw)} must be at least {low}{upper}")
        return number
    if option.type == "second":
        if not _SECONDS.fullmatch(raw):
            raise OptionError(f"{_shown(option, raw)} is not a valid time in seconds")
        seconds = float(raw)
        return int(seconds) if seconds.is_integer() else seconds
    if option.type == "boolean":
        word = raw.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise OptionError(f"{_shown(option, raw)} is not a boolean (use {'/'.join(TRUE_WORDS + FALSE_WORDS)})")
    if option.type == "select":
        for choice in option.choices:  # fence-agents compares without case
            if choice.lower() == raw.lower():
                return choice
        raise OptionError(f"{_shown(option, raw)} is not one of: {', '.join(option.choices)}")
    return raw


def normalise_action(raw: object) -> str:
    """Lower case; ``meta-data`` (the OCF spelling) is ``metadata``."""
    action = str(raw).strip().lower()
    return "metadata" if action == "meta-data" else action


def parse(agent: FenceAgent, argv: Sequence[str], stdin: IO[str] | IO[bytes]) -> Options:
    """The options of this invocation, typed and with defaults.

    Raises :class:`OptionError` for unreadable input, an unknown action or a
    value of the wrong type. Whether the options suffice for the action is
    :func:`problems`' question. For metadata and manpage nothing but the
    action is looked at.
    """
    ignored: list[str] = []
    nodename = None
    if argv:
        raw, wants_help = read_command_line(agent, argv)
        source = "command line"
    else:
        raw_stdin, ignored, nodename = map_stdin(agent, read_stdin(read_text(stdin)))
        raw, wants_help, source = dict(raw_stdin), False, "stdin"
    secrets = [str(raw[o.name]) for o in agent.options if o.secret and raw.get(o.name)]
    defaults = {o.name: o.default for o in agent.options}

    def result(action: str, values: Mapping[str, object]) -> Options:
        return Options(action, dict(values), source, raw, ignored, nodename, secrets)

    if wants_help:
        return result(HELP, defaults)
    action = normalise_action(raw.get("action") or defaults.get("action") or "reboot")
    if action not in AGENT_ACTIONS:
        raise OptionError(f"Unrecognised action {action!r}")
    if action in INFO_ACTIONS:
        return result(action, defaults)
    values = dict(defaults)
    for option in agent.options:
        if option.name in raw and option.name != "action":
            value = convert(option, raw[option.name])
            values[option.name] = option.default if value is None else value
    values["action"] = action
    if values.get("plug") is None and nodename:
        values["plug"] = nodename
    return result(action, values)


# --- consistency -------------------------------------------------------------


def problems(agent: FenceAgent, options: Options) -> list[str]:
    """Why these options cannot carry out their action (empty if they can).

    Checked before any device is contacted. Multi-plug devices need a plug
    only for the actions that act on one (fence-agents asks for it for
    validate-all too; Pacemaker supplies the plug per request, so a device's
    configuration must validate without it).
    """
    found = []
    for option in agent.options:
        if not option.required or option.name == "plug" or options.values.get(option.name) is not None:
            continue
        stand_in = SATISFIED_BY.get(option.name)
        if stand_in and options.values.get(stand_in) is not None:
            continue
        found.append(MISSING.get(option.name, f"You have to enter {option.name}"))
    if agent.multi_plug and options.action in PLUG_ACTIONS and options.values.get("plug") is None:
        found.append(MISSING["plug"])
    if options.values.get("ip") is not None:
        try:
            address.split(str(options.values["ip"]), None)
        except ValueError as exc:
            found.append(str(exc))
    return found


def check_password_script(command: str) -> str | None:
    """Whether ``password_script`` can be run (without running it): a problem or None."""
    import os
    import shlex
    import shutil

    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"password_script is not a valid command line: {exc}"
    if not argv:
        return "password_script is empty"
    program = argv[0]
    found = program if "/" in program else shutil.which(program)
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        return f"password_script: {program!r} is not an executable file"
    return None


def run_password_script(command: str, timeout: float | None = None) -> str:
    """The password: the first line the program prints.

    Run without a shell (split like a shell would), stdin closed, its
    standard error discarded (it is not ours to redact). A program that
    fails, hangs or prints nothing stops the agent with a clear line; on a
    timeout its whole process group is killed, so a lingering child cannot
    hold the agent.
    """
    import os
    import shlex
    import signal
    import subprocess

    timeout = PASSWORD_SCRIPT_TIMEOUT if timeout is None else timeout
    problem = None
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise OptionError(f"password_script is not a valid command line: {exc}") from None
    if not argv:
        raise OptionError("password_script is empty")
    program = argv[0]
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise OptionError(f"password_script: cannot run {program!r}: {exc.strerror}") from None
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise OptionError(f"password_script {program!r} did not finish within {timeout:g} s") from None
    if process.returncode < 0:
        problem = f"was killed by signal {-process.returncode}"
    elif process.returncode > 0:
        problem = f"failed with exit status {process.returncode}"
    if problem:
        raise OptionError(f"password_script {program!r} {problem}")
    lines = output.decode("utf-8", errors="replace").splitlines()
    if not lines or not lines[0]:
        raise OptionError(f"password_script {program!r} printed no password")
    return lines[0]
