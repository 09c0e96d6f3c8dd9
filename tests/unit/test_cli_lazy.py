"""The ``highlander`` command imports a sub-command's module only when it runs.

The validator agent starts ``highlander demo-signer`` during a promotion: that
start must not pay for the drills and the lab. ``--help`` must still list
every command, and a misspelt entry in the lazy table must fail here, not in
front of an operator.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from highlander.cli import LAZY_COMMANDS, main

ALL_COMMANDS = [
    "check-journals",
    "demo",
    "demo-chain",
    "demo-signer",
    "drill",
    "fence",
    "install",
    "lab",
    "privval",
    "render",
    "signstate",
]

# Resolve demo-signer in a fresh interpreter and print the heavy modules it pulled in:
# of the drills only the workload itself (the drill package's face, the signer, the chain).
PROBE = """
import sys
import click
from highlander.cli import main
command = main.get_command(click.Context(main), "demo-signer")
assert command is not None and command.name == "demo-signer", command
light = {"highlander.drill", "highlander.drill.signer", "highlander.drill.chain"}
heavy = ("highlander.drill.", "highlander.lab", "highlander.cli.drill")
print(" ".join(name for name in sorted(sys.modules) if name.startswith(heavy) and name not in light))
"""


def test_demo_signer_imports_neither_drills_nor_lab(tmp_path: Path) -> None:
    # cwd outside the source tree, so the probe imports the installed package.
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == []


def test_every_lazy_name_resolves_to_the_command_of_that_name() -> None:
    context = click.Context(main)
    for name in LAZY_COMMANDS:
        command = main.get_command(context, name)
        assert isinstance(command, click.Command), name
        assert command.name == name


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listing = result.output.split("Commands:\n", 1)[1]
    assert [line.split()[0] for line in listing.splitlines() if line.strip()] == ALL_COMMANDS
