"""Strict JSON: what json.loads reads the same way, and a clear refusal of
what it reads ambiguously (repeated keys), unsafely (deep nesting) or
outside JSON (NaN, Infinity, non-UTF-8 bytes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlander.strictjson import MAX_DEPTH, JSONInputError, loads

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
DOCUMENTS = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=30
)


@given(DOCUMENTS)
def test_reads_what_json_writes_as_json_reads_it(document: Any) -> None:
    for text in (json.dumps(document), json.dumps(document, indent=2, ensure_ascii=False)):
        assert loads(text) == json.loads(text)
        assert loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 1}', 'field "a" appears more than once'),
        ('{"a": {"b": [0, {"c": 1, "d": 2, "c": 3}]}}', 'field "a.b[1].c" appears more than once'),
        ('[{"x": 1}, {"x": 1, "x": 2}]', 'field "[1].x" appears more than once'),
        ('{"a": NaN}', "not valid JSON: NaN is not allowed"),
        ("[-Infinity]", "not valid JSON: -Infinity is not allowed"),
        ('{"a": 1', "not valid JSON: Expecting ',' delimiter at line 1 column 8"),
        ("", "not valid JSON: Expecting value at line 1 column 1"),
        (
            "1" * 5000,
            "not valid JSON: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits",
        ),
        (
            "\n  " + "[" * 100_000 + "]" * 100_000,
            f"nested deeper than {MAX_DEPTH} levels at line 2 column {MAX_DEPTH + 3}",
        ),
    ],
)
def test_refusals_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(JSONInputError) as caught:
        loads(text)
    assert str(caught.value) == message


def test_not_utf8() -> None:
    with pytest.raises(JSONInputError, match="^not valid UTF-8: invalid start byte at byte 7$"):
        loads(b'{"a": "\xff"}')


def test_nesting_up_to_the_limit_is_read_and_brackets_in_strings_do_not_count() -> None:
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads(deepest) == json.loads(deepest)
    assert loads('["' + "[{" * 1000 + '\\"[["]') == ["[{" * 1000 + '"[[']
    with pytest.raises(JSONInputError, match="nested deeper"):
        loads("[" + deepest + "]")
    assert loads("[" + deepest + "]", max_depth=MAX_DEPTH + 1)


def test_is_a_value_error() -> None:
    assert issubclass(JSONInputError, ValueError)
