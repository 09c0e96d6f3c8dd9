"""``ocf:highlander:validator``: one long-running signing daemon.

Start returns only once the daemon is healthy (or fails with a reason before
Pacemaker's timeout, leaving nothing behind); stop escalates from SIGTERM to
SIGKILL in time and succeeds only when no process of the resource is left;
monitor looks deeper with the check level: 0 the process, 10 the health
check (answering and not catching up), 20 the chain height advancing.

Only ``os`` and ``/proc`` are touched at depth 0; everything heavier is
imported by the action that needs it.
"""

from __future__ import annotations

import os

from highlander.adapters import process
from highlander.ocf import codes
from highlander.ocf.codes import OCFError
from highlander.ocf.spec import Action, Agent, Parameter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from subprocess import Popen

    from highlander.adapters.health import Health
    from highlander.ocf.runtime import Resource

NAME = "validator"
RUN_DIR = "/run/highlander"
LOG_DIR = "/var/log/highlander"
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Without a health check, a daemon that is still alive this long after its
# start counts as started: it catches a wrong flag or a missing file at once.
SETTLE_SECONDS = 1.0
POLL_SECONDS = 0.25

# Checks that must pass before the daemon may start, in order; each raises
# OCFError to refuse the start. The sign-state gate (promote to a new epoch,
# then raise the service's state file to the quorum's high-water mark) is
# one of them: a validator must not start without a majority behind it.
START_GATES: tuple[Callable[[Resource], None], ...] = ()


def _absolute_path(value: object) -> str | None:
    return None if str(value).startswith("/") else "must be an absolute path"


def _positive(value: object) -> str | None:
    return None if isinstance(value, int) and value > 0 else "must be a positive number of seconds"


def _not_negative(value: object) -> str | None:
    return None if isinstance(value, int) and value >= 0 else "must be 0 or a positive number of seconds"


def _http_url(value: object) -> str | None:
    ok = str(value).startswith(("http://", "https://"))
    return None if ok else "must be an http:// or https:// URL"


def split_words(text: str) -> list[str]:
    """Split a command line like a shell. Without quotes or backslashes that
    is ``str.split``; ``shlex`` (and ``re`` with it) is loaded only otherwise,
    since every monitor checks the parameters."""
    if not any(c in text for c in "'\"\\"):
        return text.split()
    import shlex

    return shlex.split(text)


def _command_line(value: object) -> str | None:
    try:
        words = split_words(str(value))
    except ValueError as exc:
        return f"cannot be split into words ({exc})"
    return None if words else "is empty"


PARAMETERS = (
    Parameter(
        "command",
        "Command line of the signing daemon",
        "The daemon's command line, split into words like a shell does (quotes "
        "work) but run without a shell: use 'sh -c \"...\"' for shell features. The "
        "daemon must stay in the foreground; the agent detaches it, records its PID "
        "and sends its output to the log file.",
        required=True,
        check=_command_line,
    ),
    Parameter(
        "user",
        "User that runs the daemon",
        "Name of the system user the daemon runs as, with that user's groups. "
        "Empty: the user running the agent (root under Pacemaker). A dedicated "
        "unprivileged user is strongly recommended for a signing key.",
    ),
    Parameter(
        "directory",
        "Working directory",
        "Absolute path of the directory the daemon starts in.",
        default="/",
        check=_absolute_path,
    ),
    Parameter(
        "environment_file",
        "File of environment variables",
        "Absolute path of a file with one KEY=VALUE per line (blank lines, '#' "
        "comments and an 'export ' prefix are allowed; values may be quoted). The "
        "daemon gets these on top of a minimal environment (PATH, HOME, USER, LANG); "
        "nothing of the cluster's environment is passed on.",
        check=_absolute_path,
    ),
    Parameter(
        "pidfile",
        "PID file",
        "Absolute path of the file where the agent records the daemon's PID. "
        f"Empty: {RUN_DIR}/validator-<resource>.pid.",
        unique_group="pidfile",
        check=_absolute_path,
    ),
    Parameter(
        "health_url",
        "CometBFT-style status URL",
        "URL of a JSON status endpoint shaped like CometBFT's /status "
        "(result.sync_info.latest_block_height and catching_up), for example "
        "http://127.0.0.1:26657/status. https certificates are verified. Used by "
        "start (healthy = answering and not catching up) and by monitor at depth "
        "10 and 20. Set this or health_command, not both.",
        check=_http_url,
    ),
    Parameter(
        "health_command",
        "Health check command",
        "Command line run with the daemon's environment instead of health_url: "
        "exit status 0 means healthy; when the last line it prints is a whole "
        "number, that is the block height used by the depth 20 monitor.",
        check=_command_line,
    ),
    Parameter(
        "health_timeout",
        "Seconds one health check may take",
        "How long one health request may take before it counts as failed.",
        type="integer",
        default=5,
        check=_positive,
    ),
    Parameter(
        "stop_timeout",
        "Seconds between SIGTERM and SIGKILL",
        "How long stop waits after SIGTERM before it sends SIGKILL. 0: as long as "
        "the stop operation's timeout allows, keeping a few seconds for SIGKILL. "
        "SIGKILL is always sent in time for stop to finish within its timeout.",
        type="integer",
        default=0,
        check=_not_negative,
    ),
    Parameter(
        "logfile",
        "Log file of the daemon",
        "Absolute path of the file the daemon's standard output and error are "
        f"appended to. Empty: {LOG_DIR}/validator-<resource>.log.",
        check=_absolute_path,
    ),
)


