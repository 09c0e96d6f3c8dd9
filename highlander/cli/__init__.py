"""The ``highlander`` command: parse options, call one command, report.

Thin by design: the work is in :mod:`highlander.commands`; this module maps
options to arguments and errors to one clear line and an exit status.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from highlander import __version__

# Sub-commands that live in their own modules, as "module:attribute".
LAZY_COMMANDS = {
    "signstate": "highlander.cli.signstate:signstate",
    "privval": "highlander.cli.privval:privval",
    "demo-signer": "highlander.cli.demo:demo_signer",
    "check-journals": "highlander.cli.demo:check_journals",
    "render": "highlander.cli.render:render_command",
    "fence": "highlander.cli.fence:fence",
    "drill": "highlander.cli.drill:drill",
}


class LazyGroup(click.Group):
    """A group that imports a sub-command's module only when that command is run.

    The validator agent starts ``highlander demo-signer`` while Pacemaker
    promotes a node, and the OCF and fence agents call single commands: each
    should import only what it needs, not the drills, the lab and every other
    command's dependencies. ``--help`` still lists every command (it resolves
    each one to show its short help), also those installed above the product
    (:mod:`highlander.cli.plugins`); a plug-in never shadows a command of the
    product's.
    """

    def __init__(self, *args: Any, lazy_commands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        from highlander.cli import plugins  # reads the installed metadata: only when asked

        return sorted({*super().list_commands(ctx), *self.lazy_commands, *plugins.installed(plugins.COMMANDS)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is None:
            command = super().get_command(ctx, cmd_name)
            if command is None:
                from highlander.cli import plugins

                command = plugins.load(plugins.COMMANDS, cmd_name)
            return command
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=LazyGroup, lazy_commands=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="highlander")
def main() -> None:
    """Keep a service that must never run twice highly available with
    Pacemaker/Corosync: OCF agents, fence agents, sign-state, lab and drills."""


@main.command("install")
@click.option("--uninstall", is_flag=True, help="Remove exactly what an earlier install wrote.")
@click.option(
    "--prefix",
    type=click.Path(path_type=Path),
    default=Path("/usr"),
    show_default=True,
    help="Installation prefix; fence agents go to PREFIX/sbin.",
)
@click.option(
    "--ocf-root",
    type=click.Path(path_type=Path),
    default=None,
    help="OCF root; agents go to OCF_ROOT/resource.d/highlander.  [default: PREFIX/lib/ocf]",
)
@click.option(
    "--destdir",
    type=click.Path(path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Stage the installation below this directory (for packagers).",
)
def install_command(uninstall: bool, prefix: Path, ocf_root: Path | None, destdir: Path) -> None:
    """Install the OCF and fence agents where Pacemaker and pcs find them."""
    from highlander.commands import install

    for name, path in (("--prefix", prefix), ("--ocf-root", ocf_root), ("--destdir", destdir)):
        if path is not None and not path.is_absolute():
            raise click.BadParameter(f"{path} is not an absolute path", param_hint=name)
    layout = install.Layout(prefix=prefix, ocf_root=ocf_root, destdir=destdir)
    try:
        if uninstall:
            removed, kept = install.uninstall(layout)
            for path in removed:
                click.echo(f"removed {path}")
            for path in kept:
                click.echo(f"kept {path}: changed since it was installed; remove it by hand", err=True)
            if not removed and not kept:
                click.echo("nothing to remove: no install manifest found")
            return
        for path in install.install(layout):
            click.echo(f"installed {path}")
    except (install.InstallError, PermissionError) as exc:
        raise click.ClickException(str(exc)) from None
    blocked = install.not_readable_by_all(Path(sys.executable))
    if blocked is not None:
        click.echo(
            f"warning: {blocked} is not readable by all users; Pacemaker and ocf-tester "
            "cannot run the agents with this interpreter. Install highlander into an "
            "environment outside any home directory (see README.rst).",
            err=True,
        )


@main.command("demo-chain")
@click.option("--listen", default="127.0.0.1:26657", show_default=True, help="HOST:PORT to serve /status on.")
@click.option(
    "--block-time", type=click.FloatRange(min=0.01), default=1.0, show_default=True, help="Seconds per block."
)
@click.option(
    "--catch-up",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds to report catching_up=true after start.",
)
@click.option("--network", default="highlander-demo", show_default=True, help="Chain id to report.")
def demo_chain_command(listen: str, block_time: float, catch_up: float, network: str) -> None:
    """Serve a synthetic chain's CometBFT-style /status (a demo daemon)."""
    from highlander.drill.chain import serve

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint="--listen")
    try:
        serve(host or "127.0.0.1", int(port), block_time, catch_up, network)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror}") from None
