"""What a lab run records in its directory, so that other processes find it.

The supervisor writes ``state.json`` (the plan, its own PID, the BMCs'
PIDs, the mount points it created, the phase) before or as it creates
anything, appends its progress to ``events.jsonl`` and logs to
``supervisor.log``; each node writes ``nodes/<node>/node.json`` (its init's
PID and PID namespace). ``lab status``, ``exec``, ``down`` and the drills
read these records, and a lab whose supervisor died is still cleaned up by
them: never by a name pattern.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from highlander.drill.site import SiteError
from highlander.lab.node import RECORD_FILE

DEFAULT_DIR = Path(os.environ.get("HIGHLANDER_LAB_DIR", "/var/lib/highlander-lab"))
STATE_FILE = "state.json"
EVENTS_FILE = "events.jsonl"
SUPERVISOR_LOG = "supervisor.log"


class LabError(SiteError):
    """The lab could not be built, reached or taken down; the message says why."""


def lab_directory(given: Path | None) -> Path:
    """The lab's directory: ``given`` (--dir), else $HIGHLANDER_LAB_DIR or the default, absolute."""
    return (given or DEFAULT_DIR).absolute()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return document


def read_state(directory: Path) -> dict[str, Any] | None:
    """The run's ``state.json``; None when there is none (or it is cut short)."""
    return _read(directory / STATE_FILE)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Replace ``state.json`` whole: a reader sees the old state or the new one."""
    path = directory / STATE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def read_node_record(directory: Path, name: str) -> dict[str, Any] | None:
    """Node ``name``'s record (its init's PID and PID namespace); None when there is none."""
    return _read(directory / "nodes" / name / RECORD_FILE)
