"""``ocf:highlander:validator``: one long-running signing daemon.

Start returns only once the daemon is healthy (or fails with a reason before
Pacemaker's timeout, leaving nothing behind); stop escalates from SIGTERM to
SIGKILL in time and succeeds only when no process of the resource is left;
monitor looks deeper with the check level: 0 the process, 10 the health
check (answering and not catching up), 20 the chain height advancing.

Before the daemon starts, the sign-state gate makes this node the signer in
the register: a majority of the trio must promise it a new epoch, and a
signer state file (CometBFT FilePV mode) is raised to the majority's
high-water mark. Without a majority the validator does not start.

Only ``os`` and ``/proc`` are touched at depth 0; everything heavier is
imported by the action that needs it.
"""

from __future__ import annotations

import os

from highlander.adapters import process
from highlander.agents.daemon import RUN_DIR, Daemon
from highlander.ocf import checks, codes
from highlander.ocf.codes import OCFError
from highlander.ocf.spec import Action, Agent, Parameter

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from subprocess import Popen

    from highlander.adapters.health import Health
    from highlander.ocf.runtime import Resource
    from highlander.signstate.register import HRS

NAME = "validator"
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SIGNSTATE_SOCKET = "/run/highlander/signstate.sock"
# Without a health check, a daemon that is still alive this long after its
# start counts as started: it catches a wrong flag or a missing file at once.
SETTLE_SECONDS = 1.0
# FilePV mode: how often the follower reads the state file. With
# replication_deadline it bounds the window in which a signature is unchecked.
STATE_POLL_MS = 20


PARAMETERS = (
    Parameter(
        "command",
        "Command line of the signing daemon",
        "The daemon's command line, split into words like a shell does (quotes "
        "work) but run without a shell: use 'sh -c \"...\"' for shell features. The "
        "daemon must stay in the foreground; the agent detaches it, records its PID "
        "and sends its output to the log file.",
        required=True,
        check=checks.command_line,
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
        check=checks.absolute_path,
    ),
    Parameter(
        "environment_file",
        "File of environment variables",
        "Absolute path of a file with one KEY=VALUE per line (blank lines, '#' "
        "comments and an 'export ' prefix are allowed; values may be quoted). The "
        "daemon gets these on top of a minimal environment (PATH, HOME, USER, LANG); "
        "nothing of the cluster's environment is passed on.",
        check=checks.absolute_path,
    ),
    Parameter(
        "pidfile",
        "PID file",
        "Absolute path of the file where the agent records the daemon's PID. "
        f"Empty: {RUN_DIR}/validator-<resource>.pid.",
        unique_group="pidfile",
        check=checks.absolute_path,
    ),
    Parameter(
        "health_url",
        "CometBFT-style status URL",
        "URL of a JSON status endpoint shaped like CometBFT's /status "
        "(result.sync_info.latest_block_height and catching_up), for example "
        "http://127.0.0.1:26657/status. https certificates are verified. Used by "
        "start (healthy = answering and not catching up) and by monitor at depth "
        "10 and 20. Set this or health_command, not both.",
        check=checks.http_url,
    ),
    Parameter(
        "health_command",
        "Health check command",
        "Command line run with the daemon's environment instead of health_url: "
        "exit status 0 means healthy; when the last line it prints is a whole "
        "number, that is the block height used by the depth 20 monitor.",
        check=checks.command_line,
    ),
    Parameter(
        "health_timeout",
        "Seconds one health check may take",
        "How long one health request may take before it counts as failed.",
        type="integer",
        default=5,
        check=checks.positive,
    ),
    Parameter(
        "stop_timeout",
        "Seconds between SIGTERM and SIGKILL",
        "How long stop waits after SIGTERM before it sends SIGKILL. 0: as long as "
        "the stop operation's timeout allows, keeping a few seconds for SIGKILL. "
        "SIGKILL is always sent in time for stop to finish within its timeout.",
        type="integer",
        default=0,
        check=checks.not_negative,
    ),
    Parameter(
        "logfile",
        "Log file of the daemon",
        "Absolute path of the file the daemon's standard output and error are "
        "appended to. Empty: /var/log/highlander/validator-<resource>.log.",
        check=checks.absolute_path,
    ),
    Parameter(
        "signstate",
        "Ask the sign-state register before starting",
        "Before the daemon starts, make this node the signer in the sign-state "
        "register: a majority of the trio must promise it a new epoch (and with "
        "state_file, the file is raised to the majority's high-water mark). "
        "Without a majority the start fails. Turn off only for a service that "
        "cannot double-sign.",
        type="boolean",
        default=True,
    ),
    Parameter(
        "chain_id",
        "Chain id of the signing key",
        "The chain the daemon signs for, as registered in the sign-state register. Required while signstate is on.",
        unique_group="signing_key",
    ),
    Parameter(
        "key_id",
        "Name of the signing key",
        "The signing key's name in the sign-state register. Required while signstate is on.",
        unique_group="signing_key",
    ),
    Parameter(
        "signstate_socket",
        "Sign-state daemon socket",
        "Unix socket of this node's sign-state daemon (ocf:highlander:signstate).",
        default=SIGNSTATE_SOCKET,
        check=checks.absolute_path,
    ),
    Parameter(
        "state_file",
        "Signer state file (FilePV mode)",
        "For a daemon that signs on its own (CometBFT FilePV): its state file "
        "(priv_validator_state.json, or a tmkms state file). Before start it is "
        "raised to the register's high-water mark plus height_margin, never "
        "lowered. The daemon then runs as the child of a follower that reads the "
        f"file every {STATE_POLL_MS} ms and replicates every change to the register. "
        "The follower kills the daemon (SIGKILL, every process of it) when another "
        "node was promoted, when a change is not on a majority within "
        "replication_deadline, when the file stays unreadable that long, and when "
        "the follower itself dies; monitor then fails with the reason. Such a "
        "daemon signs before the register sees the mark: a signature can be handed "
        f"out unchecked for at most {STATE_POLL_MS} ms + replication_deadline after "
        "its state-file write, and height_margin on the next promotion covers that "
        "window. The daemon must not change its own user nor be set-user-ID or have "
        "file capabilities (that cuts its tie to the follower): use the user parameter.",
        check=checks.absolute_path,
    ),
    Parameter(
        "state_format",
        "Format of state_file",
        "cometbft (priv_validator_state.json) or tmkms.",
        default="cometbft",
        check=checks.one_of("cometbft", "tmkms"),
    ),
    Parameter(
        "height_margin",
        "Heights to skip after a promotion (FilePV mode)",
        "How many heights above the register's high-water mark the state file "
        "is raised to on promotion (precommit of round 0 there), so that a "
        "signature of the previous signer that the register had not seen yet "
        "(the FilePV window, see state_file) can never be repeated with other "
        "content. Use at least the number of blocks the chain makes in "
        f"replication_deadline + {STATE_POLL_MS} ms, plus one.",
        type="integer",
        default=0,
        check=checks.not_negative,
    ),
    Parameter(
        "replication_deadline",
        "Milliseconds a state-file change may wait for a majority (FilePV mode)",
        "With state_file: how long a change of the state file may go without "
        "being on a majority of the sign-state register, counted from when the "
        "follower first saw it, before the daemon is killed (fail closed: no "
        "majority, the local sign-state daemon gone or frozen, or the file "
        "unreadable). Keep it well under one block time. A signature is handed "
        f"out unchecked for at most this + {STATE_POLL_MS} ms after its state-file write.",
        type="integer",
        default=1000,
        check=checks.positive,
    ),
)