# --- derived settings ---------------------------------------------------------


def _tag(res: Resource) -> str:
    return process.marker(NAME, res.instance)


def _safe_name(res: Resource) -> str:
    return res.instance.replace("/", "_")


def _pidfile(res: Resource) -> str:
    return str(res.params["pidfile"] or f"{RUN_DIR}/{NAME}-{_safe_name(res)}.pid")


def _heightfile(res: Resource) -> str:
    return _pidfile(res) + ".height"


def _logfile(res: Resource) -> str:
    return str(res.params["logfile"] or f"{LOG_DIR}/{NAME}-{_safe_name(res)}.log")


def _words(res: Resource, name: str) -> list[str]:
    return split_words(str(res.params[name]))


def _read_environment_file(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise OCFError(codes.ERR_ARGS, f"environment_file {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        text = text.removeprefix("export ").lstrip()
        key, sep, value = text.partition("=")
        if not sep or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise OCFError(
                codes.ERR_CONFIGURED,
                f"environment_file {path} line {number}: expected KEY=VALUE, got {line!r}",
            )
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _daemon_environment(res: Resource) -> dict[str, str]:
    import pwd

    user = str(res.params["user"] or pwd.getpwuid(os.getuid()).pw_name)
    env = {
        "PATH": DAEMON_PATH,
        "HOME": pwd.getpwnam(user).pw_dir,
        "USER": user,
        "LOGNAME": user,
        "LANG": "C.UTF-8",
    }
    if res.params["environment_file"]:
        env.update(_read_environment_file(str(res.params["environment_file"])))
    key, _, value = _tag(res).partition("=")
    env[key] = value
    return env


# --- validation (check level 10: the local environment) ----------------------


def _require_program(word: str, what: str) -> None:
    import shutil

    if "/" in word:
        found = os.path.isfile(word) and os.access(word, os.X_OK)
    else:
        found = shutil.which(word, path=DAEMON_PATH) is not None
    if not found:
        raise OCFError(
            codes.ERR_INSTALLED,
            f"{what} program {word!r} is not installed here (not an executable file"
            + ("" if "/" in word else f" in {DAEMON_PATH}") + ")",
        )


def validate(res: Resource) -> None:
    """Everything start needs from this host: user, program, files."""
    import pwd

    if res.params["health_url"] and res.params["health_command"]:
        raise OCFError(codes.ERR_CONFIGURED, "set health_url or health_command, not both")
    user = res.params["user"]
    if user:
        try:
            pwd.getpwnam(str(user))
        except KeyError:
            raise OCFError(
                codes.ERR_CONFIGURED, f"user={user!r}: no such user on this host (create it or fix the parameter)"
            ) from None
    _require_program(_words(res, "command")[0], "command")
    if res.params["health_command"]:
        _require_program(_words(res, "health_command")[0], "health_command")
    directory = str(res.params["directory"])
    if not os.path.isdir(directory):
        raise OCFError(codes.ERR_ARGS, f"directory={directory!r} does not exist on this host")
    _daemon_environment(res)  # reads and checks environment_file


# --- health -------------------------------------------------------------------


def _health(res: Resource) -> Health | None:
    """Ask the configured health check; None when none is configured."""
    from highlander.adapters import health

    budget = min(res.integer("health_timeout"), max(res.time_left() - 1.0, 0.1))
    try:
        if res.params["health_url"]:
            return health.check_url(str(res.params["health_url"]), budget)
        if res.params["health_command"]:
            return health.check_command(_words(res, "health_command"), budget, _daemon_environment(res))
    except health.HealthError as exc:
        raise OCFError(codes.ERR_GENERIC, f"health check failed: {exc}") from None
    return None


def _healthy(res: Resource) -> Health | None:
    found = _health(res)
    if found is not None and found.catching_up:
        raise OCFError(codes.ERR_GENERIC, f"daemon is catching up (block height {found.height})")
    return found


def _height_advanced(res: Resource, found: Health | None) -> None:
    """Depth 20: the chain must have moved since the previous deep monitor."""
    if found is None:
        return  # no health check: the next lower level was all there is
    if found.height is None:
        raise OCFError(codes.ERR_GENERIC, "health check reports no block height; depth 20 needs one")
    path = _heightfile(res)
    previous = process.read_pidfile(path)  # the same one-number file format
    process.write_pidfile(path, found.height)
    if previous is not None and found.height <= previous:
        raise OCFError(
            codes.ERR_GENERIC, f"block height has not advanced since the previous check ({found.height})"
        )


# --- actions --------------------------------------------------------------------


def start(res: Resource) -> int:
    res.validate()
    if process.running_pid(_pidfile(res), _tag(res)) is not None:
        res.log.info("already running")
        return codes.SUCCESS
    for gate in START_GATES:
        gate(res)
    argv = _words(res, "command")
    try:
        daemon = process.spawn(
            argv,
            env=_daemon_environment(res),
            cwd=str(res.params["directory"]),
            logfile=_logfile(res),
            user=str(res.params["user"]) if res.params["user"] else None,
        )
    except OSError as exc:
        # Permission problems are the host's; anything else (exec format
        # error, a broken interpreter line) means the program is not usable.
        code = codes.ERR_PERM if isinstance(exc, PermissionError) else codes.ERR_INSTALLED
        raise OCFError(code, f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
    process.write_pidfile(_pidfile(res), daemon.pid)
    res.log.info(f"started {argv[0]} as PID {daemon.pid}; waiting until it is healthy")
    try:
        _wait_healthy(res, daemon)
    except OCFError:
        _terminate(res, grace=min(5.0, max(res.time_left() - 1.0, 0.0)))
        raise
    return codes.SUCCESS


def _wait_healthy(res: Resource, daemon: Popen[bytes]) -> None:
    import time

    margin = min(5.0, res.timeout * 0.1)
    settle_until = time.monotonic() + SETTLE_SECONDS
    last = "no answer yet"
    while True:
        status = daemon.poll()
        if status is not None:
            raise OCFError(
                codes.ERR_GENERIC,
                f"daemon exited with status {status} during start; see {_logfile(res)}",
            )
        try:
            if _healthy(res) is not None or time.monotonic() >= settle_until:
                res.log.info("daemon is healthy")
                return
        except OCFError as exc:
            last = exc.reason
        if res.time_left() <= margin:
            raise OCFError(codes.ERR_GENERIC, f"daemon not healthy within the start timeout: {last}")
        time.sleep(POLL_SECONDS)


def _terminate(res: Resource, grace: float) -> list[int]:
    """SIGTERM every process of the resource, SIGKILL what is left after
    ``grace`` seconds; returns the processes that survived even that."""
    import signal

    tag = _tag(res)
    leader = process.running_pid(_pidfile(res), tag)
    process.signal_processes(process.find_tagged(tag), signal.SIGTERM, leader)
    left = process.wait_gone(tag, grace)
    if left:
        res.log.warning(f"processes {left} still running {grace:.0f} s after SIGTERM; sending SIGKILL")
        process.signal_processes(left, signal.SIGKILL, leader)
        left = process.wait_gone(tag, min(5.0, max(res.time_left() - 0.5, 0.5)))
    return left


def stop(res: Resource) -> int:
    tag = _tag(res)
    if process.running_pid(_pidfile(res), tag) is None and not process.find_tagged(tag):
        process.remove_file(_pidfile(res))
        res.log.info("already stopped")
        return codes.SUCCESS
    kill_reserve = min(5.0, res.timeout * 0.25)
    grace = max(res.time_left() - kill_reserve, 0.0)
    if res.integer("stop_timeout"):
        grace = min(grace, res.integer("stop_timeout"))
    left = _terminate(res, grace)
    if left:
        raise OCFError(codes.ERR_GENERIC, f"processes {left} survived SIGKILL")
    process.remove_file(_pidfile(res))
    process.remove_file(_heightfile(res))
    res.log.info("stopped")
    return codes.SUCCESS


def monitor(res: Resource) -> int:
    tag = _tag(res)
    pidfile = _pidfile(res)
    if process.running_pid(pidfile, tag) is None:
        strays = process.find_tagged(tag)
        if strays:
            raise OCFError(
                codes.ERR_GENERIC, f"processes {strays} of this resource run without a valid PID file"
            )
        recorded = process.read_pidfile(pidfile)
        if recorded is not None and not res.is_probe:
            raise OCFError(codes.NOT_RUNNING, f"daemon (PID {recorded} in {pidfile}) is gone")
        return codes.NOT_RUNNING
    if res.check_level >= 10:
        found = _healthy(res)
        if res.check_level >= 20:
            _height_advanced(res, found)
    return codes.SUCCESS


AGENT = Agent(
    NAME,
    version="1.0",
    shortdesc="A signing daemon that must never run twice",
    longdesc=(
        "Manages one long-running signing daemon (for example a CometBFT "
        "validator or a remote signer). Start returns only once the daemon's "
        "health check passes; stop sends SIGTERM, then SIGKILL in time, and "
        "succeeds only when no process of the resource is left. Monitor depth 0 "
        "checks the process, depth 10 the health check (answering and not "
        "catching up), depth 20 that the block height advanced since the previous "
        "depth 20 monitor (give that monitor an interval longer than a block). "
        "Every process of the resource is recognised by the variable HIGHLANDER_OCF "
        "in its environment, so PID reuse is never mistaken for the daemon."
    ),
    parameters=PARAMETERS,
    actions=(
        Action("start", start, timeout=120),
        Action("stop", stop, timeout=60, strict=False),
        Action("monitor", monitor, timeout=20, interval=10, depth=0),
        Action("monitor", monitor, timeout=30, interval=30, depth=10),
        Action("monitor", monitor, timeout=30, interval=120, depth=20),
    ),
    validate=validate,
)
