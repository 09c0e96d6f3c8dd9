"""What a failed drill iteration leaves behind: the cluster's own account of
it, kept before anything is taken down or the next iteration runs.

An iteration that fails (its expected outcome not met, a timeout, an error)
or an unasked move of the validator between iterations is understood only
from what the cluster said at that moment: the scheduler's scores and fail
counts change with the next transition and a lab taken down takes its logs
with it. So the drill copies, into one folder of the report directory:

``drill.log``
    the drill's own timeline: its progress lines, timestamped, and the error
    (with its traceback) if one stopped the iteration;
``record.json``
    the iteration's record, or the finding, as far as it got;
``<node>/crm_mon.txt``
    ``crm_mon -1 -A -f -r``: resources (inactive ones too), fail counts,
    node attributes, as that node sees them;
``<node>/constraints.xml``
    ``cibadmin -Q -o constraints`` (a ``crm_resource --move`` shows here);
``<node>/cib.xml``
    the whole CIB with its status section: every operation's last result;
``<node>/scores.txt``
    ``crm_simulate -sL``: the allocation scores the scheduler works with;
``<node>/files/...``
    the node's logs under their own paths: Pacemaker's and Corosync's, the
    agents' and the signers' logs and the signing journals
    (:data:`NODE_FILES`), each the last :data:`MAX_BYTES` of it;
``site/...``
    what the site itself knows (the lab: its events, its supervisor's log,
    the BMCs' power events; a real cluster: each node's systemd journal of
    the cluster's units);
``index.json``
    what was collected and what could not be, with why.

A node that is powered off or does not answer costs a line in
``index.json``, never the rest of the evidence. Each site
(:meth:`highlander.drill.site.Site.collect`) gets its nodes' files its own
way; the commands and the layout are this module's.
"""

from __future__ import annotations

import datetime
import json
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from highlander.adapters.runner import Runs

# Run on every node that answers: its own view of the cluster.
NODE_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("crm_mon.txt", ("crm_mon", "-1", "-A", "-f", "-r")),
    ("constraints.xml", ("cibadmin", "-Q", "-o", "constraints")),
    ("cib.xml", ("cibadmin", "-Q")),
    ("scores.txt", ("crm_simulate", "-sL")),
)
# The files of a node worth keeping (absolute patterns, '*' allowed in the last part).
NODE_FILES = (
    "/var/log/pacemaker/pacemaker.log",
    "/var/log/corosync/corosync.log",
    "/var/log/highlander/*.log",
    "/var/log/highlander/journal-*.jsonl",
)
# The most of one file kept (its end): a cluster's log can be years long.
MAX_BYTES = 16 * 1024 * 1024
COMMAND_TIMEOUT = 30.0
INDEX = "index.json"


class Progress:
    """The drill's progress lines: passed on to ``say`` and kept with their time,
    so that a failure's evidence holds the drill's own timeline."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.lines: list[tuple[float, str]] = []

    def __call__(self, line: str) -> None:
        self.lines.append((time.time(), line))
        self.say(line)

    def since(self, start: float) -> list[tuple[float, str]]:
        return [(t, line) for t, line in self.lines if t >= start]


def stamp(t: float) -> str:
    """A moment as the local ISO time with milliseconds (Pacemaker's logs are local)."""
    return datetime.datetime.fromtimestamp(t).isoformat(timespec="milliseconds")


def node_commands(runner: Runs, folder: Path) -> list[str]:
    """:data:`NODE_COMMANDS` on one node, each output in ``folder``; what failed."""
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, argv in NODE_COMMANDS:
        result = runner.run(list(argv), timeout=COMMAND_TIMEOUT)
        if result.stdout:
            (folder / name).write_text(result.stdout)
        if not result.ok:
            problems.append(
                f"{folder.name}: {' '.join(argv)} exited with {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )
    return problems


def node_file(folder: Path, path: str) -> Path:
    """Where node file ``path`` is kept in the node's ``folder``."""
    return folder / "files" / path.lstrip("/")


def keep_bytes(destination: Path, data: bytes) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(data)


def tail(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The last ``limit`` bytes of a local file."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - limit))
        return f.read()


def write_index(folder: Path, what: str, problems: Sequence[str]) -> None:
    """``index.json``: what this folder is, every file in it, what could not be collected."""
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != INDEX)
    (folder / INDEX).write_text(
        json.dumps(
            {"what": what, "collected": stamp(time.time()), "files": files, "not_collected": list(problems)}, indent=2
        )
        + "\n"
    )


def write_drill_part(
    folder: Path, lines: Sequence[tuple[float, str]], record: dict[str, Any], error: BaseException | None
) -> None:
    """``drill.log`` (timeline and error) and ``record.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{stamp(t)} {line}\n" for t, line in lines)
    if error is not None:
        text += "".join(traceback.format_exception(error))
    (folder / "drill.log").write_text(text)
    (folder / "record.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
