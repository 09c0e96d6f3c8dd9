"""``highlander check-journals``: what the signers' journals prove, in pure functions.

Each ``demo-signer`` appends one JSON line per signature (see
:mod:`highlander.drill.signer`). Across all journals of a run this finds:

- **double signs**: the same key signed the same height/round/step with
  different digests — the one thing highlander exists to prevent;
- **regressions**: a signer (node, epoch) whose marks do not strictly
  increase in its own journal;
- **gaps**: the longest pauses in signing, all journals merged by time —
  how long a failover left the chain without this validator's votes.

A last line cut short (a power cut in the middle of a write) is reported
and ignored; any other line that is not a journal entry is an error that
names file:line, since a checker that skips what it cannot read proves
nothing.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from highlander.signstate.register import HRS

FIELDS = ("key", "height", "round", "step", "digest", "node", "epoch", "time", "signature")
HEX = frozenset("0123456789abcdef")


class JournalError(ValueError):
    """A journal cannot be read or holds a line that is not an entry."""


@dataclass(frozen=True)
class Entry:
    """One signature, and where it was journalled."""

    file: str
    line: int
    key: str
    hrs: HRS
    digest: str
    node: str
    epoch: int
    time: float
    signature: str

    @property
    def signer(self) -> tuple[str, int]:
        return self.node, self.epoch

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, object]:
        h, r, s = self.hrs
        return {
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "height": h,
            "round": r,
            "step": s,
            "digest": self.digest,
            "node": self.node,
            "epoch": self.epoch,
            "time": self.time,
        }

    def describe(self) -> str:
        return f"{self.hrs} by {self.node} epoch {self.epoch} ({self.where})"


@dataclass(frozen=True)
class DoubleSign:
    """Different digests signed at one mark of one key."""

    key: str
    hrs: HRS
    entries: tuple[Entry, ...]  # every signature at that mark, in journal order

    def to_dict(self) -> dict[str, object]:
        h, r, s = self.hrs
        return {"key": self.key, "height": h, "round": r, "step": s, "entries": [e.to_dict() for e in self.entries]}

    def describe(self) -> str:
        signed = "; ".join(f"digest {e.digest[:16]} by {e.node} epoch {e.epoch} ({e.where})" for e in self.entries)
        return f"DOUBLE SIGN of {self.key} at {self.hrs}: {signed}"


@dataclass(frozen=True)
class Regression:
    """A signer's mark that is not above its previous one in its journal."""

    previous: Entry
    entry: Entry

    def to_dict(self) -> dict[str, object]:
        return {"previous": self.previous.to_dict(), "entry": self.entry.to_dict()}

    def describe(self) -> str:
        return (
            f"regression of {self.entry.node} epoch {self.entry.epoch} in {self.entry.file}: "
            f"{self.entry.hrs} (line {self.entry.line}) after {self.previous.hrs} (line {self.previous.line})"
        )


@dataclass(frozen=True)
class Gap:
    """No signature between ``before`` and ``after``, all journals merged."""

    seconds: float
    before: Entry
    after: Entry

    def to_dict(self) -> dict[str, object]:
        return {"seconds": self.seconds, "before": self.before.to_dict(), "after": self.after.to_dict()}

    def describe(self) -> str:
        return f"{self.seconds:.3f} s between {self.before.describe()} and {self.after.describe()}"


@dataclass(frozen=True)
class SignerSummary:
    """One signer's run: (node, epoch) in one journal."""

    file: str
    node: str
    epoch: int
    count: int
    first: Entry
    last: Entry

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "node": self.node,
            "epoch": self.epoch,
            "count": self.count,
            "first": self.first.to_dict(),
            "last": self.last.to_dict(),
        }

    def describe(self) -> str:
        return (
            f"{self.node} epoch {self.epoch}: {self.count} signatures, {self.first.hrs} .. {self.last.hrs} "
            f"({self.file})"
        )


@dataclass(frozen=True)
class Report:
    files: tuple[str, ...]
    entries: int
    signers: tuple[SignerSummary, ...]
    double_signs: tuple[DoubleSign, ...]
    regressions: tuple[Regression, ...]
    gaps: tuple[Gap, ...]  # longest first
    truncated: tuple[str, ...] = field(default=())  # file:line of each ignored last line

    @property
    def ok(self) -> bool:
        """True when no key was ever signed twice at one mark."""
        return not self.double_signs

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "files": list(self.files),
            "entries": self.entries,
            "signers": [s.to_dict() for s in self.signers],
            "double_signs": [d.to_dict() for d in self.double_signs],
            "regressions": [r.to_dict() for r in self.regressions],
            "gaps": [g.to_dict() for g in self.gaps],
            "truncated": list(self.truncated),
        }

    def lines(self) -> list[str]:
        out = [f"{len(self.files)} journals, {self.entries} signatures by {len(self.signers)} signers"]
        out += [f"  signer {s.describe()}" for s in self.signers]
        out += [f"truncated last line ignored: {where}" for where in self.truncated]
        out += [d.describe() for d in self.double_signs]
        out += [r.describe() for r in self.regressions]
        if self.gaps:
            out.append("longest gaps in signing:")
            out += [f"  {g.describe()}" for g in self.gaps]
        if self.double_signs:
            out.append(f"FAILED: {len(self.double_signs)} double signs")
        else:
            out.append(f"OK: no double sign; {len(self.regressions)} regressions")
        return out


# -- reading ------------------------------------------------------------------


