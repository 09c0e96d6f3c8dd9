"""What a drilled cluster signs with, and where the drill sees it sign.

Two workloads, each one row of :data:`WORKLOADS`:

- ``demo-signer``: the synthetic validator under ``ocf:highlander:validator``
  (resource ``validator``); it signs where the resource is started, and each
  signature is a line of its journal (:mod:`highlander.drill.journal`),
  which is also the double-sign checker;
- ``chain``: a real CometBFT validator signing through ``highlander
  privval``, the promotable clone ``privval``; it signs where the clone is
  promoted, each signature is an ``event=signed`` line of that node's signer
  log (:func:`privval_entries`), and the checker is the chain itself
  (:mod:`highlander.drill.chain_check`);
- ``chain-stock``: the same chain's validator as people run it without
  highlander, CometBFT with FilePV under ``ocf:heartbeat:anything``
  (resource ``validator``); its signatures are our validator's commit
  signatures on the chain, which does not say which node made them.

Both give the drill the same :class:`~highlander.drill.journal.Entry` per
signature (node, epoch, height/round/step, time), so the phases, the
signing gap and the dual-active check are measured the same way.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass

from highlander.adapters.pacemaker import ClusterStatus
from highlander.drill.journal import Entry
from highlander.signstate.register import HRS


@dataclass(frozen=True)
class Workload:
    """How a drill finds the signing on a cluster."""

    name: str
    resource: str  # the Pacemaker primitive whose placement is where signing happens
    takeover: str  # the operation that makes a node sign: "start" or "promote"
    pidfile: str  # where the agent records the signer's PID on a node
    subcommand: str  # the signer's ``highlander`` subcommand
    signer_log: str | None  # the signer's log on each node (None: journals)
    companion: str | None = None  # a clone the signer serves, which must run on every active node

    @property
    def in_place(self) -> bool:
        """Whether a signer killed must sign again on its own node: a started
        resource is restarted there; of a promotable signer Pacemaker may
        promote the standby's instance instead, which runs already."""
        return self.takeover != "promote"

    def signing_on(self, status: ClusterStatus) -> tuple[str, ...]:
        """The nodes where the signer may sign now."""
        if self.takeover == "promote":
            return status.promoted_on(self.resource)
        return status.started_on(self.resource)

    def ready(self, status: ClusterStatus, actives: Sequence[str]) -> bool:
        """Whether the signing side is whole: one node signs and, for a
        promotable signer, an instance runs on every active node, ready to take over
        (and the companion, the chain's full node, runs there too)."""
        if len(self.signing_on(status)) != 1:
            return False
        if self.companion is not None and not set(status.clone_nodes(self.companion)) >= set(actives):
            return False
        return self.takeover != "promote" or set(status.instance_nodes(self.resource)) >= set(actives)

    def is_signer(self, argv: Sequence[str], node: str) -> bool:
        """Whether ``argv`` (a /proc cmdline, the interpreter first) is this
        workload's signer: ``.../highlander demo-signer ... --node <node>``, or
        ``python -m highlander privval ...``."""
        args = list(argv[1:])
        if self.subcommand == "demo-signer":
            return (
                len(args) > 2
                and args[0].rsplit("/", 1)[-1] == "highlander"
                and args[1] == "demo-signer"
                and any(a == "--node" and b == node for a, b in zip(args, args[1:]))
            )
        if self.subcommand == "privval":
            return args[:3] == ["-m", "highlander", self.subcommand]
        return bool(argv) and argv[0].rsplit("/", 1)[-1] == self.subcommand  # a program of its own

    @property
    def judged_by_the_chain_only(self) -> bool:
        """Whether only the chain sees its signatures (a signer without a log of its own)."""
        return self.name.startswith("chain") and self.signer_log is None


DEMO = Workload("demo-signer", "validator", "start", "/run/highlander/validator-validator.pid", "demo-signer", None)
CHAIN = Workload(
    "chain",
    "privval",
    "promote",
    "/run/highlander/privval.pid",
    "privval",
    "/var/log/highlander/privval.log",
    companion="cometbft",
)
# The stock stack on the chain: CometBFT with FilePV under ocf:heartbeat:anything, a cold standby.
# Its signatures are seen on the chain only, which does not say which node made them.
CHAIN_STOCK = Workload(
    "chain-stock", "validator", "start", "/run/resource-agents/anything_validator.pid", "cometbft", None
)
WORKLOADS = {w.name: w for w in (DEMO, CHAIN, CHAIN_STOCK)}

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_PROMOTED = re.compile(r"\bevent=promoted key=(\S+) epoch=(\d+)")
_SIGNED = re.compile(r"\bevent=signed key=(\S+) node=\S+ (\w+) at=(\d+)/(\d+)/(\d+)")


def log_time(line: str) -> float | None:
    """The local time a Python logging line starts with ("2026-12-07 10:32:07,787 ..."), as a UNIX time."""
    match = _STAMP.match(line)
    if match is None:
        return None
    moment = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    return moment.timestamp() + int(match.group(2)) / 1000


def privval_entries(text: str, node: str, where: str, lines_before: int = 0, epoch: int = 0) -> tuple[list[Entry], int]:
    """Every new signature in a ``highlander privval`` log of ``node``: its
    ``event=signed`` lines, each with the epoch of the promotion before it
    (``where`` names the log in the entries). ``text`` may continue a log
    read before: it starts after ``lines_before`` lines, at ``epoch``.
    Returns the entries and the epoch at the end of ``text``."""
    entries = []
    for number, line in enumerate(text.splitlines(), lines_before + 1):
        if (promoted := _PROMOTED.search(line)) is not None:
            epoch = int(promoted.group(2))
            continue
        signed = _SIGNED.search(line)
        when = log_time(line) if signed else None
        if signed is None or when is None:
            continue
        height, round_, step = (int(signed.group(i)) for i in (3, 4, 5))
        entries.append(Entry(where, number, signed.group(1), HRS(height, round_, step), "", node, epoch, when, ""))
    return entries, epoch
