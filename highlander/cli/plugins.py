"""What is installed above the product and joins its CLI: entry point groups.

The lab (namespaces, simulated BMCs, the one-node demo) stands above the
product and uses it, so the product never imports it. It registers its
commands and its drill site under the groups below in its package metadata
(setup.cfg ``[options.entry_points]``); the CLI finds them there. Installed
without them, ``highlander`` has no ``lab`` or ``demo`` command and the drill
runs on a real cluster only.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

# Sub-commands of ``highlander``: name = "module:click command".
COMMANDS = "highlander.commands"
# Where ``highlander drill`` runs without --inventory: name = "module:callable(directory, say) -> Site".
SITES = "highlander.sites"


def installed(group: str) -> dict[str, EntryPoint]:
    """The entry points of ``group`` by name (the first one wins, as on PATH)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=group):
        found.setdefault(entry.name, entry)
    return found


def load(group: str, name: str) -> Any | None:
    """The object ``name`` of ``group`` registers, imported now; None if none does."""
    entry = installed(group).get(name)
    return None if entry is None else entry.load()
