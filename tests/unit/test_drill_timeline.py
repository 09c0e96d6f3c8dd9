"""The drill report's timeline picture: well-formed HTML and SVG whatever the
record lacks, every lane and marker drawn, every name escaped, and
``report.write`` writing it next to the JSON and the table."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from highlander.drill import report, timeline

CUT = 1_700_000_000.0
SVG = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "hr", "img", "input", "link"}


class Balanced(HTMLParser):
    """Fails on any end tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"


def failover(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "iteration": 1,
        "scenario": "power-cut-active",
        "target": "node-a",
        "new_node": "node-b",
        "cut": CUT,
        "fence_request": CUT + 3.1,
        "fenced": CUT + 4.0,
        "promoted": CUT + 6.5,
        "last_signature_before": {"node": "node-a", "time": CUT - 0.2},
        "first_signature_after": {"node": "node-b", "time": CUT + 6.2},
        "double_signs": 0,
        "dual_active": 0,
        "ok": True,
        "phases": {},
        "signatures": [["node-a", 1, 10, CUT - 0.2], ["node-b", 2, 23, CUT + 6.2]],
    }
    record.update(changes)
    return record


def check(html: str) -> list[ET.Element]:
    """The document's tags balance; each SVG parses as XML on its own."""
    parser = Balanced()
    parser.feed(html)
    parser.close()
    assert parser.open == []
    svgs = [ET.fromstring(svg) for svg in re.findall(r"<svg.*?</svg>", html, re.S)]
    assert svgs and all(svg.tag == f"{SVG}svg" for svg in svgs)
    return svgs


def texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


def test_a_failover_has_its_lanes_markers_bands_and_ticks() -> None:
    (svg,) = check(timeline.page("power-cut-active", [failover()], "the table"))
    shown = texts(svg)
    assert {"node-a", "node-b"} <= set(shown)
    for label in (
        "failure +0.00 s",
        "fence request +3.10 s",
        "fence done +4.00 s",
        "validator promoted +6.50 s",
        "first signature after +6.20 s",
    ):
        assert label in shown
    assert {"0", "2", "4", "6"} <= set(shown)  # ticks, in seconds from the failure
    bands = [t.text for t in svg.iter(f"{SVG}title") if t.text and t.text.startswith(("detection", "fencing"))]
    assert bands == ["detection: 3.10 s", "fencing: 0.90 s"]
    assert "node-b epoch 2" in shown  # the signer legend


def test_missing_moments_and_signatures_draw_what_is_there() -> None:
    bare = {
        "iteration": 2,
        "target": "node-w",
        "cut": None,
        "fence_request": None,
        "fenced": None,
        "promoted": None,
        "first_signature_after": None,
        "last_signature_before": None,
        "ok": False,
    }
    html = timeline.page("two-nodes-down", [bare, {}, failover(signatures=None, promoted=None)], "t")
    empty, nothing, partial = check(html)
    assert "node-w" in texts(empty) and not any("failure" in t for t in texts(empty))
    assert texts(nothing)  # an axis, even with nothing on it
    assert "failure +0.00 s" in texts(partial) and not any("promoted" in t for t in texts(partial))
    assert "FAILED" in html


def test_many_signatures_one_mark_each_coloured_by_signer() -> None:
    rows = [["node-a" if i < 100 else "node-b", 1 if i < 100 else 2, i // 3, CUT - 10 + i * 0.1] for i in range(300)]
    (svg,) = check(timeline.page("power-cut-active", [failover(signatures=rows)], ""))
    marks = [line for line in svg.iter(f"{SVG}line") if line.find(f"{SVG}title") is not None]
    assert len(marks) == 300
    assert len({m.get("stroke") for m in marks}) == 2


def test_every_name_is_escaped() -> None:
    evil = '<b>"node"&</b>'
    html = timeline.page("<scenario>", [failover(target=evil, signatures=[[evil, 1, 1, CUT]])], "a < b")
    (svg,) = check(html)
    assert evil in texts(svg)
    assert "<b>" not in html and "&lt;scenario&gt;" in html and "a &lt; b" in html


def test_double_signs_stand_out() -> None:
    counted = timeline.page("freeze-active", [failover(double_signs=2, ok=False)], "")
    check(counted)
    assert '<span class="bad">2</span>' in counted and '<section class="alarm">' in counted
    rows = [
        ["node-a", 1, 7, CUT - 1, 0, 2, "aa"],
        ["node-b", 2, 7, CUT + 1, 0, 2, "bb"],
        ["node-b", 2, 8, CUT + 2, 0, 1, "cc"],
    ]
    (svg,) = check(timeline.page("freeze-active", [failover(signatures=rows)], ""))
    rings = [c.find(f"{SVG}title") for c in svg.iter(f"{SVG}circle")]
    assert [r.text for r in rings if r is not None] == [
        "double sign: node-a epoch 1 height 7 at -1.000 s",
        "double sign: node-b epoch 2 height 7 at +1.000 s",
    ]


@pytest.mark.parametrize("lo, hi", [(0.0, 0.0), (-10.0, 40.0), (0.0, 1000.0)])
def test_ticks_are_few_and_inside_the_axis(lo: float, hi: float) -> None:
    axis = timeline.Axis.around([CUT + lo, CUT + hi], CUT)
    ticks = axis.ticks()
    assert 3 <= len(ticks) <= 12 and all(axis.lo <= t <= axis.hi for t in ticks)
    assert timeline.LEFT <= axis.x(CUT + lo) < axis.x(CUT + hi) or lo == hi


def test_report_write_adds_the_picture(tmp_path: Path) -> None:
    iterations = [failover(phases={p: 1.0 for p in report.PHASES})]
    summary = report.summarize(iterations, 8760.0)
    paths = report.write(tmp_path / "out", "power-cut-active", iterations, summary)
    assert [p.name for p in paths] == ["power-cut-active.json", "power-cut-active.txt", "power-cut-active.html"]
    html = paths[2].read_text(encoding="utf-8")
    check(html)
    assert f"<pre>{escape(report.table('power-cut-active', summary))}</pre>" in html


def test_the_chains_blocks_get_a_lane_with_our_signature_on_each() -> None:
    blocks = [[100 + i, CUT - 2 + i, "committed" if i < 2 or i > 8 else "absent"] for i in range(12)]
    record = failover(
        blocks=blocks, chain={"evidence": []}, missed_blocks={"missed": 7}, missed_after_detection={"missed": 4}
    )
    html = timeline.page("power-cut-active", [record], "")
    (svg,) = check(html)
    assert "chain" in texts(svg)
    squares = [t.text or "" for t in svg.iter(f"{SVG}title") if (t.text or "").startswith("height ")]
    assert len(squares) == 12 and sum("our signature absent" in s for s in squares) == 7
    assert "missed blocks 7 (4 after the fence request)" in html and "evidence against our validator 0" in html


def test_evidence_found_between_iterations_is_a_framed_section() -> None:
    finding = {
        "kind": "evidence",
        "before_iteration": 1,
        "heights": [42],
        "found": [{"kind": "tendermint/DuplicateVoteEvidence", "vote_height": 41, "vote_round": 0, "height": 42}],
        "evidence": "evidence/before-01-evidence",
    }
    html = timeline.page("power-cut-active", [], "t", [finding])
    assert 'class="alarm"' in html and "DuplicateVoteEvidence for height 41 round 0, committed at height 42" in html
    assert "the CHAIN COMMITTED EVIDENCE" in "\n".join(report.failures([], [finding]))