def parse_entry(document: object, file: str, line: int) -> Entry:
    """One journal line's JSON, checked field by field."""
    where = f"{file}:{line}"
    if not isinstance(document, dict):
        raise JournalError(f"{where}: not a JSON object")
    missing = [name for name in FIELDS if name not in document]
    if missing:
        raise JournalError(f"{where}: missing {', '.join(missing)}")

    def integer(name: str, minimum: int) -> int:
        value = document[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise JournalError(f"{where}: {name} must be an integer of at least {minimum}, got {value!r}")
        return value

    def text(name: str) -> str:
        value = document[name]
        if not isinstance(value, str) or not value:
            raise JournalError(f"{where}: {name} must be a non-empty string, got {value!r}")
        return value

    hrs = HRS(integer("height", 1), integer("round", 0), integer("step", 1))
    if hrs.step > 3:
        raise JournalError(f"{where}: step must be 1, 2 or 3, got {hrs.step}")
    digest = text("digest")
    if not set(digest) <= HEX:
        raise JournalError(f"{where}: digest must be lower-case hex, got {digest!r}")
    when = document["time"]
    if not isinstance(when, (int, float)) or isinstance(when, bool):
        raise JournalError(f"{where}: time must be a number, got {when!r}")
    return Entry(
        file, line, text("key"), hrs, digest, text("node"), integer("epoch", 0), float(when), text("signature")
    )


def parse_journal(data: bytes | str, file: str) -> tuple[list[Entry], str | None]:
    """The entries of one journal, and file:line of a cut-short last line
    (ignored) or None. Raises :class:`JournalError` on any other bad line."""
    if isinstance(data, str):
        data = data.encode()
    entries: list[Entry] = []
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the journal ends with a newline, as it should
    for number, line in enumerate(lines, start=1):
        try:
            document = json.loads(line.decode())
        except ValueError as exc:  # UnicodeDecodeError too
            raise JournalError(f"{file}:{number}: not a JSON line ({exc})") from None
        entries.append(parse_entry(document, file, number))
    if tail:
        number = len(lines) + 1
        try:
            document = json.loads(tail.decode())
        except ValueError:  # a write cut short: it was never fsync'ed
            return entries, f"{file}:{number}"
        entries.append(parse_entry(document, file, number))  # complete but for its newline
    return entries, None


def read_journals(paths: Iterable[Path | str]) -> tuple[list[Entry], list[str], list[str]]:
    """(entries, files, truncated) of every journal in ``paths``."""
    entries: list[Entry] = []
    files: list[str] = []
    truncated: list[str] = []
    for path in paths:
        name = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise JournalError(f"{name}: cannot read: {exc.strerror}") from None
        found, cut = parse_journal(data, name)
        entries += found
        files.append(name)
        if cut:
            truncated.append(cut)
    return entries, files, truncated


# -- checking -----------------------------------------------------------------


def double_signs(entries: Iterable[Entry]) -> list[DoubleSign]:
    """Every mark of a key signed with more than one digest."""
    at: dict[tuple[str, HRS], list[Entry]] = defaultdict(list)
    for entry in entries:
        at[entry.key, entry.hrs].append(entry)
    return [
        DoubleSign(key, hrs, tuple(found))
        for (key, hrs), found in sorted(at.items())
        if len({e.digest for e in found}) > 1
    ]


def regressions(entries: Iterable[Entry]) -> list[Regression]:
    """Per journal and signer, every mark not strictly above the one before it."""
    previous: dict[tuple[str, str, int, str], Entry] = {}
    found = []
    for entry in sorted(entries, key=lambda e: (e.file, e.line)):
        slot = (entry.file, entry.node, entry.epoch, entry.key)
        before = previous.get(slot)
        if before is not None and entry.hrs <= before.hrs:
            found.append(Regression(before, entry))
        previous[slot] = entry
    return found


def gaps(entries: Iterable[Entry], top: int = 5) -> list[Gap]:
    """The ``top`` longest pauses between consecutive signatures by time."""
    ordered = sorted(entries, key=lambda e: (e.time, e.file, e.line))
    pauses = [Gap(b.time - a.time, a, b) for a, b in itertools.pairwise(ordered)]
    pauses.sort(key=lambda g: (-g.seconds, g.before.time))
    return pauses[: max(top, 0)]


def signers(entries: Sequence[Entry]) -> list[SignerSummary]:
    """Each (journal, node, epoch), in the order it first signed."""
    runs: dict[tuple[str, str, int], list[Entry]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: (e.file, e.line)):
        runs[entry.file, entry.node, entry.epoch].append(entry)
    summaries = [SignerSummary(f, n, e, len(run), run[0], run[-1]) for (f, n, e), run in runs.items()]
    summaries.sort(key=lambda s: (s.first.time, s.file))
    return summaries


def check(
    entries: Sequence[Entry], files: Sequence[str] = (), truncated: Sequence[str] = (), top_gaps: int = 5
) -> Report:
    return Report(
        files=tuple(files),
        entries=len(entries),
        signers=tuple(signers(entries)),
        double_signs=tuple(double_signs(entries)),
        regressions=tuple(regressions(entries)),
        gaps=tuple(gaps(entries, top_gaps)),
        truncated=tuple(truncated),
    )


def check_journals(paths: Iterable[Path | str], top_gaps: int = 5) -> Report:
    """Read and check every journal; raises :class:`JournalError` on a bad line."""
    entries, files, truncated = read_journals(paths)
    return check(entries, files, truncated, top_gaps)
