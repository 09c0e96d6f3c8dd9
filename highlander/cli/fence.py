"""``highlander fence NODE``: fence by hand, with the cluster's own agents."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from highlander.commands.fence import OPERATOR_ACTIONS
from highlander.inventory.model import FenceDevice

DEFAULT_INVENTORY = Path("/etc/highlander/inventory.yml")


@click.command()
@click.argument("node")
@click.option("--action", type=click.Choice(OPERATOR_ACTIONS), required=True, help="What to do to NODE's power.")
@click.option(
    "--inventory",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_INVENTORY,
    show_default=True,
    help="Where NODE's fence devices are described.",
)
@click.option(
    "--method",
    type=click.Choice(["ipmi", "ilo_ssh", "redfish"]),
    help="Fence through this device instead of the inventory's (with --ip, --username ...).",
)
@click.option("--ip", help="The device's address (with --method).")
@click.option("--ipport", type=click.IntRange(1, 65535), help="The device's port (with --method).")
@click.option("--username", help="The device's user (with --method).")
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="File holding the device's password (otherwise asked for).",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="An agent option for the device given with --method (repeatable).",
)
@click.option(
    "--metrics-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Count the outcome in highlander_fence.prom in this directory (node_exporter's textfile "
    "collector), as the agents' metrics_dir option does.",
)
@click.option("--via-cluster", is_flag=True, help="Ask Pacemaker (stonith_admin) instead of the devices.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def fence(
    node: str,
    action: str,
    inventory: Path,
    method: str | None,
    ip: str | None,
    ipport: int | None,
    username: str | None,
    password_file: Path | None,
    options: tuple[str, ...],
    metrics_dir: Path | None,
    via_cluster: bool,
    yes: bool,
) -> None:
    """Fence NODE: power it off, on, reboot it, or read its power status.

    Directly through its fence devices (tried in the inventory's order, so
    it works while the cluster is down), or with --via-cluster through
    Pacemaker. After a direct power-off it prints the stonith_admin line
    that tells the cluster the node is down.
    """
    from highlander.commands import fence as commands

    if via_cluster:
        if metrics_dir is not None:
            raise click.UsageError(
                "--metrics-dir counts fencing done here; with --via-cluster the cluster's "
                "devices count it with their own metrics_dir option"
            )
        if action != "status" and not yes:
            click.confirm(f"Ask the cluster to {action} {node}?", abort=True)
        from highlander.adapters.runner import CommandRunner

        code, output = commands.fence_via_cluster(CommandRunner(), node, action)
        click.echo(output)
        sys.exit(code)

    devices = _devices(node, inventory, method, ip, ipport, username, options)
    if action != "status" and not yes:
        where = ", then ".join(f"{d.agent} at {d.address}" for d in devices)
        click.confirm(f"Power {action} {node} through {where}?", abort=True)

    def password_for(device: FenceDevice) -> str | None:
        if password_file is not None:
            lines = password_file.read_text().splitlines()
            return lines[0] if lines else ""
        if device.password_file:
            return None  # the agent reads it itself (password_script)
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"the password of {device.username}@{device.address} is an Ansible Vault variable "
                f"({device.password_vault}); give it with --password-file"
            )
        return click.prompt(f"Password of {device.username}@{device.address}", hide_input=True)

    attempts = commands.fence_directly(node, devices, action, password_for, metrics_dir)
    for attempt in attempts:
        if attempt.succeeded:
            verdict = "answered" if action == "status" else "verified"
        else:
            verdict = f"failed (exit {attempt.code})"
        click.echo(f"{node} via {attempt.device.agent} at {attempt.device.address}: {verdict}")
        for line in attempt.output.splitlines():
            click.echo(f"  {line}")
    last = attempts[-1]
    if not last.succeeded:
        raise click.ClickException(f"no fence device of {node} could {action} it")
    if action == "off":
        click.echo(
            f"{node} is powered off. Pacemaker does not know it yet; once you are sure, tell it:\n"
            f"  stonith_admin --confirm {node}"
        )
    sys.exit(last.code)


def _devices(
    node: str,
    inventory: Path,
    method: str | None,
    ip: str | None,
    ipport: int | None,
    username: str | None,
    options: tuple[str, ...],
) -> tuple[FenceDevice, ...]:
    """The devices to try: the one described by options, or the inventory's."""
    from highlander.inventory import InventoryError, load
    from highlander.inventory.model import DEFAULT_FENCE_PORTS

    if method:
        if not ip or not username:
            raise click.UsageError("--method needs --ip and --username")
        pairs = dict(o.split("=", 1) for o in options if "=" in o)
        if len(pairs) != len(options):
            raise click.BadParameter("expected NAME=VALUE", param_hint="--option")
        return (FenceDevice(method, ip, ipport or DEFAULT_FENCE_PORTS[method], username, options=pairs),)
    try:
        found = load(inventory).node(node).fence
    except InventoryError as exc:
        raise click.ClickException(f"{exc}\n(or describe the device with --method, --ip, --username)") from None
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    if not found:
        raise click.ClickException(f"{node} has no fence device in {inventory}")
    return found