# --- derived settings ---------------------------------------------------------


def _daemon(res: Resource) -> Daemon:
    return Daemon(NAME, res, res.params["pidfile"], res.params["logfile"])


def _heightfile(res: Resource) -> str:
    return _daemon(res).pidfile + ".height"


def _followerfile(res: Resource) -> str:
    return _daemon(res).pidfile + ".follow"


def _reasonfile(res: Resource) -> str:
    """Where the follower says why it killed the daemon, for monitor."""
    return _daemon(res).pidfile + ".killed"


def _guarded(res: Resource) -> bool:
    """FilePV mode: the daemon runs under a follower."""
    return bool(res.params["signstate"] and res.params["state_file"])


def _follower(res: Resource) -> Daemon:
    return Daemon(NAME, res, _followerfile(res), _daemon(res).logfile)


def _words(res: Resource, name: str) -> list[str]:
    return checks.split_words(str(res.params[name]))


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
            + ("" if "/" in word else f" in {DAEMON_PATH}")
            + ")",
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
    if res.params["signstate"]:
        _check_signing_key(res)


def _check_signing_key(res: Resource) -> None:
    """chain_id and key_id name a record of the register: its rule, at
    validate time (the rule's module is too heavy for every monitor)."""
    from highlander.signstate.register import KeyId
    from highlander.signstate.store import check_key

    if not (res.params["chain_id"] and res.params["key_id"]):
        raise OCFError(
            codes.ERR_CONFIGURED,
            "chain_id and key_id are required while signstate=true (the register guards that key)",
        )
    problem = check_key(KeyId(str(res.params["chain_id"]), str(res.params["key_id"])))
    if problem:
        raise OCFError(codes.ERR_CONFIGURED, f"{problem} (the sign-state register names its records by them)")


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
        raise OCFError(codes.ERR_GENERIC, f"block height has not advanced since the previous check ({found.height})")


# --- the sign-state gate ------------------------------------------------------


def _promote(res: Resource) -> tuple[int, HRS]:
    """Make this node the key's signer, asking again while there is no majority
    (a peer may be rebooting) until half of the start timeout is spent."""
    from pathlib import Path

    from highlander.commands.signstate import RegisterError, promote
    from highlander.signstate.register import KeyId

    key = KeyId(str(res.params["chain_id"]), str(res.params["key_id"]))
    try:
        session = promote(Path(str(res.params["signstate_socket"])), key, patience=res.time_left() / 2)
    except RegisterError as exc:
        raise OCFError(codes.ERR_GENERIC, f"sign-state: {exc}; the validator must not start without it") from None
    res.log.info(f"sign-state: promoted to epoch {session.epoch} for {key}, high-water mark {session.hwm}")
    return session.epoch, session.hwm


