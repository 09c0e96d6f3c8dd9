"""``highlander render``: the cluster's configuration files from its inventory."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("render")
@click.argument("inventory", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to write DIR/<node>/... into (missing, empty, or an earlier render).",
)
@click.option(
    "--check",
    "check",
    is_flag=True,
    help="Before writing, check the files with crm_verify, corosync -t (in a throwaway network "
    "namespace) and ssh-keygen (root).",
)
def render_command(inventory: Path, out: Path, check: bool) -> None:
    """Render corosync.conf, the CIB, signstate.toml (and known_hosts or the
    qnetd settings) for every node of INVENTORY into --out.

    Nothing is written unless everything rendered (and checked): the files
    appear all at once or not at all. No file holds a secret.
    """
    from highlander.commands import render as command
    from highlander.inventory import InventoryError

    try:
        files = command.render_cluster(inventory, out, check_files=check)
    except InventoryError as exc:
        _fail(f"{inventory}: not a usable inventory", exc.messages)
    except command.RenderError as exc:
        _fail("nothing was written", exc.messages)
    except OSError as exc:
        _fail("nothing was written", [f"{exc.filename or out}: {exc.strerror}"])
    width = max(len(str(f.relative)) for f in files)
    for f in files:
        click.echo(f"{out / f.relative!s:<{width + len(str(out)) + 1}}  -> {f.destination}")
    if check:
        click.echo(
            "checked: crm_verify (every CIB), corosync -t (every member's corosync.conf), "
            "ssh-keygen (known_hosts): no problems"
        )


def _fail(headline: str, problems: list[str]) -> None:
    click.echo(f"highlander render: {headline} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(1)
