"""JSON from a file or a peer, read strictly: one meaning per document or an error.

:func:`json.loads` takes the last of two equal keys (two readers of one
document can then disagree on what it says), accepts ``NaN`` and
``Infinity``, and parses nesting recursively, so a deep enough document
raises RecursionError from inside the parser. :func:`loads` refuses each of
these with a :class:`JSONInputError` whose message says what and where:

- ``field "block_id.parts.hash" appears more than once`` (the path of the key);
- ``not valid JSON: NaN is not allowed``;
- ``nested deeper than 32 levels at line 1 column 44``, found by a scan of
  the brackets before anything is parsed;
- ``not valid UTF-8: ... at byte N`` for bytes, and the parser's own
  message with line and column for anything else that is not JSON
  (``not valid JSON: Expecting value at line 1 column 1``).

Pure: no I/O. The state file formats use it; so can any reader of JSON
that crosses a trust boundary (the sign-state wire format).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32

# A JSON string (skipped whole, so that brackets inside it do not count) or a bracket.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class JSONInputError(ValueError):
    """A document that is not strict JSON; the message says what is wrong and where."""


class _Repeated(dict[str, Any]):
    """An object in which ``key`` appeared more than once (located after parsing)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


def _refuse_constant(name: str) -> Any:
    raise JSONInputError(f"not valid JSON: {name} is not allowed")


def _position(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return f"line {line} column {column}"


def _check_depth(text: str, max_depth: int) -> None:
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONInputError(f"nested deeper than {max_depth} levels at {_position(text, match.start())}")
        elif token in "]}":
            depth -= 1


def _repeated_path(value: Any, path: str = "") -> str | None:
    """The path of the first repeated key below ``value`` (the document is depth-bounded)."""
    if isinstance(value, _Repeated):
        return f"{path}{value.key}"
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = _repeated_path(child, f"{path}{key}." if isinstance(key, str) else f"{path.rstrip('.')}[{key}].")
        if found is not None:
            return found
    return None


def decode(data: bytes) -> str:
    """``data`` as UTF-8 text (the only encoding JSON between systems may use, RFC 8259)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of the JSON document ``data`` (bytes must be UTF-8); JSONInputError if not strict JSON."""
    text = decode(data) if isinstance(data, bytes) else data
    _check_depth(text, max_depth)
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        document: dict[str, Any] = {}
        for key, value in items:
            if key in document:
                repeated = True
                return _Repeated(key)
            document[key] = value
        return document

    try:
        document = json.loads(text, object_pairs_hook=pairs, parse_constant=_refuse_constant)
    except JSONInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # a number too long to convert
        raise JSONInputError(f"not valid JSON: {str(exc).split(';')[0]}") from None
    if repeated:
        raise JSONInputError(f'field "{_repeated_path(document)}" appears more than once')
    return document
