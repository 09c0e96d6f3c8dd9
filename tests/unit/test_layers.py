"""The layers hold: the product never imports the lab or the demo, and no two packages import each other.

The lab (namespaces, simulators, the supervisor, the one-node demo) stands
above the product and uses it, like an operator would; the product must
run without it. Every module under ``highlander/`` is parsed (nothing is
imported or run) and each import, also one inside a function, becomes an
arrow between the packages right below ``highlander`` (``commands``,
``lab``, ``templates``...). An arrow into the lab from anywhere but the
lab itself, or a circle of arrows between packages, fails with the imports that
make it. Imports by name at run time (``importlib.import_module``, the
CLI's lazy table, the entry points through which the lab joins the CLI) and
``python -m`` commands are not seen.

``python tests/unit/test_layers.py`` prints the package graph.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "highlander"
# What stands above the product and uses it; only these (among themselves) may import them.
# The CLI is product too: the lab joins it through entry points (highlander.cli.plugins).
CLIENTS = ("lab", "demo")

# package -> imported package -> the imports that make the arrow ("path:line: from module import name")
Graph = dict[str, dict[str, list[str]]]


def _module_name(root: Path, path: Path) -> tuple[list[str], bool]:
    """The dotted parts of ``path``'s module, and whether it is a package's ``__init__``."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        return parts[:-1], True
    return parts, False


def _imported(node: ast.Import | ast.ImportFrom, parts: list[str], is_package: bool) -> tuple[str, list[str]]:
    """The import statement, made absolute, and the modules (or module attributes) it names."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return f"import {', '.join(names)}", names
    if node.level:
        base = parts if is_package else parts[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join([*base, node.module] if node.module else base)
    else:
        module = node.module or ""
    names = [alias.name for alias in node.names]
    return f"from {module} import {', '.join(names)}", [f"{module}.{name}" for name in names]


def _unit(root: Path, dotted: str) -> str | None:
    """The package right below the root that ``dotted`` lives in (the root itself for
    an attribute of its ``__init__``); None outside the root."""
    parts = dotted.split(".")
    if parts[0] != root.name:
        return None
    if len(parts) > 1 and ((root / parts[1]).is_dir() or (root / f"{parts[1]}.py").is_file()):
        return parts[1]
    return root.name


def import_graph(root: Path) -> Graph:
    """Every arrow between the packages right below ``root``, with the imports behind it."""
    graph: Graph = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("*.py")):
        parts, is_package = _module_name(root, path)
        source = _unit(root, ".".join(parts))
        assert source is not None
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            statement, dotted = _imported(node, parts, is_package)
            for target in dict.fromkeys(_unit(root, name) for name in dotted):
                if target is not None and target != source:
                    graph[source][target].append(f"{path.relative_to(root.parent)}:{node.lineno}: {statement}")
    return {source: dict(targets) for source, targets in graph.items()}


def client_imports(graph: Graph) -> list[str]:
    """Each import of the lab or the demo by a package that must not use them."""
    return [
        f"{where}  ({source} is product code: it must not import the {target}, which stands above it)"
        for source, targets in sorted(graph.items())
        if source not in CLIENTS
        for target, wheres in sorted(targets.items())
        if target in CLIENTS
        for where in wheres
    ]


def package_cycles(graph: Graph) -> list[list[str]]:
    """The groups of packages that reach each other through imports (Tarjan's
    strongly connected components with more than one package)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(package: str) -> None:
        index[package] = low[package] = len(index)
        stack.append(package)
        on_stack.add(package)
        for target in graph.get(package, {}):
            if target not in index:
                visit(target)
                low[package] = min(low[package], low[target])
            elif target in on_stack:
                low[package] = min(low[package], index[target])
        if low[package] == index[package]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == package:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for package in sorted(graph):
        if package not in index:
            visit(package)
    return groups


def describe_cycles(graph: Graph) -> list[str]:
    """Each circle with the imports inside it, one line an import."""
    lines = []
    for group in package_cycles(graph):
        lines.append(f"circle between {', '.join(group)}:")
        lines += [
            f"  {where}" for source in group for target in group for where in graph.get(source, {}).get(target, [])
        ]
    return lines


