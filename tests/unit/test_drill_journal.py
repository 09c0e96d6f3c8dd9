"""The journal checker on hand-made journals: it must catch what it exists to catch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from highlander.cli import main
from highlander.drill.journal import JournalError, check_journals, parse_journal
from highlander.signstate.register import HRS

KEY = "chain-1/validator"


def line(
    height: int, step: int, digest: str, node: str = "node-a", epoch: int = 1, time: float = 0.0, round_: int = 0
) -> str:
    return (
        json.dumps(
            {
                "key": KEY,
                "height": height,
                "round": round_,
                "step": step,
                "digest": digest,
                "node": node,
                "epoch": epoch,
                "time": time or height + step / 10,
                "signature": "c2ln",
            }
        )
        + "\n"
    )


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(lines))
    return path


def test_a_clean_failover_has_no_double_sign(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", line(1, 1, "a1"), line(1, 2, "a2"), line(1, 3, "a3"), line(2, 1, "b1"))
    b = write(tmp_path / "b.jsonl", line(5, 1, "c1", "node-b", 2), line(5, 2, "c2", "node-b", 2))
    report = check_journals([a, b])
    assert report.ok
    assert report.entries == 6
    assert not report.double_signs and not report.regressions and not report.truncated
    assert [(s.node, s.epoch, s.count, s.first.hrs, s.last.hrs) for s in report.signers] == [
        ("node-a", 1, 4, HRS(1, 0, 1), HRS(2, 0, 1)),
        ("node-b", 2, 2, HRS(5, 0, 1), HRS(5, 0, 2)),
    ]


def test_a_double_sign_across_journals_is_found(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", line(7, 1, "aa"), line(7, 2, "ab"))
    b = write(tmp_path / "b.jsonl", line(7, 2, "bb", "node-b", 2), line(7, 3, "bc", "node-b", 2))
    report = check_journals([a, b])
    assert not report.ok
    [double] = report.double_signs
    assert (double.key, double.hrs) == (KEY, HRS(7, 0, 2))
    assert {(e.node, e.digest, e.where) for e in double.entries} == {
        ("node-a", "ab", f"{a}:2"),
        ("node-b", "bb", f"{b}:1"),
    }
    assert "DOUBLE SIGN" in "\n".join(report.lines())


def test_the_command_exits_1_on_a_double_sign(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", line(7, 2, "ab"))
    b = write(tmp_path / "b.jsonl", line(7, 2, "bb", "node-b", 2))
    result = CliRunner().invoke(main, ["check-journals", str(a), str(b)])
    assert result.exit_code == 1, result.output
    assert f"DOUBLE SIGN of {KEY} at 7/0/2" in result.output
    result = CliRunner().invoke(main, ["check-journals", "--json", str(a), str(b)])
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["ok"] is False
    assert [(d["height"], d["step"]) for d in document["double_signs"]] == [(7, 2)]


def test_the_command_exits_0_without_a_double_sign(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", line(7, 2, "ab"), line(8, 1, "ac"))
    result = CliRunner().invoke(main, ["check-journals", "--json", str(a)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True


def test_the_same_digest_twice_is_not_a_double_sign(tmp_path: Path) -> None:
    """A retry of the same vote (same sign bytes) signs nothing new."""
    a = write(tmp_path / "a.jsonl", line(3, 1, "5a5e"))
    b = write(tmp_path / "b.jsonl", line(3, 1, "5a5e", "node-b", 2))
    report = check_journals([a, b])
    assert report.ok and not report.double_signs


def test_other_keys_at_the_same_mark_are_not_a_double_sign(tmp_path: Path) -> None:
    other = json.loads(line(3, 1, "bb"))
    other["key"] = "chain-1/other"
    a = write(tmp_path / "a.jsonl", line(3, 1, "aa"), json.dumps(other) + "\n")
    assert check_journals([a]).ok


def test_a_regression_within_one_signer_is_reported(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", line(4, 1, "a"), line(4, 3, "b"), line(4, 2, "c"), line(4, 2, "c"))
    report = check_journals([a])
    assert report.ok  # a regression is not a double sign by itself
    assert [(r.previous.hrs, r.entry.hrs, r.entry.line) for r in report.regressions] == [
        (HRS(4, 0, 3), HRS(4, 0, 2), 3),
        (HRS(4, 0, 2), HRS(4, 0, 2), 4),  # not strictly above either
    ]
    assert "regression of node-a epoch 1" in "\n".join(report.lines())


def test_signers_are_checked_each_on_its_own(tmp_path: Path) -> None:
    """Epoch 2 of the same node starts lower than epoch 1 ended: two signers, no regression."""
    a = write(
        tmp_path / "a.jsonl",
        line(9, 1, "a", time=10.0),
        line(5, 1, "b", epoch=2, time=11.0),
        line(6, 1, "c", epoch=2, time=12.0),
    )
    report = check_journals([a])
    assert not report.regressions
    assert [(s.epoch, s.count) for s in report.signers] == [(1, 1), (2, 2)]


def test_gaps_are_the_longest_pauses_across_journals(tmp_path: Path) -> None:
    a = write(
        tmp_path / "a.jsonl", line(1, 1, "a", time=100.0), line(1, 2, "b", time=100.5), line(1, 3, "c", time=101.0)
    )
    b = write(tmp_path / "b.jsonl", line(3, 1, "d", "node-b", 2, time=105.0), line(3, 2, "e", "node-b", 2, time=105.2))
    report = check_journals([a, b], top_gaps=2)
    assert [(g.seconds, g.before.hrs, g.after.hrs, g.after.node) for g in report.gaps] == [
        (4.0, HRS(1, 0, 3), HRS(3, 0, 1), "node-b"),
        (0.5, HRS(1, 0, 1), HRS(1, 0, 2), "node-a"),
    ]
    assert "4.000 s between 1/0/3 by node-a epoch 1" in "\n".join(report.lines())


def test_a_truncated_last_line_is_reported_and_ignored(tmp_path: Path) -> None:
    cut = line(2, 1, "b")[:40]  # a power cut in the middle of the write
    a = write(tmp_path / "a.jsonl", line(1, 1, "a"), cut)
    report = check_journals([a])
    assert report.ok
    assert report.entries == 1
    assert report.truncated == (f"{a}:2",)
    assert f"truncated last line ignored: {a}:2" in report.lines()


def test_a_complete_last_line_without_its_newline_counts(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", line(1, 1, "a"), line(2, 1, "b").rstrip("\n"))
    report = check_journals([a])
    assert report.entries == 2 and not report.truncated


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json\n", "not a JSON line"),
        ("[1, 2]\n", "not a JSON object"),
        ('{"key": "c/k"}\n', "missing height, round, step, digest, node, epoch, time, signature"),
        (line(1, 4, "a"), "step must be 1, 2 or 3"),
        (line(1, 1, "XYZ"), "digest must be lower-case hex"),
        (line(0, 1, "a"), "height must be an integer of at least 1"),
        ("\n", "not a JSON line"),
    ],
)
def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    a = write(tmp_path / "a.jsonl", line(1, 1, "a"), bad, line(2, 1, "b"))
    with pytest.raises(JournalError, match=rf"^{a}:2: .*{message}"):
        check_journals([a])
    result = CliRunner().invoke(main, ["check-journals", str(a)])
    assert result.exit_code == 2
    assert f"{a}:2:" in result.output


def test_a_malformed_but_complete_last_line_is_an_error(tmp_path: Path) -> None:
    """Only a line cut short may be ignored; a whole line that is wrong is not a power cut."""
    with pytest.raises(JournalError, match=r"x:2: missing"):
        parse_journal(line(1, 1, "a") + '{"key": "c/k"}', "x")


def test_a_missing_journal_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-journals", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "nope.jsonl: cannot read" in result.output
