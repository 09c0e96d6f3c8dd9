"""The drill report's picture: each iteration's failover on one time axis.

One self-contained HTML page (inline SVG and CSS, nothing fetched, no
script) so a report directory can be copied anywhere and still be read. Per
iteration: one lane per node, the signatures as marks coloured by signer
(node, epoch), the moments the drill measured as labelled vertical lines,
the phases between them as shaded bands, and the seconds relative to the
failure (``cut``). Records of other scenarios may lack any of these: what is
missing is simply not drawn.

Signature rows are ``[node, epoch, height, time]``; rows that go on with
``round, step, digest`` let the picture ring each double sign (one mark
signed with two digests). Otherwise the record's ``double_signs`` count,
in red in the header, is all there is to show.

On a chain the record's ``blocks`` (``[height, time, ours]``) get a lane of
their own: a square per committed height at its block time, filled where
our validator's signature is in the commit, hollow where it is absent,
grey where it voted nil; the header adds the blocks missed.

A failed iteration says why and links the folder of its evidence (a path
relative to the report, which the page sits in); each unasked move of the
validator between iterations, and evidence of a double sign found on the
chain between them, gets a framed section of its own, before the iteration
it preceded.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

WIDTH, LEFT, RIGHT, LANE, ROW = 960, 110, 30, 30, 13
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
MOMENTS = (  # record field, label, colour
    ("last_signature_before", "last signature", "#555"),
    ("cut", "failure", "#d62728"),
    ("fence_request", "fence request", "#ff7f0e"),
    ("fenced", "fence done", "#8c564b"),
    ("promoted", "validator promoted", "#9467bd"),
    ("first_signature_after", "first signature after", "#2ca02c"),
)
CHAIN_LANE = "chain"
BLOCK = {
    "committed": ("#2ca02c", "#2ca02c"),
    "nil": ("#bbb", "#888"),
    "absent": ("#fff", "#d62728"),
    "none": ("#fff", "#bbb"),
}  # fill, stroke
BANDS = (
    ("detection", "cut", "fence_request", "#fde0c5"),
    ("fencing", "fence_request", "fenced", "#f6cccc"),
    ("promotion", "fenced", "promoted", "#e4dcf2"),
)
STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}
section{border:1px solid #ccc;margin:0 0 1.5em;padding:.2em .8em}section.alarm{border:3px solid #d62728}
h2{font-size:1.1em}.ok{color:#2ca02c;font-weight:bold}.bad{color:#d62728;font-weight:bold}
svg{max-width:100%;height:auto}svg text{font-size:11px}pre{background:#f6f6f6;padding:.8em}"""


def _time(value: Any) -> float | None:
    """A moment as epoch seconds: a number, or a signature's dict with a ``time``."""
    if isinstance(value, dict):
        value = value.get("time")
    return float(value) if isinstance(value, (int, float)) else None


def _moments(record: dict[str, Any]) -> dict[str, float]:
    return {key: t for key, _, _ in MOMENTS if (t := _time(record.get(key))) is not None}


