"""The shape of the code: the longest function bodies, the widest signatures, module sizes.

    python tools/code_shape.py            # the table for src/gradcheck

A picture, not a gate: no size is enforced (limits drove code into modules by room rather
than by job). A module is as long as its one job needs.

Body lines are the lines from the first statement after the docstring to the function's
last line; parameters count every named parameter (``self`` and ``cls`` excepted).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "gradcheck"
def functions(path: Path):
    """(qualified name, body lines, parameters) for each function in ``path``."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = child.body
                first = body[0] if body else None
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    body = body[1:] or body
                lines = child.end_lineno - body[0].lineno + 1
                a = child.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                names = [n for n in names if n not in ("self", "cls")]
                out.append((f"{prefix}{child.name}", lines, len(names)))
                visit(child, f"{prefix}{child.name}.")

    visit(tree)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=8, help="rows per table (8)")
    args = parser.parse_args(argv)
    rows, modules = [], []
    for path in sorted(ROOT.glob("*.py")):
        modules.append((path.name, len(path.read_text().splitlines())))
        rows += [(f"{path.stem}.{name}", lines, params) for name, lines, params in functions(path)]
    print("longest bodies:")
    for name, lines, _ in sorted(rows, key=lambda r: -r[1])[: args.top]:
        print(f"  {lines:4d}  {name}")
    print("widest signatures:")
    for name, _, params in sorted(rows, key=lambda r: -r[2])[: args.top]:
        print(f"  {params:4d}  {name}")
    print("largest modules:")
    for name, lines in sorted(modules, key=lambda m: -m[1])[: args.top]:
        print(f"  {lines:4d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
