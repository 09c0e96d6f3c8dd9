"""Problems as data: what an operator reads is the messages, one per line,
each in its file; what code reads is the code and the path."""

from __future__ import annotations

import pytest

from highlander.problems import Problem, ProblemError

FIRST = Problem("TEST_FIRST", "nodes[0].name", "nodes[0].name: not a lower-case host name ('A')")
SECOND = Problem("TEST_SECOND", "", "(top level): expected a mapping")


def test_a_problem_reads_as_its_message_in_its_source() -> None:
    assert str(FIRST) == "nodes[0].name: not a lower-case host name ('A')"
    assert str(FIRST.within("/etc/trio.yml")) == "/etc/trio.yml: nodes[0].name: not a lower-case host name ('A')"
    assert FIRST.within("/etc/trio.yml").within("/x").source == "/x"


def test_an_error_reads_as_every_message_and_keeps_the_data() -> None:
    error = ProblemError([FIRST, SECOND])
    assert str(error) == f"{FIRST.message}\n{SECOND.message}"
    assert error.messages == [FIRST.message, SECOND.message]
    assert error.codes == {"TEST_FIRST", "TEST_SECOND"}
    assert [(p.code, p.path) for p in error.problems] == [("TEST_FIRST", "nodes[0].name"), ("TEST_SECOND", "")]


def test_within_keeps_the_kind_of_error() -> None:
    class Kind(ProblemError, ValueError):
        pass

    moved = Kind([FIRST, SECOND]).within("f.yml")
    assert type(moved) is Kind
    assert moved.messages == [f"f.yml: {FIRST.message}", f"f.yml: {SECOND.message}"]
    with pytest.raises(ValueError, match="^f.yml: nodes"):
        raise moved