def _nodes(record: dict[str, Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    named = [record.get(k) for k in ("target", "new_node", "promoted_on")]
    named += [
        v.get("node")
        for k in ("last_signature_before", "first_signature_after")
        if isinstance(v := record.get(k), dict)
    ]
    return sorted({str(n) for n in named if n} | {str(row[0]) for row in rows})


def _conflicts(rows: Sequence[Sequence[Any]]) -> set[int]:
    """Indexes of rows whose (height, round, step) was signed with more than one digest."""
    digests: dict[tuple[Any, ...], set[Any]] = defaultdict(set)
    for row in rows:
        if len(row) >= 7:
            digests[(row[2], row[4], row[5])].add(row[6])
    return {i for i, row in enumerate(rows) if len(row) >= 7 and len(digests[(row[2], row[4], row[5])]) > 1}


@dataclass(frozen=True)
class Axis:
    """Seconds relative to ``origin``, from ``lo`` to ``hi``, onto the drawing's x."""

    origin: float
    lo: float
    hi: float

    @classmethod
    def around(cls, times: Sequence[float], origin: float | None) -> Axis:
        start = origin if origin is not None else min(times, default=0.0)
        rel = [t - start for t in times] + [0.0]
        lo, hi = min(rel), max(rel)
        pad = max((hi - lo) * 0.03, 0.5)
        return cls(start, lo - pad, hi + pad)

    def x(self, t: float) -> float:
        return round(LEFT + (t - self.origin - self.lo) / (self.hi - self.lo) * (WIDTH - LEFT - RIGHT), 1)

    def ticks(self) -> list[float]:
        raw = (self.hi - self.lo) / 10
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
        first = math.ceil(self.lo / step)
        return [round(k * step, 6) for k in range(first, math.floor(self.hi / step) + 1)]


def _text(x: float, y: float, text: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return f'<text x="{x}" y="{y}"{extra}>{escape(text)}</text>'


def _svg(record: dict[str, Any]) -> str:
    rows = [row for row in record.get("signatures") or [] if len(row) >= 4 and _time(row[3]) is not None]
    blocks = [b for b in record.get("blocks") or [] if len(b) >= 3 and _time(b[1]) is not None]
    moments, nodes = _moments(record), _nodes(record, rows) + ([CHAIN_LANE] if blocks else [])
    times = list(moments.values()) + [float(row[3]) for row in rows] + [float(b[1]) for b in blocks]
    axis = Axis.around(times, moments.get("cut"))
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sorted({(str(r[0]), int(r[1])) for r in rows}))}
    top = ROW * len(MOMENTS) + 8
    bottom = top + LANE * max(len(nodes), 1)
    lane = {node: top + LANE * i + LANE / 2 for i, node in enumerate(nodes)}
    bands = [
        (name, moments[a], moments[b], fill)
        for name, a, b, fill in BANDS
        if a in moments and b in moments and moments[a] <= moments[b]
    ]
    size = f'width="{WIDTH}" height="{bottom + 62}" viewBox="0 0 {WIDTH} {bottom + 62}"'
    legend = [(f"{n} epoch {e}", c) for (n, e), c in colour.items()] + [(b[0], b[3]) for b in bands]
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" {size} role="img">',
            *(
                f'<rect x="{axis.x(t0)}" y="{top}" width="{round(axis.x(t1) - axis.x(t0), 1)}" height="{bottom - top}" '
                f'fill="{fill}"><title>{escape(name)}: {t1 - t0:.2f} s</title></rect>'
                for name, t0, t1, fill in bands
            ),
            *_lanes(lane),
            *_marks(axis, rows, lane, colour),
            *_blocks(axis, blocks, lane.get(CHAIN_LANE, 0.0)),
            *_moment_lines(axis, moments, bottom),
            *_ticks(axis, bottom, "cut" in moments),
            *_legend(bottom + 40, legend),
            "</svg>",
        ]
    )


def _lanes(lane: dict[str, float]) -> list[str]:
    return [
        part
        for node, y in lane.items()
        for part in (
            f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#bbb"/>',
            _text(LEFT - 8, y + 4, node, text_anchor="end"),
        )
    ]


def _marks(
    axis: Axis, rows: Sequence[Sequence[Any]], lane: dict[str, float], colour: dict[tuple[str, int], str]
) -> list[str]:
    """A tick per signature in its signer's colour, a red ring on each double sign."""
    out, conflicts = [], _conflicts(rows)
    for i, row in enumerate(rows):
        x, y, signer = axis.x(float(row[3])), lane[str(row[0])], (str(row[0]), int(row[1]))
        tip = escape(f"{signer[0]} epoch {signer[1]} height {row[2]} at {float(row[3]) - axis.origin:+.3f} s")
        out.append(
            f'<line x1="{x}" y1="{y - 8}" x2="{x}" y2="{y + 8}" stroke="{colour[signer]}" '
            f'stroke-width="2"><title>{tip}</title></line>'
        )
        if i in conflicts:
            out.append(
                f'<circle cx="{x}" cy="{y}" r="9" fill="none" stroke="#d62728" stroke-width="3">'
                f"<title>double sign: {tip}</title></circle>"
            )
    return out


def _blocks(axis: Axis, blocks: Sequence[Sequence[Any]], y: float) -> list[str]:
    """A square per height of the chain: our signature committed, nil or absent."""
    out = []
    for height, when, ours, *_ in blocks:
        fill, stroke = BLOCK.get(str(ours), BLOCK["none"])
        x = axis.x(float(when))
        tip = escape(f"height {height} at {float(when) - axis.origin:+.3f} s: our signature {ours}")
        out.append(
            f'<rect x="{x - 4}" y="{y - 4}" width="8" height="8" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="1.5"><title>{tip}</title></rect>'
        )
    return out


def _moment_lines(axis: Axis, moments: dict[str, float], bottom: float) -> list[str]:
    """A dashed line per moment, its label on a row of its own so close moments stay legible."""
    out = []
    for row_index, (key, label, stroke) in enumerate(MOMENTS):
        if key in moments:
            x, y, left = axis.x(moments[key]), ROW * (row_index + 1), axis.x(moments[key]) < WIDTH * 0.7
            out.append(f'<line x1="{x}" y1="{y + 2}" x2="{x}" y2="{bottom}" stroke="{stroke}" stroke-dasharray="4 2"/>')
            rel = f"{label} {moments[key] - axis.origin:+.2f} s"
            out.append(_text(x + 3 if left else x - 3, y, rel, fill=stroke, text_anchor="start" if left else "end"))
    return out


