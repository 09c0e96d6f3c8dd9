"""The ``highlander`` command imports a sub-command's module only when it runs.

The validator agent starts ``highlander demo-signer`` during a promotion: that
start must not pay for the drills and the lab. ``--help`` must still list
every command, and a misspelt entry in the lazy table must fail here, not in
front of an operator.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from highlander.cli import LAZY_COMMANDS, main, plugins

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


# --- the lab joins the CLI through entry points (highlander.cli.plugins) -------------------


def test_the_lab_commands_come_from_the_lab_package() -> None:
    from highlander.lab import cli as lab_cli

    context = click.Context(main)
    assert main.get_command(context, "lab") is lab_cli.lab
    assert main.get_command(context, "demo") is lab_cli.demo_command


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, points: list[EntryPoint]) -> None:
    """Installed metadata that holds exactly ``points``."""
    monkeypatch.setattr(plugins, "entry_points", lambda group: [p for p in points if p.group == group])


def test_without_the_lab_there_is_no_lab_command_and_the_drill_says_what_to_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, [])
    listing = CliRunner().invoke(main, ["--help"]).output.split("Commands:\n", 1)[1]
    assert [line.split()[0] for line in listing.splitlines() if line.strip()] == [
        name for name in ALL_COMMANDS if name not in ("lab", "demo")
    ]
    assert "No such command 'lab'" in CliRunner().invoke(main, ["lab", "status"]).output
    result = CliRunner().invoke(main, ["drill", "power-cut-active"])
    assert result.exit_code == 1
    assert (
        "no lab is installed here (no entry point 'lab' in highlander.sites): give the real cluster's --inventory"
        in (result.output)
    )


def test_a_plug_in_never_shadows_a_command_of_the_product(monkeypatch: pytest.MonkeyPatch) -> None:
    from highlander.cli.fence import fence

    fake_entry_points(
        monkeypatch,
        [
            EntryPoint(name="fence", value="highlander.lab.cli:lab", group=plugins.COMMANDS),
            EntryPoint(name="install", value="highlander.lab.cli:lab", group=plugins.COMMANDS),
        ],
    )
    context = click.Context(main)
    assert main.get_command(context, "fence") is fence
    assert main.get_command(context, "install").name == "install"
