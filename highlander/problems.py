"""Problems as data: a stable code, the path of the bad value, and the sentence an operator reads.

A check that finds something wrong with an input describes it as a
:class:`Problem`:

- ``code``: a stable name for the kind of problem (``INVENTORY_DUPLICATE_KEY``),
  for programs that act on it (an OCF agent choosing its exit code) and for
  tests; each area keeps its codes as constants in one place
  (:mod:`highlander.inventory.codes`, :mod:`highlander.signstate.config`,
  :mod:`highlander.commands.render`);
- ``path``: where the bad value is inside the input, as the operator reads it
  (``nodes[1].addresses[0]``, ``peers.node-b``, ``node-a/cib.xml``); empty for
  the input as a whole (a file that cannot be read, a syntax error);
- ``message``: what an operator reads: the place in their words, what is
  wrong and the fix. It may be reworded; the code and the path are what
  code relies on;
- ``source``: the file (or other input) the value came from, if known.

A :class:`ProblemError` carries one or more problems, so a check that can
go on after the first reports every one at once. Its ``str()`` is the
problems' text, one per line: what the CLI and the agents print.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Self


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input."""

    code: str
    path: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message

    def within(self, source: object) -> Problem:
        """The same problem, found in ``source`` (the file the document was read from)."""
        return replace(self, source=str(source))


class ProblemError(Exception):
    """An input that cannot be used, with every problem found in it."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(map(str, self.problems)))

    @property
    def messages(self) -> list[str]:
        """What an operator reads, one line per problem."""
        return [str(problem) for problem in self.problems]

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(problem.code for problem in self.problems)

    def within(self, source: object) -> Self:
        """The same error, its problems found in ``source``."""
        return type(self)(problem.within(source) for problem in self.problems)