# --- the tree as it is --------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT)


def test_the_whole_package_is_read(graph: Graph) -> None:
    # an empty or partial graph would pass the checks below for nothing
    packages = set(graph) | {target for targets in graph.values() for target in targets}
    assert {"cli", "agents", "commands", "lab", "drill", "signstate", "privval", "adapters"} <= packages
    assert "drill" in graph["cli"] and "commands" in graph["lab"] and "adapters" in graph["commands"]


def test_the_product_never_imports_the_lab_or_the_demo(graph: Graph) -> None:
    offending = client_imports(graph)
    assert not offending, "\n".join(offending)


def test_no_packages_import_each_other(graph: Graph) -> None:
    circles = describe_cycles(graph)
    assert not circles, "\n".join(circles)


# --- negative controls: the checks catch what they are for --------------------------------


def fake_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package ``highlander`` under ``tmp_path`` with ``files`` (path: source)."""
    root = tmp_path / "highlander"
    for name, source in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source)
    return root


def test_a_lazy_import_of_the_lab_by_a_command_or_the_cli_is_caught(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        {
            "commands/render.py": "def render():\n    from highlander.lab.node import system_env\n    return system_env\n",
            "lab/node.py": "from highlander.adapters import runner\n",
            "adapters/runner.py": "",
            "cli/drill.py": "from highlander.lab import node\n",
            "lab/cli.py": "from highlander.cli import main\nfrom highlander.lab import node\n",
        },
    )
    assert client_imports(import_graph(root)) == [
        "highlander/cli/drill.py:1: from highlander.lab import node  "
        "(cli is product code: it must not import the lab, which stands above it)",
        "highlander/commands/render.py:2: from highlander.lab.node import system_env  "
        "(commands is product code: it must not import the lab, which stands above it)",
    ]


def test_the_demo_is_a_client_too_and_relative_imports_count(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        {
            "drill/scenarios.py": "from ..demo import journals\n",
            "demo/journals.py": "",
        },
    )
    (offending,) = client_imports(import_graph(root))
    assert offending.startswith("highlander/drill/scenarios.py:1: from highlander.demo import journals  (drill ")


def test_a_cycle_between_packages_is_caught_with_its_imports(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        {
            "commands/render.py": "from highlander.adapters.runner import CommandRunner\n",
            "adapters/runner.py": "import os\n\n\ndef env():\n    import highlander.templates\n",
            "templates.py": "from highlander import commands\n",
            "signstate/store.py": "from . import wire\nfrom highlander.adapters import files\n",
            "signstate/wire.py": "from .store import Store\n",
        },
    )
    graph = import_graph(root)
    assert package_cycles(graph) == [["adapters", "commands", "templates"]]
    assert describe_cycles(graph) == [
        "circle between adapters, commands, templates:",
        "  highlander/adapters/runner.py:5: import highlander.templates",
        "  highlander/commands/render.py:1: from highlander.adapters.runner import CommandRunner",
        "  highlander/templates.py:1: from highlander import commands",
    ]


def test_imports_inside_one_package_and_from_above_are_no_cycle(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        {
            "ocf/spec.py": "def run():\n    from highlander.ocf.runtime import execute\n",
            "ocf/runtime.py": "from highlander.ocf.spec import Agent\n",
            "lab/site.py": "from highlander.drill.site import Site\nfrom highlander.ocf import spec\n",
            "drill/site.py": "from highlander.ocf.runtime import execute\n",
        },
    )
    graph = import_graph(root)
    assert package_cycles(graph) == []
    assert client_imports(graph) == []
    assert graph == {
        "lab": {
            "drill": ["highlander/lab/site.py:1: from highlander.drill.site import Site"],
            "ocf": ["highlander/lab/site.py:2: from highlander.ocf import spec"],
        },
        "drill": {"ocf": ["highlander/drill/site.py:1: from highlander.ocf.runtime import execute"]},
    }


if __name__ == "__main__":
    tree = import_graph(ROOT)
    for package, targets in sorted(tree.items()):
        print(f"{package} -> {', '.join(sorted(targets))}")
    problems = client_imports(tree) + describe_cycles(tree)
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1 if problems else 0)
