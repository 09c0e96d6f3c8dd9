"""``highlander demo-signer`` and ``highlander check-journals``: the synthetic
validator workload and the checker of what it signed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from highlander.signstate.client import DEFAULT_SOCKET


def _host_port(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=option)
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("demo-signer")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_SOCKET,
    show_default=True,
    help="The local sign-state daemon's Unix socket.",
)
@click.option("--chain-id", default="highlander-demo", show_default=True, help="Chain the key signs for.")
@click.option("--key-id", default="validator", show_default=True, help="Name of the signing key.")
@click.option("--node", required=True, help="This node's name, written into every journal line.")
@click.option(
    "--journal",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Append one JSON line per signature here (fsync'ed before the next vote).",
)
@click.option(
    "--block-time",
    type=click.FloatRange(min=0.001),
    default=1.0,
    show_default=True,
    help="Seconds per block of the synthetic chain.",
)
@click.option(
    "--genesis",
    type=float,
    default=0.0,
    show_default=True,
    help="UNIX time of height 1; every signer of one chain must agree on it.",
)
@click.option("--status-listen", metavar="HOST:PORT", help="Serve a CometBFT-style /status here.")
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="ed25519 private key (PEM), created 0600 when missing.  [default: a key for this run only]",
)
@click.option(
    "--no-guard", is_flag=True, help="Never ask the register: the negative control that double-signs on purpose."
)
def demo_signer(
    socket_path: Path,
    chain_id: str,
    key_id: str,
    node: str,
    journal: Path,
    block_time: float,
    genesis: float,
    status_listen: str | None,
    key_file: Path | None,
    no_guard: bool,
) -> None:
    """A synthetic validator: promote once, then advance before every vote.

    It signs propose, prevote and precommit of round 0 at the chain's current
    height (wall time since --genesis), strictly above the promoted mark.

    \b
    Exit status: 0 stopped by SIGTERM/SIGINT; 1 not promoted (or cannot start);
    3 superseded (STALE_EPOCH: another node was promoted, nothing more signed);
    4 CONFLICT alarm; 5 an advance refused for another reason (REGRESSION, ERROR).
    While there is no majority it signs nothing and retries.
    """
    import logging
    import signal
    import sys
    import threading

    from highlander.drill import signer
    from highlander.signstate.register import KeyId

    listen = _host_port(status_listen, "--status-listen") if status_listen else None
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s %(levelname)s demo-signer node={node} %(message)s"
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    options = signer.Options(
        socket=socket_path,
        key=KeyId(chain_id, key_id),
        node=node,
        journal=journal,
        block_time=block_time,
        genesis=genesis,
        status_listen=listen,
        key_file=key_file,
        guard=not no_guard,
    )
    try:
        status = signer.run(options, stop)
    except signer.SignerError as exc:
        raise click.ClickException(str(exc)) from None
    if status == signer.EXIT_REFUSED:
        raise click.ClickException("not promoted: this node must not sign (see the log line above)")
    sys.exit(status)


@click.command("check-journals")
@click.argument("journals", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--gaps",
    "top_gaps",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="How many of the longest signing gaps to show.",
)
def check_journals(journals: tuple[Path, ...], as_json: bool, top_gaps: int) -> None:
    """Check demo-signer journals for double signs, regressions and gaps.

    \b
    Exit status: 0 no double sign; 1 a double sign (same key and
    height/round/step, different digests, in any of the journals);
    2 a journal cannot be read or holds a malformed line.
    """
    from highlander.drill.journal import JournalError
    from highlander.drill.journal import check_journals as check

    try:
        report = check(journals, top_gaps)
    except JournalError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        raise SystemExit(1)
