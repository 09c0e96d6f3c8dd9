"""``highlander signstate ...``: the sign-state register from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import click

from highlander.signstate.client import DEFAULT_SOCKET, Refused, SignerClient
from highlander.signstate import follow as guard
from highlander.signstate.register import HRS, KeyId, Record

socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_SOCKET,
    show_default=True,
    help="The local sign-state daemon's Unix socket.",
)
key_options = (
    click.option("--chain-id", required=True, help="Chain the key signs for."),
    click.option("--key-id", required=True, help="Name of the signing key."),
)


def with_key(function):  # type: ignore[no-untyped-def]
    for option in reversed(key_options):
        function = option(function)
    return function


def _client(socket_path: Path) -> SignerClient:
    try:
        return SignerClient(socket_path)
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None


def _record_json(record: Record | str) -> dict[str, object]:
    from highlander.signstate.wire import record_document

    return {"error": record} if isinstance(record, str) else record_document(record)


@click.group()
def signstate() -> None:
    """The sign-state register: the last signed height/round/step of each
    key, replicated to a majority of the trio before every signature."""


@signstate.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="The node's signstate.toml.",
)
def serve(config_path: Path) -> None:
    """Run this node's replica and coordinator (until SIGTERM)."""
    from highlander.commands.signstate import serve as run
    from highlander.signstate.backends import BackendError
    from highlander.signstate.config import ConfigError
    from highlander.signstate.pki import PKIError
    from highlander.signstate.store import StoreError

    try:
        run(config_path)
    except (ConfigError, PKIError, StoreError, BackendError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@signstate.command("init-ca")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--cluster", required=True, help="Cluster name, written into the CA certificate.")
def init_ca(directory: Path, cluster: str) -> None:
    """Create the cluster CA (ca.key, ca.crt) in DIRECTORY."""
    from highlander.signstate import pki

    try:
        pki.init_ca(directory, cluster)
    except pki.PKIError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {directory / 'ca.crt'} and {directory / 'ca.key'} (keep ca.key off the cluster nodes)")


@signstate.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.argument("node")
@click.option("--address", "addresses", multiple=True, help="An IP address of the node (repeatable).")
def issue(directory: Path, node: str, addresses: tuple[str, ...]) -> None:
    """Issue NODE's key and certificate from the CA in DIRECTORY."""
    from highlander.signstate import pki

    try:
        path = pki.issue(directory, node, addresses=addresses)
    except pki.PKIError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"issued {path} and its key for {node}")


@signstate.command()
@socket_option
@with_key
def status(socket_path: Path, chain_id: str, key_id: str) -> None:
    """Each replica's record for a key, as JSON."""
    with _client(socket_path) as client:
        try:
            found = client.status(KeyId(chain_id, key_id))
        except Refused as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({name: _record_json(record) for name, record in found.items()}, indent=2))


@signstate.command()
@socket_option
@with_key
def promote(socket_path: Path, chain_id: str, key_id: str) -> None:
    """Make this node the signer of a key: prints the epoch and the mark to continue above.

    Even a promotion that fails (no majority) supersedes the running signer
    on the replicas that promised: do not run it by hand on an active node.
    """
    from highlander.commands import signstate as commands

    try:
        session = commands.promote(socket_path, KeyId(chain_id, key_id))
    except commands.RegisterError as exc:
        raise click.ClickException(f"not promoted: {exc}") from None
    h, r, s = session.hwm
    click.echo(json.dumps({"epoch": session.epoch, "height": h, "round": r, "step": s, "digest": session.digest}))


