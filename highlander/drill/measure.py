"""The phases of one failover, from Pacemaker's logs and the signers' journals.

Pacemaker's detail log (``/var/log/pacemaker/pacemaker.log``) stamps each line
``Nov 22 01:38:33.881 node-a pacemaker-controld [110] (...) notice: ...`` in
local time with milliseconds; the journals stamp each signature with
``time.time()`` on the same host, so both are on one clock.

A failover of ``target`` reads, all nodes' logs merged:

- fence request: ``Requesting fencing (reboot) of node T`` (the DC's
  controller) or ``wants to fence (reboot) T`` (its fencer);
- fence done: ``Peer T was terminated (...) ...: OK`` or ``Operation '...'
  targeting T by ... : OK``;
- promotion: ``Result of start operation for validator on N: ok`` on N != T
  (the start returns once the signer runs, so its first signature can come
  a little before this line: the signing gap is the journals' own measure).

The scenarios that are not a failover read other lines:

- a restart in place (the signer killed): ``Result of monitor operation for
  validator on N: not running`` (the monitor saw it), then ``Result of start
  operation for validator on N: ok`` (recovered on the same node);
- a loss of quorum: ``Quorum lost`` on the surviving node, then ``Result of
  stop operation for validator on N: ok`` (no-quorum-policy=stop);
- a fencing attempt that failed: ``Fence operation <n> for T failed: ...``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from highlander.drill.journal import Entry

STAMP = re.compile(r"^([A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?) (\S+) ")


@dataclass(frozen=True)
class LogLine:
    time: float
    node: str
    text: str


def parse_log_line(line: str, year: int) -> LogLine | None:
    """A Pacemaker detail-log line with its time (epoch seconds, local time), or None."""
    match = STAMP.match(line)
    if not match:
        return None
    stamp = " ".join(match.group(1).split())
    fmt = "%Y %b %d %H:%M:%S.%f" if "." in stamp else "%Y %b %d %H:%M:%S"
    try:
        when = datetime.datetime.strptime(f"{year} {stamp}", fmt).timestamp()
    except ValueError:
        return None
    return LogLine(when, match.group(2), line.rstrip("\n"))


def parse_log(text: str, year: int) -> list[LogLine]:
    return [parsed for line in text.splitlines() if (parsed := parse_log_line(line, year)) is not None]


def _first(lines: Iterable[LogLine], after: float, pattern: re.Pattern[str]) -> LogLine | None:
    found = [line for line in lines if line.time >= after and pattern.search(line.text)]
    return min(found, key=lambda line: line.time, default=None)


@dataclass(frozen=True)
class ClusterEvents:
    """When the cluster asked to fence ``target``, when that was done, and
    when the validator started elsewhere (None: not in the logs)."""

    fence_request: LogLine | None
    fenced: LogLine | None
    promoted: LogLine | None

    @property
    def new_node(self) -> str | None:
        if self.promoted is None:
            return None
        match = re.search(r"operation for \S+ on (\S+): ok", self.promoted.text)
        return match.group(1) if match else None


def _result(operation: str, resource: str) -> str:
    """The start of Pacemaker's line for a result of ``operation`` on ``resource``
    (a clone's instance may carry its number)."""
    return rf"Result of {operation} operation for {re.escape(resource)}(?::\d+)? on"


def cluster_events(
    lines: Sequence[LogLine], target: str, since: float, resource: str = "validator", operation: str = "start"
) -> ClusterEvents:
    t = re.escape(target)
    request = _first(
        lines, since, re.compile(rf"Requesting fencing \(\w+\) of node {t}\b|wants to fence \(\w+\) {t}\b")
    )
    fenced = None
    if request is not None:
        fenced = _first(
            lines,
            request.time,
            re.compile(
                rf"Peer {t} was terminated \(\w+\) by \S+ on behalf of \S+: OK|Operation '\w+' targeting {t} by \S+ for \S+: OK"
            ),
        )
    promoted = _first(
        lines,
        fenced.time if fenced else since,
        re.compile(rf"{_result(operation, resource)} (?!{t}:)\S+: ok"),
    )
    return ClusterEvents(request, fenced, promoted)


@dataclass(frozen=True)
class RestartEvents:
    """A resource restarted in place on ``node``: when its monitor failed and
    when it started again there (None: not in the logs)."""

    failed: LogLine | None
    started: LogLine | None


def restart_events(
    lines: Sequence[LogLine], node: str, since: float, resource: str = "validator", operation: str = "start"
) -> RestartEvents:
    """``operation`` is what makes the resource serve again (a promotable one's: promote)."""
    where = re.escape(node)
    failed = _first(lines, since, re.compile(rf"{_result('monitor', resource)} {where}: (?!ok\b|Cancelled\b)"))
    started = None
    if failed is not None:
        started = _first(lines, failed.time, re.compile(rf"{_result(operation, resource)} {where}: ok\b"))
    return RestartEvents(failed, started)


def first_start(
    lines: Sequence[LogLine], since: float, resource: str = "validator", operation: str = "start"
) -> LogLine | None:
    """The first successful start (or ``operation``) of ``resource`` on any node since ``since``."""
    return _first(lines, since, re.compile(rf"{_result(operation, resource)} \S+: ok\b"))


@dataclass(frozen=True)
class QuorumLoss:
    """``node`` lost quorum and stopped ``resource`` (None: not in the logs)."""

    lost: LogLine | None
    stopped: LogLine | None


def quorum_loss(lines: Sequence[LogLine], node: str, since: float, resource: str = "validator") -> QuorumLoss:
    own = [line for line in lines if line.node == node]
    lost = _first(own, since, re.compile(r"\bQuorum lost\b"))
    stopped = _first(own, since, re.compile(rf"{_result('stop', resource)} {re.escape(node)}: ok\b"))
    return QuorumLoss(lost, stopped)


def placement_changes(lines: Iterable[LogLine], resource: str = "validator") -> list[LogLine]:
    """Every start, stop, promotion or demotion of ``resource`` on any node, in
    time order, each once (the executing node and the DC may both log one
    result, told apart by its ``call=`` number): between drill iterations,
    where nothing was asked, each one is an unasked move or restart."""
    pattern = re.compile(
        rf"Result of (?:start|stop|promote|demote) operation for {re.escape(resource)}(?::\d+)? "
        rf"on (\S+): [^|]*(?:\|.*\bcall=(\d+))?"
    )
    seen: dict[tuple[str, ...], LogLine] = {}
    for line in sorted(lines, key=lambda line: line.time):
        match = pattern.search(line.text)
        if match:
            seen.setdefault((match.group(0).split("|")[0].strip(), match.group(2) or str(line.time)), line)
    return list(seen.values())


def fence_failures(lines: Iterable[LogLine], target: str, since: float) -> int:
    """Failed fencing operations against ``target`` since ``since`` (the controller retries
    each; after stonith-max-attempts it gives up until the next recheck)."""
    pattern = re.compile(rf"Fence operation \d+ for {re.escape(target)} failed\b")
    return sum(1 for line in lines if line.time >= since and pattern.search(line.text))


def between(a: float | None, b: float | None) -> float | None:
    """Seconds from ``a`` to ``b``, rounded to the millisecond; None if either is unknown."""
    return None if a is None or b is None else round(b - a, 3)


@dataclass(frozen=True)
class SigningGap:
    last_before: Entry | None  # the last signature at or before the cut
    first_after: Entry | None  # the first signature after it, by another node

    @property
    def seconds(self) -> float | None:
        if self.last_before is None or self.first_after is None:
            return None
        return self.first_after.time - self.last_before.time


def signing_gap(entries: Iterable[Entry], cut: float, target: str | None) -> SigningGap:
    """The last signature at or before ``cut`` and the first after it by a node
    other than ``target`` (by any node when ``target`` is None: a restart in place)."""
    entries = list(entries)
    before = [e for e in entries if e.time <= cut]
    after = [e for e in entries if e.time > cut and e.node != target]
    return SigningGap(
        max(before, key=lambda e: e.time, default=None),
        min(after, key=lambda e: e.time, default=None),
    )


def largest_gap(entries: Iterable[Entry], start: float, end: float) -> SigningGap:
    """The longest pause between consecutive signatures (all nodes merged by
    time) that overlaps ``[start, end]``: the signature just before ``start``
    counts, so a pause across the failure is seen. Both ends None: fewer than
    two signatures."""
    ordered = sorted(entries, key=lambda e: e.time)
    pairs = [(a, b) for a, b in zip(ordered, ordered[1:]) if b.time > start and a.time <= end]
    if not pairs:
        return SigningGap(None, None)
    a, b = max(pairs, key=lambda pair: pair[1].time - pair[0].time)
    return SigningGap(a, b)


def signature_rows(entries: Iterable[Entry], start: float, end: float) -> list[list[Any]]:
    """``[node, epoch, height, time]`` of every signature in ``[start, end]``, by
    time: what a timeline of the drill is drawn from."""
    inside = sorted((e for e in entries if start <= e.time <= end), key=lambda e: e.time)
    return [[e.node, e.epoch, e.hrs.height, e.time] for e in inside]


def signed_after(entries: Iterable[Entry], node: str, since: float) -> list[Entry]:
    """Signatures by ``node`` later than ``since`` (a frozen or cut node must have none)."""
    return [e for e in entries if e.node == node and e.time > since]


def overlapping_signers(entries: Iterable[Entry], since: float) -> int:
    """Dual-active moments in the journals: pairs of signers (node, epoch) on
    different nodes whose signing spans after ``since`` overlap in time."""
    spans: dict[tuple[str, int], list[float]] = {}
    for e in entries:
        if e.time > since:
            span = spans.setdefault(e.signer, [e.time, e.time])
            span[0], span[1] = min(span[0], e.time), max(span[1], e.time)
    items = sorted(spans.items())
    return sum(
        1
        for i, (a, (a0, a1)) in enumerate(items)
        for (b, (b0, b1)) in items[i + 1 :]
        if a[0] != b[0] and a0 <= b1 and b0 <= a1
    )


def phases(cut: float, events: ClusterEvents, gap: SigningGap) -> dict[str, Any]:
    """Seconds of each phase (None where an end was not seen)."""
    request = events.fence_request.time if events.fence_request else None
    fenced = events.fenced.time if events.fenced else None
    promoted = events.promoted.time if events.promoted else None
    first = gap.first_after.time if gap.first_after else None
    return {
        "detection": between(cut, request),
        "fencing": between(request, fenced),
        "promotion": between(fenced, promoted),
        "signing_gap": None if gap.seconds is None else round(gap.seconds, 3),
        "total": between(cut, first),
    }
