"""Reading an inventory file into Python values, within bounds.

YAML can say far more than an inventory needs, and some of it is dangerous
to accept from a file: an alias is a reference, so a few hundred bytes of
nested aliases ("billion laughs") describe billions of values, which any
code that walks or prints them expands. A repeated key silently replaces
the first one. Nesting is composed recursively, so a deep enough file
exhausts the interpreter's stack. The reader therefore refuses, each with
its place in the file:

- a file larger than :data:`MAX_SIZE` (an inventory is a few kilobytes);
- anchors, aliases and merge keys (``&a``, ``*a``, ``<<``): every value is
  written out where it is used;
- a key given twice in one mapping (its path and both lines);
- nesting deeper than :data:`MAX_DEPTH` levels;
- a scalar that Python cannot hold (a date that does not exist, an integer
  of thousands of digits), as an error at its line instead of a traceback.

Everything else is PyYAML's safe loader (plain data, no Python objects).
A refusal carries its problem (code, path where known, message).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from highlander.inventory import codes
from highlander.problems import Problem

MAX_SIZE = 1 << 20
MAX_DEPTH = 32
MERGE_TAG = "tag:yaml.org,2002:merge"
VALUE_TAG = "tag:yaml.org,2002:value"


class Refused(yaml.YAMLError):
    """Valid YAML that an inventory does not accept; ``problem`` says where and why."""

    def __init__(self, code: str, path: str, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(code, path, message)


def _position(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _path_text(parts: list[str]) -> str:
    return "".join(parts).lstrip(".")


def _node_text(node: Node) -> str:
    text = str(node.value) if isinstance(node, ScalarNode) else "(not a single value)"
    return text if len(text) <= 40 else text[:37] + "..."


class InventoryLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the refusals listed in the module docstring.

    The path of every node is tracked while composing, so that an error
    names the setting the way the inventory's own errors do
    (``nodes[1].fence[0].port``).
    """

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._path: list[str] = []

    def compose_node(self, parent: Node | None, index: object) -> Node:
        event = self.peek_event()
        if isinstance(parent, SequenceNode):
            part = f"[{index}]"
        elif isinstance(parent, MappingNode):
            part = f".{_node_text(index)}" if isinstance(index, Node) else ".(a key)"
        else:
            part = ""
        self._path.append(part)
        try:
            if isinstance(event, yaml.AliasEvent):
                raise self._no_anchors(event.start_mark, f"alias *{event.anchor}")
            if getattr(event, "anchor", None) is not None:
                raise self._no_anchors(event.start_mark, f"anchor &{event.anchor}")
            if len(self._path) > MAX_DEPTH:
                raise Refused(
                    codes.INVENTORY_TOO_DEEP,
                    _path_text(self._path),
                    f"{_position(event.start_mark)}: nested deeper than {MAX_DEPTH} levels; "
                    "an inventory needs a handful",
                )
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[object, ScalarNode] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode):
                continue  # refused when constructed: a mapping key must be a single value
            path = _path_text([*self._path, f".{_node_text(key)}"])
            where = path or "(top level)"
            if key.tag == MERGE_TAG:
                raise Refused(
                    codes.INVENTORY_YAML_MERGE_KEY,
                    path,
                    f"{where}: YAML merge keys are not accepted in an inventory: write the settings out in full",
                )
            # The key as loaded, so that 1 and 0x1 (or yes and true) are the same key.
            identity = key.value if key.tag == VALUE_TAG else self.construct_object(key)
            first = seen.setdefault(identity, key)
            if first is not key:
                raise Refused(
                    codes.INVENTORY_DUPLICATE_KEY,
                    path,
                    f"{where}: given twice (lines {first.start_mark.line + 1} and {key.start_mark.line + 1}): keep one",
                )
        return node

    def construct_object(self, node: Node, deep: bool = False) -> object:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {_node_text(node)!r} as {node.tag.rsplit(':', 1)[-1]}: {str(exc).split(';')[0]}",
                node.start_mark,
            ) from None

    def _no_anchors(self, mark: yaml.Mark, what: str) -> Refused:
        return Refused(
            codes.INVENTORY_YAML_ANCHOR,
            _path_text(self._path),
            f"{_position(mark)}: YAML anchors and aliases are not accepted in an inventory ({what}): "
            "write every value out in full",
        )


def read(path: Path) -> object:
    """The document in ``path`` as plain Python values.

    Raises OSError (cannot read), :class:`Refused` (an input the inventory
    does not accept) or yaml.YAMLError (not valid YAML).
    """
    with open(path, "rb") as handle:
        data = handle.read(MAX_SIZE + 1)
        if len(data) > MAX_SIZE:
            size = max(len(data), os.fstat(handle.fileno()).st_size)
            raise Refused(
                codes.INVENTORY_TOO_LARGE,
                "",
                f"{size} bytes; an inventory is a few kilobytes (at most {MAX_SIZE} bytes are read): "
                "is this the right file?",
            )
    loader = InventoryLoader(data)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