@signstate.command()
@socket_option
@with_key
@click.option("--epoch", type=click.IntRange(min=1), required=True, help="The epoch promote returned.")
@click.option("--height", type=click.IntRange(min=1), required=True)
@click.option("--round", "round_", type=click.IntRange(min=0), required=True)
@click.option("--step", type=click.IntRange(1, 3), required=True, help="1 propose, 2 prevote, 3 precommit.")
@click.option("--digest", required=True, help="Hex SHA-256 of the sign bytes.")
def advance(
    socket_path: Path, chain_id: str, key_id: str, epoch: int, height: int, round_: int, step: int, digest: str
) -> None:
    """Ask the majority to accept a mark before signing it (exit 0: sign)."""
    with _client(socket_path) as client:
        try:
            client.advance(KeyId(chain_id, key_id), epoch, HRS(height, round_, step), digest)
        except Refused as exc:
            raise click.ClickException(f"do not sign: {exc}") from None
    click.echo("OK: a majority accepted; sign")


@signstate.command()
@socket_option
@with_key
@click.option("--format", "kind", type=click.Choice(["cometbft", "tmkms"]), default="cometbft", show_default=True)
@click.option(
    "--height-margin",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Heights to add above the quorum's mark (CometBFT FilePV mode).",
)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Raise this state file (never lowers).")
def export(socket_path: Path, chain_id: str, key_id: str, kind: str, height_margin: int, out: Path | None) -> None:
    """The quorum's highest mark as a signer state file (stdout, or raise --out)."""
    from highlander.commands import signstate as commands

    try:
        hwm = commands.raised_mark(commands.quorum_mark(socket_path, KeyId(chain_id, key_id)), height_margin)
    except commands.RegisterError as exc:
        raise click.ClickException(str(exc)) from None
    if out is None:
        click.echo(commands.render_state(kind, hwm), nl=False)
        return
    try:
        held = commands.raise_state_file(out, kind, hwm)
    except commands.StateFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{out} holds {held}")


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default="/etc/highlander/signstate.toml",
    show_default=True,
    help="The node's signstate.toml.",
)


