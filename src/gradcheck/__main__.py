"""Command line: ``python -m gradcheck demo``."""

from __future__ import annotations

import argparse
import sys

from . import _demo
from ._check import check


def demo(args: argparse.Namespace) -> int:
    """Check the built-in 3-layer network twice: with the planted mistakes, then fixed."""
    X, Y, params = _demo.example()
    _, cache = _demo.forward(X, Y, params)
    print(
        "The classic 3-layer network (LINEAR->RELU->LINEAR->RELU->LINEAR->SIGMOID), "
        f"{sum(p.size for p in params.values())} parameters in {len(params)} blocks.\n"
    )
    for planted, title in ((True, "with the planted mistakes"), (False, "fixed")):
        grads = _demo.backward(X, Y, cache, planted=planted)
        report = check(lambda p: _demo.loss(X, Y, p), params, grads, eps=args.eps, seed=0)
        print(f"== hand-written backward pass, {title} ==")
        print(report)
        print()
    return 0


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gradcheck", description="Check hand-written gradients against finite differences."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="check the built-in 3-layer network, buggy and fixed")
    p.add_argument(
        "--eps",
        type=_positive_float,
        default=None,
        help="absolute step (the classic exercise uses 1e-7); default: automatic",
    )
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
