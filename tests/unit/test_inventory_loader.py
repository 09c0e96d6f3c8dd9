"""What the inventory loader accepts is bounded, whatever the file holds: no
YAML aliases (an alias bomb of a few hundred bytes expands to gigabytes),
no key given twice, no nesting deeper than an inventory needs, no file
larger than one; and what an error prints of a value is short."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from highlander.inventory import InventoryError, load
from highlander.inventory.codes import (
    INVENTORY_DUPLICATE_KEY,
    INVENTORY_NOT_YAML,
    INVENTORY_TOO_DEEP,
    INVENTORY_TOO_LARGE,
    INVENTORY_WRONG_TYPE,
    INVENTORY_YAML_ANCHOR,
    INVENTORY_YAML_MERGE_KEY,
)
from highlander.inventory.loader import MAX_DEPTH, MAX_SIZE
from highlander.inventory.model import parse
from highlander.problems import Problem

EXAMPLES = Path(__file__).parents[2] / "examples"
# Address space the loader gets in the child: a regression dies of MemoryError within a
# second instead of taking the machine's memory.
MEMORY_LIMIT = 300 * 2**20


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" shape: every level a list of ``width`` aliases of the one below."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    lines.append(f"cluster: {{name: *l{levels - 1}}}")
    return "\n".join(lines) + "\n"


def limited_child(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a child Python limited to MEMORY_LIMIT of address space."""
    limit = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
    return subprocess.run(
        [sys.executable, "-c", limit + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def load_in_a_child(path: Path) -> subprocess.CompletedProcess[str]:
    """``load(path)``, limited; exit status 3 and the problems printed when refused."""
    return limited_child(f"""
        import sys
        from highlander.inventory import InventoryError, load
        try:
            load({str(path)!r})
        except InventoryError as exc:
            print(exc)
            sys.exit(3)
    """)


def problems_loading(path: Path) -> tuple[Problem, ...]:
    """The problems ``load`` finds, each in ``path``."""
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert all(problem.source == str(path) for problem in caught.value.problems)
    return caught.value.problems


def test_an_alias_bomb_is_refused_within_a_memory_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 600
    result = load_in_a_child(path)
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stdout.strip() == (
        f"{path}: line 1, column 5: YAML anchors and aliases are not accepted in an inventory "
        "(anchor &l0): write every value out in full"
    )


@pytest.mark.parametrize(
    "text, code, where, position",
    [
        ("cluster: {name: *x}\n", INVENTORY_YAML_ANCHOR, "cluster.name", "line 1, column 17"),
        ("x: &x validators\ncluster: {name: validators}\n", INVENTORY_YAML_ANCHOR, "x", "line 1, column 4"),
        ("nodes:\n  - &n {name: a}\n", INVENTORY_YAML_ANCHOR, "nodes[0]", "line 2, column 5"),
        ("cluster:\n  <<: {name: validators}\n", INVENTORY_YAML_MERGE_KEY, "cluster.<<", "cluster.<<"),
    ],
)
def test_anchors_aliases_and_merge_keys_are_refused(
    tmp_path: Path, text: str, code: str, where: str, position: str
) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    (problem,) = problems_loading(path)
    assert (problem.code, problem.path) == (code, where)
    assert problem.message.startswith(f"{position}: "), problem


def test_the_shipped_inventories_use_no_anchors(tmp_path: Path) -> None:
    for example in sorted(EXAMPLES.glob("*.yml")):
        load(example)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    text = (EXAMPLES / "trio.yml").read_text()
    assert "    role: active\n    addresses: [10.10.0.12]\n" in text
    path.write_text(
        text.replace(
            "    role: active\n    addresses: [10.10.0.12]\n",
            "    role: witness\n    addresses: [10.10.0.12]\n    role: active\n",
        )
    )
    lines = path.read_text().splitlines()
    first = lines.index("    role: witness") + 1
    second = lines.index("    role: active", first) + 1
    (problem,) = problems_loading(path)
    assert (problem.code, problem.path) == (INVENTORY_DUPLICATE_KEY, "nodes[1].role")
    assert str(problem) == f"{path}: nodes[1].role: given twice (lines {first} and {second}): keep one"


@pytest.mark.parametrize(
    "text, where, lines",
    [
        ("cluster: {name: a}\ncluster: {name: b}\n", "cluster", (1, 2)),
        ("timeouts:\n  token_ms: 3000\n  token_ms: 4000\n", "timeouts.token_ms", (2, 3)),
        # The same key spelt two ways is still the same key.
        ("nodes:\n  - fence:\n    - options: {1: a, 0x1: b}\n", "nodes[0].fence[0].options.0x1", (3, 3)),
    ],
)
def test_duplicate_keys_at_any_depth(tmp_path: Path, text: str, where: str, lines: tuple[int, int]) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    (problem,) = problems_loading(path)
    assert (problem.code, problem.path) == (INVENTORY_DUPLICATE_KEY, where)
    assert f"(lines {lines[0]} and {lines[1]})" in problem.message


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_refused_without_a_traceback(tmp_path: Path, opening: str, closing: str) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("cluster: " + opening * 100_000 + closing * 100_000 + "\n")
    (problem,) = problems_loading(path)
    assert problem.code == INVENTORY_TOO_DEEP
    assert problem.path.startswith("cluster" + {"[": "[0][0]", "{a: ": ".a.a"}[opening]), problem.path
    assert problem.message.startswith("line 1, column ")
    assert problem.message.endswith(f"nested deeper than {MAX_DEPTH} levels; an inventory needs a handful"), problem


def test_nesting_up_to_the_limit_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("cluster: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    assert [(p.code, p.path) for p in problems_loading(path)][0] == (INVENTORY_WRONG_TYPE, "cluster")


def test_a_file_larger_than_an_inventory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("# padding\n" * (MAX_SIZE // 10 + 1))
    (problem,) = problems_loading(path)
    assert (problem.code, problem.path) == (INVENTORY_TOO_LARGE, "")
    assert str(problem) == (
        f"{path}: {path.stat().st_size} bytes; an inventory is a few kilobytes "
        f"(at most {MAX_SIZE} bytes are read): is this the right file?"
    )


def test_a_yaml_error_is_reported_as_before(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("cluster: {name: [\n")
    (problem,) = problems_loading(path)
    assert (problem.code, problem.path) == (INVENTORY_NOT_YAML, "")
    assert str(problem).startswith(f"{path}: line 2, column 1 not valid YAML"), problem


@pytest.mark.parametrize(
    "value, problem",
    [
        (
            "1" * 5000,
            f"line 1, column 17 not valid YAML: cannot read '{'1' * 37}...' as int: Exceeds the limit "
            "(4300 digits) for integer string conversion: value has 5000 digits",
        ),
        (
            "2020-13-45",
            "line 1, column 17 not valid YAML: cannot read '2020-13-45' as timestamp: month must be in 1..12",
        ),
    ],
)
def test_a_value_python_cannot_hold_is_an_error_at_its_line(tmp_path: Path, value: str, problem: str) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(f"cluster: {{name: {value}}}\n")
    assert [(p.code, p.message) for p in problems_loading(path)] == [(INVENTORY_NOT_YAML, problem)]


# --- what errors print of a value --------------------------------------------------


def test_an_error_prints_a_short_rendering_of_any_value() -> None:
    # The expanded shape of an alias bomb, built in the child from shared references.
    result = limited_child("""
        from highlander.inventory import InventoryError
        from highlander.inventory.model import parse
        bomb = ["lol"] * 9
        for _ in range(8):
            bomb = [bomb] * 9
        try:
            parse({
                "cluster": {"name": bomb, "quorum": bomb},
                "nodes": [{"name": "x" * 10_000, "addresses": [bomb], "k" * 10_000: 1}, bomb, bomb],
                "timeouts": {"token_ms": bomb},
            })
        except InventoryError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    problems = result.stdout.splitlines()
    assert all(len(problem) < 200 for problem in problems), problems
    assert "cluster.name: expected text, got [[...], [...], [...], [...], ...]" in problems


def test_a_long_text_is_shortened_in_errors() -> None:
    document = yaml.safe_load((EXAMPLES / "trio.yml").read_text())
    document["nodes"][0]["fence"][0]["address"] = "bmc-" + "a" * 5000
    with pytest.raises(InventoryError) as caught:
        parse(document)
    problem = caught.value.problems[0]
    assert problem.path == "nodes[0].fence[0].address"
    assert len(problem.message) < 200, problem
    assert problem.message.startswith("nodes[0].fence[0].address: not an IP address or host name ('bmc-aaaa")
