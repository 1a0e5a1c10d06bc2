"""Figures of the middle floor (the passes between the problem and the report).

    python tools/middle_floor.py          # the summary
    python tools/middle_floor.py -v       # and every site it counts

It prints, for ``src/gradcheck``:

- the frozen record types (``@dataclass(frozen=True)`` classes);
- the parameters named ``problem``, ``evaluator``, ``options`` or ``check`` typed ``Any`` or
  untyped, and the functions that take both ``problem`` and ``evaluator``;
- where each rule is written: the per-entry allowance ``RTOL * (|a| + |b|) + NOISE * fd`` (a
  product with ``RTOL``/``rtol``), where a verdict is decided (calls of ``judge`` and
  ``Verdict.worst``), the number rule (``isinstance(x, bool)`` beside an ``Integral``/``Real``
  test in one expression) and the seed rule (a value refused as not a non-negative integer, in a
  ``raise`` or a validator's ``what=``: the words of the seed rule).

The counts are found by reading the source (``ast``), so anyone can rerun them on any
checkout; ``-v`` lists the sites so each count can be checked by eye.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "gradcheck"
CONTEXT = ("problem", "evaluator", "options", "check")


def _frozen(tree: ast.Module, name: str) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for d in node.decorator_list:
            if isinstance(d, ast.Call) and any(
                k.arg == "frozen" and isinstance(k.value, ast.Constant) and k.value.value
                for k in d.keywords
            ):
                out.append(f"{name}.{node.name}")
    return out


def _untyped(tree: ast.Module, name: str) -> tuple[list[str], list[str]]:
    loose, both = [], []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        names = {a.arg for a in args}
        if {"problem", "evaluator"} <= names:
            both.append(f"{name}:{node.lineno} {node.name}")
        for a in args:
            if a.arg not in CONTEXT:
                continue
            ann = a.annotation
            if ann is None or (isinstance(ann, ast.Name) and ann.id == "Any"):
                what = "untyped" if ann is None else "Any"
                loose.append(f"{name}:{node.lineno} {node.name}({a.arg}: {what})")
    return loose, both


def _mentions(node: ast.AST, *words: str) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and n.id in words:
            return True
        if isinstance(n, ast.Attribute) and n.attr in words:
            return True
    return False


def _rules(tree: ast.Module, name: str, lines: list[str]) -> dict[str, list[str]]:
    sites: dict[str, list[str]] = {"allowance": [], "verdict": [], "number": [], "seed": []}

    def at(node: ast.AST) -> str:
        return f"{name}:{node.lineno}  {lines[node.lineno - 1].strip()}"

    inside: set[int] = set()  # BoolOps within one already counted (ast.walk: outer first)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Mult)
            and (_mentions(node.left, "RTOL", "rtol") or _mentions(node.right, "RTOL", "rtol"))
        ):
            sites["allowance"].append(at(node))
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == "judge") or (
                isinstance(f, ast.Attribute)
                and f.attr == "worst"
                and isinstance(f.value, ast.Name)
                and f.value.id == "Verdict"
            ):
                sites["verdict"].append(at(node))
        if isinstance(node, ast.BoolOp) and id(node) not in inside:
            calls = [
                c
                for c in ast.walk(node)
                if isinstance(c, ast.Call)
                and isinstance(c.func, ast.Name)
                and c.func.id == "isinstance"
                and len(c.args) == 2
            ]
            kinds = {ast.unparse(c.args[1]) for c in calls}
            if "bool" in kinds and kinds & {"Integral", "Real", "int"}:
                sites["number"].append(at(node))
                inside.update(id(b) for b in ast.walk(node) if isinstance(b, ast.BoolOp))
        # The seed rule's words, in a raise or handed to a validator as what= it refuses.
        if isinstance(node, ast.Raise) and node.exc is not None:
            if "non-negative integer" in ast.unparse(node.exc):
                sites["seed"].append(at(node))
        if isinstance(node, ast.keyword) and node.arg == "what":
            if "non-negative integer" in ast.unparse(node.value):
                sites["seed"].append(at(node.value))
    return sites


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list every site")
    verbose = parser.parse_args().verbose
    records: list[str] = []
    loose: list[str] = []
    both: list[str] = []
    rules: dict[str, list[str]] = {"allowance": [], "verdict": [], "number": [], "seed": []}
    for path in sorted(ROOT.glob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        name = path.stem
        records += _frozen(tree, name)
        lo, bo = _untyped(tree, name)
        loose += lo
        both += bo
        for k, v in _rules(tree, name, text.splitlines()).items():
            rules[k] += v
    nested_modules = {r.split(".")[0] for r in records}
    print(f"frozen record types: {len(records)} (in {len(nested_modules)} modules)")
    if verbose:
        print("   " + ", ".join(r.split(".", 1)[1] for r in records))
    print(f"context parameters typed Any or untyped: {len(loose)}")
    if verbose:
        print("".join(f"   {s}\n" for s in loose), end="")
    print(f"functions taking both problem and evaluator: {len(both)}")
    if verbose:
        print("".join(f"   {s}\n" for s in both), end="")
    titles = {
        "allowance": "per-entry allowance RTOL*(|a|+|b|) + NOISE*fd (products with RTOL)",
        "verdict": "verdict decided (judge(...), Verdict.worst(...))",
        "number": "number rule isinstance(x, bool) ... Integral/Real",
        "seed": "seed rule (refused as not a non-negative integer)",
    }
    for key, title in titles.items():
        mods = sorted({s.split(":")[0] for s in rules[key]})
        print(f"{title}: {len(rules[key])} sites in {len(mods)} modules ({', '.join(mods)})")
        if verbose:
            print("".join(f"   {s}\n" for s in rules[key]), end="")


if __name__ == "__main__":
    main()
