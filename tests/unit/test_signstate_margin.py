"""The one rule for the mark a state file is raised to after a promotion
(used by the validator agent and by ``highlander signstate export``)."""

from __future__ import annotations

import pytest

from highlander.commands.signstate import raised_mark, render_state
from highlander.signstate import formats
from highlander.signstate.register import HRS, ZERO


@pytest.mark.parametrize(
    ("hwm", "margin", "raised"),
    [
        (HRS(40, 0, 3), 5, HRS(45, 0, 3)),
        (HRS(7, 1, 2), 3, HRS(10, 0, 3)),
        (HRS(7, 1, 2), 0, HRS(7, 1, 2)),  # no margin: the mark itself
        (ZERO, 5, ZERO),  # nothing signed yet: nothing to stay clear of
    ],
)
def test_the_raised_mark(hwm: HRS, margin: int, raised: HRS) -> None:
    assert raised_mark(hwm, margin) == raised


@pytest.mark.parametrize("kind", ["cometbft", "tmkms"])
def test_every_raised_mark_can_be_written_as_a_state_file(kind: str) -> None:
    mark = raised_mark(HRS(7, 1, 2), 3)
    parse = formats.parse_cometbft if kind == "cometbft" else formats.parse_tmkms
    assert parse(render_state(kind, mark)).hrs == mark