def _ticks(axis: Axis, bottom: float, from_cut: bool) -> list[str]:
    out = [f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#222"/>']
    for tick in axis.ticks():
        x = axis.x(axis.origin + tick)
        out.append(f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 5}" stroke="#222"/>')
        out.append(_text(x, bottom + 17, f"{tick:g}", text_anchor="middle"))
    out.append(_text(LEFT - 8, bottom + 17, "s from failure" if from_cut else "s", text_anchor="end"))
    return out


def _legend(y: float, items: Sequence[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    x = float(LEFT)
    for label, fill in items:
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{fill}"/>')
        out.append(_text(x + 14, y, label))
        x += 24 + 7 * len(label)
    return out


def _header(scenario: str, number: Any, record: dict[str, Any]) -> str:
    ok = '<span class="ok">ok</span>' if record.get("ok") else '<span class="bad">FAILED</span>'
    doubles = record.get("double_signs", 0) or 0
    shown = f'<span class="bad">{escape(str(doubles))}</span>' if doubles else "0"
    route = f"{record.get('target') or '?'} \N{RIGHTWARDS ARROW} {record.get('new_node') or '?'}"
    why = ""
    if not record.get("ok"):
        what = record.get("error") or "; ".join(record.get("failed_expectations") or [])
        why = f'\n<p class="bad">{escape(what)}</p>' if what else ""
    missed = ""
    if record.get("missed_blocks"):
        counts = [str((record.get(k) or {}).get("missed", "?")) for k in ("missed_blocks", "missed_after_detection")]
        missed = f" &#183; missed blocks {escape(counts[0])} ({escape(counts[1])} after the fence request)"
    signs = "evidence against our validator" if "chain" in record else "double signs"
    return (
        f"<h2>{escape(str(record.get('scenario') or scenario))}, iteration {escape(str(number))}</h2>\n"
        f"<p>{escape(route)} &#183; {ok} &#183; {signs} {shown}{missed}</p>{why}{_evidence(record)}"
    )


def _evidence(item: dict[str, Any]) -> str:
    folder = item.get("evidence")
    if not folder:
        return ""
    return f'\n<p>evidence: <a href="{escape(folder)}/">{escape(folder)}</a></p>'


def _finding(finding: dict[str, Any]) -> str:
    """An unasked move: from where to where, the operations the logs show, whether the drill stopped;
    or evidence of a double sign the chain committed."""
    if finding.get("kind") == "evidence":
        items = "".join(
            f"<li>{escape(str(e.get('kind')))} for height {escape(str(e.get('vote_height')))} round "
            f"{escape(str(e.get('vote_round')))}, committed at height {escape(str(e.get('height')))}</li>"
            for e in finding.get("found") or []
        )
        return (
            f'<section class="alarm">\n<h2>evidence of a double sign by our validator before iteration '
            f"{escape(str(finding.get('before_iteration')))}</h2>\n<ul>{items}</ul>\n"
            f'<p class="bad">the drill stopped</p>{_evidence(finding)}\n</section>'
        )

    def nodes(key: str) -> str:
        return ", ".join(finding.get(key) or []) or "no node"

    operations = "".join(f"<li>{escape(line)}</li>" for line in finding.get("operations") or [])
    stopped = f'\n<p class="bad">the drill stopped: {escape(finding["reason"])}</p>' if finding.get("reason") else ""
    return (
        f'<section class="alarm">\n<h2>unasked move before iteration '
        f"{escape(str(finding.get('before_iteration')))}</h2>\n"
        f"<p>left on {escape(nodes('left_on'))}, then on {escape(nodes('now_on'))}</p>\n"
        f"<ul>{operations}</ul>{stopped}{_evidence(finding)}\n</section>"
    )


def page(
    scenario: str, iterations: Sequence[dict[str, Any]], table: str, findings: Sequence[dict[str, Any]] = ()
) -> str:
    """The whole HTML document: a figure per iteration (each unasked move before
    the iteration it preceded), then the summary ``table``."""
    figures = []
    for i, record in enumerate(iterations, 1):
        number = record.get("iteration", i)
        figures += [_finding(f) for f in findings if f.get("before_iteration") == number]
        alarm = ' class="alarm"' if record.get("double_signs") else ""
        figures.append(f"<section{alarm}>\n{_header(scenario, number, record)}\n{_svg(record)}\n</section>")
    shown = {record.get("iteration", i) for i, record in enumerate(iterations, 1)}
    figures += [_finding(f) for f in findings if f.get("before_iteration") not in shown]
    title = f"{escape(scenario)} drill"
    head = f'<head>\n<meta charset="utf-8">\n<title>{title}</title>\n<style>\n{STYLE}\n</style>\n</head>'
    body = "\n".join([f"<h1>{title}</h1>", *figures, f"<pre>{escape(table)}</pre>"])
    return f'<!DOCTYPE html>\n<html lang="en">\n{head}\n<body>\n{body}\n</body>\n</html>\n'