@signstate.command("import")
@config_option
@with_key
@click.option("--format", "kind", type=click.Choice(["cometbft", "tmkms"]), default="cometbft", show_default=True)
@click.argument("state_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def import_(config_path: Path, chain_id: str, key_id: str, kind: str, state_file: Path) -> None:
    """Raise the register's record to a signer state file's mark.

    For a validator that signed before the cluster existed. The trio: import
    its state file on every node before the first start (daemon stopped).
    etcd or PostgreSQL: once, from any node. Never lowers a record.
    """
    from highlander.commands import signstate as commands
    from highlander.signstate.backends import BackendError
    from highlander.signstate.config import ConfigError
    from highlander.signstate.store import StoreError

    try:
        record = commands.import_state_file(config_path, KeyId(chain_id, key_id), state_file, kind)
    except (commands.StateFileError, StoreError, ConfigError, BackendError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(_record_json(record)))


@signstate.command()
@config_option
@click.option(
    "--backend",
    type=click.Choice(["trio", "etcd", "postgresql"]),
    help="The backend to prepare; must be the one the configuration names.",
)
def init(config_path: Path, backend: str | None) -> None:
    """Prepare the configured backend for a NEW cluster.

    The trio: create this node's empty replica, once, on each of the three
    nodes before their daemons first start (daemon stopped); a state
    directory that holds anything is refused: a replica that lost its state
    must be rejoined (rejoin), never initialised again. PostgreSQL: create
    the schema, or migrate it to this version (from any one node). etcd:
    check that it answers; nothing is created.
    """
    from highlander.commands import signstate as commands
    from highlander.signstate.backends import BackendError
    from highlander.signstate.config import ConfigError
    from highlander.signstate.store import StoreError

    try:
        click.echo(commands.init(config_path, backend))
    except (StoreError, ConfigError, BackendError, commands.RegisterError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@signstate.command()
@socket_option
def rejoin(socket_path: Path) -> None:
    """Rebuild this node's lost replica from the other two (root; both must be healthy).

    A replica whose state directory, identity or log is missing, damaged or
    older than its seal answers nothing until it is rejoined. Never restore a
    replica from a backup instead: a copy that is older than what it answered
    is exactly what lets a validator sign twice.
    """
    with _client(socket_path) as client:
        try:
            click.echo(client.rejoin())
        except Refused as exc:
            raise click.ClickException(f"not rejoined: {exc}") from None


@signstate.command()
@socket_option
@with_key
@click.option("--to", "mark", required=True, metavar="H/R/S", help="The mark to set, e.g. 1200/0/3 (0/0/0: none).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset(socket_path: Path, chain_id: str, key_id: str, mark: str, yes: bool) -> None:
    """Set a key's mark on a majority, even LOWER than it is (root).

    Only for a mark that a faulty or hostile signer pushed where nothing can
    follow (say, near the maximum height). Lowering a mark below a signature
    that was really given lets the validator sign twice: stop the key's
    signer first (this promotes a new ballot, which supersedes it), and be
    sure nothing was signed above the new mark.
    """
    hrs = _parse_mark(mark, "--to")
    if not yes:
        click.confirm(f"Set {chain_id}/{key_id} to {hrs}, lower than signatures it may hold?", abort=True)
    with _client(socket_path) as client:
        try:
            detail = client.reset(KeyId(chain_id, key_id), hrs)
        except Refused as exc:
            raise click.ClickException(f"not reset: {exc}") from None
    click.echo(f"{chain_id}/{key_id} set to {hrs} {detail}".rstrip())


def _parse_mark(text: str, option: str) -> HRS:
    words = text.split("/")
    if len(words) != 3 or not all(w.isascii() and w.isdigit() for w in words):
        raise click.BadParameter(f"{text!r} is not HEIGHT/ROUND/STEP", param_hint=option)
    return HRS(*(int(w) for w in words))


@signstate.command()
@socket_option
@with_key
@click.option("--epoch", type=click.IntRange(min=1), required=True, help="The epoch of this node's promotion.")
@click.option("--state-file", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--format", "kind", type=click.Choice(["cometbft", "tmkms"]), default="cometbft", show_default=True)
@click.option(
    "--since",
    default="0/0/0",
    show_default=True,
    metavar="H/R/S",
    help="The mark the promotion wrote into the file; what is above it gets replicated.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=guard.DEADLINE_SECONDS,
    show_default=True,
    help="Seconds a change of the file may wait for a majority before the signer is killed.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0, min_open=True),
    default=guard.POLL_SECONDS,
    show_default=True,
    help="Seconds between two reads of the state file.",
)
@click.option("--pidfile", type=click.Path(path_type=Path, dir_okay=False), help="Record the signer's PID here.")
@click.option(
    "--reason-file", type=click.Path(path_type=Path, dir_okay=False), help="Write why the signer was killed here."
)
def follow(
    socket_path: Path,
    chain_id: str,
    key_id: str,
    epoch: int,
    state_file: Path,
    kind: str,
    since: str,
    deadline: float,
    poll: float,
    pidfile: Path | None,
    reason_file: Path | None,
) -> None:
    """Run a FilePV signer and replicate its state file while it runs.

    The signer comes as one JSON object on standard input, {"argv": [...],
    "env": {...}, "cwd": "/", "user": null}, so that secrets in its
    environment stay off the command line. It dies with this process. A
    change of the state file that no majority accepted within --deadline
    seconds, a STALE_EPOCH or a CONFLICT gets it killed. Exit status: the
    signer's own; 3 superseded, 4 conflict, 5 not replicated in time.
    """
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    mark = _parse_mark(since, "--since")
    try:
        signer = guard.Signer.from_json(sys.stdin.read())
    except ValueError as exc:
        raise click.ClickException(f"standard input: {exc}") from None
    try:
        status = guard.follow(
            socket_path,
            KeyId(chain_id, key_id),
            epoch,
            state_file,
            kind,
            mark,
            signer,
            deadline=deadline,
            interval=poll,
            pidfile=pidfile,
            reason_file=reason_file,
        )
    except guard.SignerError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(status)
