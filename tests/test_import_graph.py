"""The package's modules import one way: no module imports one that imports it back, at the
top, lazily inside a function or for annotations only.

A cycle is where the flow (options -> problem -> plan -> evaluator -> passes -> report)
stops reading one way; each was a place where a record or a helper lived above its users.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gradcheck"


def _imports(path: Path) -> set[str]:
    """The package's modules ``path`` imports anywhere in its text (``from . import x``,
    ``from ._x import y``, ``from .x import y`` inside functions and ``TYPE_CHECKING`` too).
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gradcheck."):
            found.add(node.module.split(".")[1])
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {name: _imports(path) & modules.keys() - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles, as the modules on each from its smallest name: at least one through every
    module that lies on one (a depth-first walk from each module, each module entered once).
    """
    found: set[tuple[str, ...]] = set()

    def walk(node: str, path: list[str], entered: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycle = path[path.index(nxt) :]
                k = cycle.index(min(cycle))
                found.add(tuple(cycle[k:] + cycle[:k]))
            elif nxt not in entered:
                entered.add(nxt)
                walk(nxt, [*path, nxt], entered)

    for start in sorted(graph):
        walk(start, [start], {start})
    return sorted(list(c) for c in found)


def test_the_package_has_no_import_cycle():
    cycles = _cycles(_graph())
    assert cycles == [], "\n".join(" -> ".join([*c, c[0]]) for c in cycles)


def test_the_cycle_finder_finds_a_cycle_of_three_and_a_lazy_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"], ["d", "e"]]


def test_lazy_and_annotation_imports_count(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import _a\n"
        "if TYPE_CHECKING:\n"
        "    from ._b import B\n"
        "def f():\n"
        "    from ._c import g\n"
        "from gradcheck._d import h\n"
    )
    assert _imports(module) == {"_a", "_b", "_c", "_d"}
