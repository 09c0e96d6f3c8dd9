"""The operator's description of the trio (YAML), loaded and checked."""

from __future__ import annotations

from pathlib import Path

from highlander.inventory.model import Inventory, InventoryError, parse

__all__ = ["Inventory", "InventoryError", "load"]


def load(path: Path) -> Inventory:
    """Read and check an inventory file; InventoryError names every problem, each in ``path``."""
    import yaml

    from highlander.inventory import codes, loader
    from highlander.problems import Problem

    try:
        document = loader.read(path)
    except OSError as exc:
        text = f"cannot read: {exc.strerror}"
        raise InventoryError([Problem(codes.INVENTORY_UNREADABLE, "", text, str(path))]) from None
    except loader.Refused as exc:
        raise InventoryError([exc.problem.within(path)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1} " if mark else ""
        text = f"{where}not valid YAML: {getattr(exc, 'problem', exc)}"
        raise InventoryError([Problem(codes.INVENTORY_NOT_YAML, "", text, str(path))]) from None
    try:
        return parse(document)
    except InventoryError as exc:
        raise exc.within(path) from None
