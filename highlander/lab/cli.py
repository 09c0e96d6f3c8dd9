"""``highlander lab up|status|exec|down`` and ``highlander demo``: the lab's commands.

The lab stands above the product, so the product's CLI does not import it:
these commands join ``highlander`` through the entry point group
``highlander.commands`` (see setup.cfg), like a plug-in would, and the drill
reaches the lab through ``highlander.sites`` (:func:`highlander.lab.site.open_site`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from highlander.lab.records import LabError, lab_directory
from highlander.lab.stacks import DEFAULT as DEFAULT_STACK
from highlander.lab.stacks import STACKS

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The lab's directory (state, logs, node disks).  [default: $HIGHLANDER_LAB_DIR or /var/lib/highlander-lab]",
)


def _root() -> None:
    if os.geteuid() != 0:
        raise click.ClickException("the lab creates namespaces and starts Pacemaker: run it as root")


@click.group()
def lab() -> None:
    """A real three-node Pacemaker/Corosync trio (active, standby, witness)
    in Linux namespaces on this machine, with simulated IPMI BMCs."""


@lab.command()
@click.option(
    "--inventory",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="The lab inventory.  [default: examples/lab.yml]",
)
@dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=10),
    default=300,
    show_default=True,
    help="Seconds until the validator must run.",
)
@click.option(
    "--configure/--no-configure",
    default=True,
    show_default=True,
    help="Install the nodes' configuration; --no-configure boots them without it (only the BMC "
    "password files) and returns once they answer SSH, for the Ansible rollout.",
)
@click.option(
    "--stack",
    type=click.Choice(STACKS),
    default=DEFAULT_STACK,
    show_default=True,
    help="highlander: ours. stock: fence_ipmilan and ocf:heartbeat:anything running the signer "
    "unguarded (the benchmark's reference). unguarded: ours with fencing, the sign-state "
    "gate and the signer's guard off (the negative control). Both others are NOT safe.",
)
@click.option(
    "--workload",
    type=click.Choice(["chain", "demo-signer"]),
    default="chain",
    show_default=True,
    help="chain: a real CometBFT network (kvstore), our validator signing through highlander privval "
    "on node-a and node-b, three FilePV validators on hosts of their own. demo-signer: the "
    "synthetic signer of the journals under ocf:highlander:validator.",
)
def up(
    inventory: Path | None, directory: Path | None, timeout: float, configure: bool, stack: str, workload: str
) -> None:
    """Build the lab and wait until the validator runs (cleans up an earlier run first)."""
    from highlander.adapters.runner import CommandError
    from highlander.inventory import InventoryError
    from highlander.lab import lifecycle, stacks

    _root()
    if stack != DEFAULT_STACK and not configure:
        raise click.UsageError("--stack needs the lab's configuration: drop --no-configure")
    directory = lab_directory(directory)
    try:
        state = lifecycle.up(directory, inventory, click.echo, timeout=timeout, configure=configure, workload=workload)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; the lab was taken down") from None
    except (LabError, InventoryError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        stacks.apply(directory, stack, click.echo, timeout=timeout)
    except (LabError, stacks.StackError, CommandError, TimeoutError) as exc:
        raise click.ClickException(
            f"the {stack} stack did not settle: {exc}; the lab is still up, in an "
            "unknown state: take it down (highlander lab down)"
        ) from None
    timings = state.get("timings", {})
    if not configure:
        click.echo(
            f"lab up in {state.get('up_seconds')} s, unconfigured: the nodes answer SSH "
            f"(ip netns exec {state['plan']['switch']} ssh -F {state['plan']['directory']}/ssh/ssh_config "
            "node-a); corosync waits for its configuration (ansible/site.yml)"
        )
        return
    click.echo(
        f"lab up in {state.get('up_seconds')} s (quorate after {timings.get('quorate')} s, validator "
        f"after {timings.get('validator')} s). Try: highlander lab status; highlander lab exec node-a -- crm_mon -1"
    )


@lab.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(directory: Path | None, as_json: bool) -> None:
    """crm_mon from a running node, the stack it runs, each node's power and each BMC's."""
    from highlander.lab import controls, stacks

    _root()
    try:
        directory = lab_directory(directory)
        report = {**controls.status(directory), "stack": stacks.current(directory)}
    except LabError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"lab {report['run_id']} in {report['directory']}: {report['phase']}, stack {report['stack']}, "
        f"supervisor {report['supervisor'] or 'not running'}, switch {report['switch']}"
    )
    for name, node in report["nodes"].items():
        bmc = node["bmc_power"] + ("" if node["bmc_running"] else ", simulator not running")
        click.echo(f"  {name:8} {node['role']:8} {node['address']:15} {node['state']:8} BMC {node['bmc']} power {bmc}")
    click.echo(report["crm_mon"] or "(no node answers crm_mon)")


@lab.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@dir_option
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(directory: Path | None, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside NODE (its network, mounts, host name and PIDs): lab exec node-a -- crm_mon -1"""
    from highlander.lab.controls import node_runner

    _root()
    if command and command[0] == "--":  # click keeps the separator with ignore_unknown_options
        command = command[1:]
    if not command:
        raise click.UsageError("give the command to run after --")
    try:
        runner = node_runner(lab_directory(directory), node)
    except LabError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        completed = subprocess.run([*runner.prefix, *command], env=runner.env, check=False)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(completed.returncode)


@lab.command()
@dir_option
def down(directory: Path | None) -> None:
    """Stop everything of the lab: processes, namespaces, mounts, veths."""
    from highlander.lab import lifecycle

    _root()
    done, left = lifecycle.down(lab_directory(directory))
    for line in done:
        click.echo(line)
    if left:
        raise click.ClickException("left behind: " + "; ".join(left))
    click.echo("the lab is down: nothing of it is left" if done else "no lab was running")


@click.command("demo")
def demo_command() -> None:
    """Show Pacemaker recovering a crashed validator on a one-node cluster (root)."""
    import signal

    from highlander.lab import demo

    if os.geteuid() != 0:
        raise click.ClickException("the demo creates namespaces and starts Pacemaker: run it as root")
    # SIGTERM unwinds like Ctrl-C, so the cluster is stopped either way.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        demo.run(click.echo)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; everything the demo started is stopped") from None
    except Exception as exc:
        raise click.ClickException(str(exc)) from None
