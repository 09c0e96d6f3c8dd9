"""``ocf:highlander:signstate``: this node's sign-state replica daemon.

Run as a clone on all three nodes of the trio, witness included: the
register needs a majority of three replicas, so each node runs
``highlander signstate serve`` with its own configuration. Start returns
once the daemon answers on its signer socket; monitor depth 0 checks the
process, depth 10 that the daemon answers.
"""

from __future__ import annotations

from highlander.agents.daemon import Daemon, read_config
from highlander.ocf import checks, codes
from highlander.ocf.codes import OCFError
from highlander.ocf.spec import Action, Agent, Parameter

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from highlander.ocf.runtime import Resource
    from highlander.signstate.config import NodeConfig

NAME = "signstate"

PARAMETERS = (
    Parameter(
        "config",
        "The node's sign-state configuration",
        "Absolute path of this node's signstate.toml: its name, listen address, "
        "the two peers, the state directory, the cluster PKI directory and the "
        "signer socket (rendered by highlander render or the Ansible roles).",
        default="/etc/highlander/signstate.toml",
        check=checks.absolute_path,
    ),
    Parameter(
        "pidfile",
        "PID file",
        "Absolute path of the daemon's PID file. Empty: /run/highlander/signstate-<resource>.pid.",
        unique_group="pidfile",
        check=checks.absolute_path,
    ),
    Parameter(
        "logfile",
        "Log file",
        "Absolute path the daemon's structured log is appended to. Empty: "
        "/var/log/highlander/signstate-<resource>.log.",
        check=checks.absolute_path,
    ),
)


def _daemon(res: Resource) -> Daemon:
    return Daemon(NAME, res, res.params["pidfile"], res.params["logfile"])


def _config(res: Resource) -> NodeConfig:
    from highlander.signstate.config import load_config

    return read_config(res, load_config)


def validate(res: Resource) -> None:
    """The configuration parses and its secrets are usable: the node's certificate
    and key (the trio), or the files that reach etcd or PostgreSQL."""
    from highlander.signstate import pki
    from highlander.signstate.backends.settings import SettingsError, client_password

    config = _config(res)
    try:
        if config.store is not None:
            client_password(config.store)
        else:
            assert config.pki_dir is not None
            pki.server_context(config.pki_dir, config.node)
    except (pki.PKIError, SettingsError) as exc:
        raise OCFError(codes.ERR_CONFIGURED, str(exc)) from None


def _answers(res: Resource) -> bool:
    """The daemon answers a ping on its signer socket (raises with the reason)."""
    from highlander.signstate.client import SignerClient

    config = _config(res)
    try:
        with SignerClient(config.socket, timeout=max(min(res.time_left() - 1, 5), 0.5)) as client:
            node, recovering = client.ping()
    except (ConnectionError, OSError) as exc:
        raise OCFError(codes.ERR_GENERIC, str(exc)) from None
    if node != config.node:
        raise OCFError(codes.ERR_GENERIC, f"{config.socket} is answered by node {node}, not {config.node}")
    if recovering:
        # Running and serving this node's signers through the other two
        # replicas; a restart would not bring the lost state back.
        res.log.warning(f"the replica is recovering: {recovering}")
    return True


def start(res: Resource) -> int:
    import sys

    res.validate()
    daemon = _daemon(res)
    if daemon.pid() is not None:
        res.log.info("already running")
        return codes.SUCCESS
    child = daemon.spawn(
        [sys.executable, "-m", "highlander", "signstate", "serve", "--config", str(res.params["config"])],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )
    daemon.wait_ready(child, lambda: _answers(res))
    return codes.SUCCESS


def stop(res: Resource) -> int:
    return _daemon(res).stop()


def monitor(res: Resource) -> int:
    if not _daemon(res).running():
        return codes.NOT_RUNNING
    if res.check_level >= 10:
        _answers(res)
    return codes.SUCCESS


AGENT = Agent(
    NAME,
    version="1.0",
    shortdesc="The sign-state replica of this node",
    longdesc=(
        "Runs this node's sign-state daemon (highlander signstate serve): a replica "
        "of the register that holds, per signing key, the last signed "
        "height/round/step, and the coordinator that local signers ask before "
        "every signature. Clone it on all three nodes of the trio, witness "
        "included, and order the validator after it: without a majority of "
        "replicas no validator starts and no signature is allowed. A replica "
        "whose state directory is lost, damaged or older than it was (restored "
        "from a backup) does not start from zero: it keeps running but answers "
        "nothing until 'highlander signstate rejoin' rebuilds it from both other "
        "replicas; monitor at depth 10 logs that it is recovering. Initialise the "
        "three replicas of a new cluster once with 'highlander signstate init'."
    ),
    parameters=PARAMETERS,
    actions=(
        Action("start", start, timeout=30),
        Action("stop", stop, timeout=30, strict=False),
        Action("monitor", monitor, timeout=20, interval=10, depth=0),
        Action("monitor", monitor, timeout=20, interval=30, depth=10),
    ),
    validate=validate,
)
