"""The operator's description of the trio (YAML), loaded and checked."""

from __future__ import annotations

from pathlib import Path

from highlander.inventory.model import Inventory, InventoryError, parse

__all__ = ["Inventory", "InventoryError", "load"]


def load(path: Path) -> Inventory:
    """Read and check an inventory file; InventoryError names every problem."""
    import yaml

    from highlander.inventory import loader

    try:
        document = loader.read(path)
    except OSError as exc:
        raise InventoryError([f"{path}: cannot read: {exc.strerror}"]) from None
    except loader.Refused as exc:
        raise InventoryError([f"{path}: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InventoryError([f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    try:
        return parse(document)
    except InventoryError as exc:
        raise InventoryError([f"{path}: {problem}" for problem in exc.problems]) from None
