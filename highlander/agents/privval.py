"""``ocf:highlander:privval``: the CometBFT remote signer as a promotable clone.

Run on both active-capable nodes, each instance dialing the CometBFT nodes
of its ``privval.toml``. Unpromoted, an instance answers PubKey and Ping (so
the nodes start and stay up) and refuses to sign; promote takes a new epoch
in the sign-state register and signs strictly above its mark; demote returns
once no signature is in flight. A failover moves only the signing: no
CometBFT node restarts. An instance the register reports superseded
(another node was promoted) fails its monitor, so Pacemaker demotes it.

Start, promote, demote and monitor talk to the running signer through the
control socket its configuration must name (``control = ...``).
"""

from __future__ import annotations

from highlander.agents.daemon import Daemon, read_config
from highlander.ocf import checks, codes
from highlander.ocf.codes import OCFError
from highlander.ocf.spec import Action, Agent, Parameter

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from highlander.ocf.runtime import Resource
    from highlander.privval.config import PrivvalConfig

NAME = "privval"
PROMOTION_SCORE = "10"  # every running instance may be promoted; Pacemaker picks one

PARAMETERS = (
    Parameter(
        "config",
        "The signer's configuration",
        "Absolute path of privval.toml: chain id, key file, state file, the "
        "sign-state socket, the CometBFT nodes to dial, and the control socket "
        "this agent drives the signer through.",
        default="/etc/highlander/privval.toml",
        check=checks.absolute_path,
    ),
    Parameter(
        "pidfile",
        "PID file",
        "Absolute path of the signer's PID file. Empty: /run/highlander/privval-<resource>.pid.",
        unique_group="pidfile",
        check=checks.absolute_path,
    ),
    Parameter(
        "logfile",
        "Log file",
        "Absolute path the signer's log is appended to. Empty: /var/log/highlander/privval-<resource>.log.",
        check=checks.absolute_path,
    ),
)


def _daemon(res: Resource) -> Daemon:
    return Daemon(NAME, res, res.params["pidfile"], res.params["logfile"])


def _config(res: Resource) -> PrivvalConfig:
    from highlander.privval.config import load_config

    config = read_config(res, load_config)
    if config.control is None:
        raise OCFError(codes.ERR_CONFIGURED, f'{res.params["config"]}: set control = "/run/highlander/privval.sock"')
    return config


def validate(res: Resource) -> None:
    """The configuration parses, names a control socket, and the key is usable."""
    from highlander.privval.key import KeyFileError, load_key

    config = _config(res)
    try:
        load_key(config.key_file)
    except KeyFileError as exc:
        raise OCFError(codes.ERR_CONFIGURED, str(exc)) from None


def _ask(res: Resource, op: str) -> dict[str, object]:
    from highlander.privval import control

    config = _config(res)
    assert config.control is not None
    try:
        return control.request(config.control, op, timeout=max(res.time_left() - 1, 0.5))
    except (ConnectionError, OSError, ValueError) as exc:
        raise OCFError(codes.ERR_GENERIC, str(exc)) from None


def _promotion_score(res: Resource, value: str | None) -> None:
    """Offer this instance for promotion (or withdraw it); outside a cluster
    (ocf-tester) there is no CIB, which is only worth a log line."""
    from highlander.adapters.runner import CommandRunner

    argv = ["crm_attribute", "--promotion", "--lifetime", "reboot"]
    argv += ["--update", value] if value is not None else ["--delete"]
    done = CommandRunner(env={**res.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).run(argv, timeout=10)
    if not done.ok:
        res.log.warning(f"cannot set the promotion score: {done.stderr.strip() or done.returncode}")


def start(res: Resource) -> int:
    import sys

    res.validate()
    daemon = _daemon(res)
    if daemon.pid() is None:
        child = daemon.spawn(
            [sys.executable, "-m", "highlander", "privval", "--config", str(res.params["config"])],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )
        daemon.wait_ready(child, lambda: _ask(res, "status")["status"] == "OK")
    _promotion_score(res, PROMOTION_SCORE)
    return codes.SUCCESS


def stop(res: Resource) -> int:
    _promotion_score(res, None)
    return _daemon(res).stop()


def monitor(res: Resource) -> int:
    if not _daemon(res).running():
        return codes.NOT_RUNNING
    status = _ask(res, "status")
    if status.get("superseded") and status.get("promoted"):
        raise OCFError(codes.FAILED_PROMOTED, "superseded: another node was promoted in the sign-state register")
    if not res.is_probe:
        _promotion_score(res, PROMOTION_SCORE)
    return codes.RUNNING_PROMOTED if status.get("promoted") else codes.SUCCESS


def promote(res: Resource) -> int:
    if not _daemon(res).running():
        raise OCFError(codes.NOT_RUNNING, "the signer is not running")
    answer = _ask(res, "promote")
    if answer.get("status") != "OK":
        raise OCFError(codes.ERR_GENERIC, f"the sign-state register refused the promotion: {answer.get('detail')}")
    res.log.info(f"promoted at epoch {answer.get('epoch')}, signing above {answer.get('mark')}")
    return codes.SUCCESS


def demote(res: Resource) -> int:
    if not _daemon(res).running():
        return codes.NOT_RUNNING
    _ask(res, "demote")
    return codes.SUCCESS


AGENT = Agent(
    NAME,
    version="1.0",
    shortdesc="The CometBFT remote signer behind the sign-state register",
    longdesc=(
        "Runs highlander privval, a CometBFT remote signer (privval protocol) that "
        "advances the sign-state register before every signature. Create it as a "
        "promotable clone with promoted-max=1 on the nodes that run the validator's "
        "CometBFT nodes: the promoted instance signs for every node it is connected "
        "to; unpromoted instances answer PubKey and Ping only. Order it after the "
        "signstate clone."
    ),
    parameters=PARAMETERS,
    actions=(
        Action("start", start, timeout=30),
        Action("stop", stop, timeout=30, strict=False),
        Action("promote", promote, timeout=30),
        Action("demote", demote, timeout=30),
        Action("monitor", monitor, timeout=20, interval=10, depth=0, role="Unpromoted"),
        Action("monitor", monitor, timeout=20, interval=9, depth=0, role="Promoted"),
    ),
    validate=validate,
)