def _raise_state_file(res: Resource, hwm: HRS) -> HRS:
    """FilePV mode: the state file says at least the register's mark (+ margin)."""
    import pwd
    from pathlib import Path

    from highlander.commands.signstate import StateFileError, raise_state_file, raised_mark

    path = str(res.params["state_file"])
    target = raised_mark(hwm, res.integer("height_margin"))
    existed = os.path.exists(path)
    try:
        held = raise_state_file(Path(path), str(res.params["state_format"]), target)
    except StateFileError as exc:
        raise OCFError(codes.ERR_GENERIC, f"state_file: {exc}") from None
    if not existed and os.path.exists(path) and res.params["user"]:  # created just now (not for 0/0/0)
        entry = pwd.getpwnam(str(res.params["user"]))
        os.chown(path, entry.pw_uid, entry.pw_gid)
    res.log.info(f"sign-state: {path} holds {held}")
    return held


def _spawn_guarded(res: Resource, daemon: Daemon, epoch: int, since: HRS) -> Popen[bytes]:
    """FilePV mode: start the follower, which starts the daemon as its child
    (dying with it), records its PID and replicates its state file."""
    import sys

    from highlander.signstate.follow import Signer

    signer = Signer(
        _words(res, "command"),
        daemon.tagged(_daemon_environment(res)),
        str(res.params["directory"]),
        str(res.params["user"]) if res.params["user"] else None,
    )
    return _follower(res).spawn(
        [
            sys.executable,
            "-m",
            "highlander",
            "signstate",
            "follow",
            "--socket",
            str(res.params["signstate_socket"]),
            "--chain-id",
            str(res.params["chain_id"]),
            "--key-id",
            str(res.params["key_id"]),
            "--epoch",
            str(epoch),
            "--state-file",
            str(res.params["state_file"]),
            "--format",
            str(res.params["state_format"]),
            "--since",
            str(since),
            "--deadline",
            str(res.integer("replication_deadline") / 1000),
            "--poll",
            str(STATE_POLL_MS / 1000),
            "--pidfile",
            daemon.pidfile,
            "--reason-file",
            _reasonfile(res),
        ],
        env={"PATH": DAEMON_PATH, "LANG": "C.UTF-8"},
        stdin=signer.to_json().encode(),
    )


def _check_follower(res: Resource) -> None:
    """FilePV mode: fail with the follower's reason when it killed the
    daemon, or when the follower is gone (the daemon died with it)."""
    try:
        with open(_reasonfile(res)) as f:
            reason = f.read().strip()
    except FileNotFoundError:
        reason = ""
    if reason:
        raise OCFError(codes.ERR_GENERIC, reason)
    follower = _follower(res)
    recorded = process.read_pidfile(follower.pidfile)
    if recorded is not None and follower.pid() is None:
        raise OCFError(
            codes.ERR_GENERIC,
            f"the follower guarding the daemon (PID {recorded}) is gone: the daemon's state file is no "
            "longer replicated to the sign-state register, and the daemon must not run unguarded",
        )


# --- actions --------------------------------------------------------------------


def start(res: Resource) -> int:
    import time

    res.validate()
    daemon = _daemon(res)
    if daemon.pid() is not None:
        res.log.info("already running")
        return codes.SUCCESS
    process.remove_file(_reasonfile(res))
    epoch, held = 0, None
    if res.params["signstate"]:
        epoch, hwm = _promote(res)
        if res.params["state_file"]:
            held = _raise_state_file(res, hwm)
    if held is not None:
        child = _spawn_guarded(res, daemon, epoch, held)
    else:
        child = daemon.spawn(
            _words(res, "command"),
            env=_daemon_environment(res),
            cwd=str(res.params["directory"]),
            user=str(res.params["user"]) if res.params["user"] else None,
        )
    settled = time.monotonic() + SETTLE_SECONDS

    def ready() -> bool:
        if daemon.pid() is None:
            raise OCFError(codes.ERR_GENERIC, "the follower has not started the daemon yet")
        return _healthy(res) is not None or time.monotonic() >= settled

    daemon.wait_ready(child, ready, "healthy")
    res.log.info("daemon is healthy")
    return codes.SUCCESS


def stop(res: Resource) -> int:
    code = _daemon(res).stop(res.integer("stop_timeout"))
    process.remove_file(_heightfile(res))
    process.remove_file(_followerfile(res))
    process.remove_file(_reasonfile(res))
    return code


def monitor(res: Resource) -> int:
    if _guarded(res):
        _check_follower(res)
    if not _daemon(res).running():
        return codes.NOT_RUNNING
    if _guarded(res) and _follower(res).pid() is None:
        raise OCFError(codes.ERR_GENERIC, "the daemon runs without the follower that replicates its state file")
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
