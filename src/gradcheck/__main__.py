"""Command line: ``python -m gradcheck demo | info | bench | check | taylor module:function``.

Exit status: 0 when the command ran and (for ``check``) the gradient passes or warns, 1 when
it fails or is inconclusive, 2 when the check could not run: a usage error (bad arguments, a
module that cannot be imported, a missing function) or an exception in the user's code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, _demo
from ._check import check
from ._cli_args import _positive_float, _positive_int, _sample, _seed, _tol
from ._options import ENGINES
from ._plan import METHODS
from ._target import UsageError, args_from, load, naming_the_point, print_user_traceback, raised_at
from ._taylor import taylor_test

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


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
    return EXIT_PASS


# ------------------------------------------------------------------------------------ info
def info(args: argparse.Namespace) -> int:
    """Print the versions and the numba set-up gradcheck runs with."""
    import numba

    from . import _jit

    try:
        import scipy

        scipy_version = scipy.__version__
    except ImportError:  # optional: gradcheck runs without it
        scipy_version = "not installed (optional: numba needs it for linear algebra in a jitted f)"

    rows = [
        ("gradcheck", f"{__version__} ({Path(__file__).resolve().parent})"),
        (
            "python",
            f"{platform.python_version()} ({platform.python_implementation()}, {sys.platform})",
        ),
        ("numpy", np.__version__),
        ("scipy", scipy_version),
        ("numba", numba.__version__),
        ("cpus", str(os.cpu_count())),
        (
            "numba threads",
            f"{numba.get_num_threads()} "
            f"(NUMBA_NUM_THREADS={getattr(numba.config, 'NUMBA_NUM_THREADS', '?')})",
        ),
        ("threading layer", _threading_layer(numba)),
        ("numba cache", _cache_location(numba, _jit)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return EXIT_PASS


def _threading_layer(numba) -> str:
    """The layer numba's parallel kernels run on (known only once one has run)."""
    requested = numba.config.THREADING_LAYER

    @numba.njit(parallel=True, cache=False)
    def probe(n):  # pragma: no cover - compiled by numba
        total = 0.0
        for i in numba.prange(n):
            total += i
        return total

    try:
        probe(4)
        return f"{numba.threading_layer()} (requested: {requested})"
    except Exception as exc:  # no usable layer: say why rather than fail
        return f"unavailable ({type(exc).__name__}: {exc}); requested: {requested}"


def _cache_location(numba, _jit) -> str:
    """Where gradcheck's compiled kernels are cached on disk."""
    if not _jit.CACHE:
        return "off (GRADCHECK_NUMBA_CACHE=0)"
    try:
        kernel = _jit.compiled("segment_norms")
        path = kernel._cache._cache_path  # numba's cache locator decides it
    except Exception as exc:
        path = f"not writable here ({type(exc).__name__}); kernels compile in every process"
    where = str(path)
    if numba.config.CACHE_DIR:
        where += f" (NUMBA_CACHE_DIR={numba.config.CACHE_DIR})"
    return where


# ----------------------------------------------------------------------------------- bench
def bench(args: argparse.Namespace) -> int:
    """Time a course-style loop against gradcheck's engines on two built-in workloads."""
    rows = []
    X, Y, params = _demo.example()
    _, cache = _demo.forward(X, Y, params)
    grads = _demo.backward(X, Y, cache)

    def demo_loss(p):
        return _demo.loss(X, Y, p)

    n_demo = sum(p.size for p in params.values())
    workload = f"demo network, {n_demo} params"
    rows += _contenders(
        workload,
        args.repeats,
        {
            "course loop (copies theta per coordinate)": lambda: _course_loop(
                demo_loss, params, grads, eps=1e-7
            ),
            "gradcheck, python engine": lambda: check(
                demo_loss, params, grads, eps=1e-7, engine="python", seed=0
            ),
        },
    )

    flat_f, x, g = _flat_workload(args.size)
    workload = f"jitted flat loss, {args.size:,} params"
    started = time.perf_counter()
    check(flat_f, x, g, engine="numba", seed=0)  # compile, or load from numba's cache
    first = time.perf_counter() - started
    rows += _contenders(
        workload,
        args.repeats,
        {
            "course loop (copies theta per coordinate)": lambda: _course_loop(flat_f, x, g),
            "gradcheck, python engine": lambda: check(flat_f, x, g, engine="python", seed=0),
            "gradcheck, numba engine": lambda: check(flat_f, x, g, engine="numba", seed=0),
        },
    )
    _print_table(rows)
    print(
        f"\nMedian of {args.repeats} runs each (time.perf_counter), on {os.cpu_count()} CPUs. "
        f"The numba engine's first call in this process took {first:.2f} s (compiling its "
        "kernel, or loading it from numba's cache); it is not in the table."
    )
    return EXIT_PASS


def _contenders(workload: str, repeats: int, runs: dict[str, Callable[[], Any]]) -> list:
    rows = []
    baseline = None
    for name, run in runs.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        baseline = baseline or seconds
        difference = result if isinstance(result, float) else result.difference
        rows.append((workload, name, seconds, baseline / seconds, difference))
    return rows


def _print_table(rows) -> None:
    table = [("workload", "contender", "median s", "vs loop", "difference")]
    table += [(w, c, f"{s:.4g}", f"{x:.2f}x", f"{d:.3e}") for w, c, s, x, d in rows]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for k, row in enumerate(table):
        cells = [
            cell.rjust(widths[i]) if i >= 2 else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def _course_loop(f, params, grad, eps: float = 1e-7) -> float:
    """The classic exercise's loop (``_demo.course_loop``) on a dict or a flat vector."""
    if isinstance(params, dict):
        theta, g, unflatten = _demo.course_vectors(params, grad)
        return _demo.course_loop(f, theta, g, unflatten=unflatten, eps=eps)
    return _demo.course_loop(f, params.astype(np.float64), grad, eps=eps)


def _flat_workload(n: int):
    """A jitted loss of one flat vector: a chain of springs in a quartic well."""
    import numba

    @numba.njit(cache=False)
    def f(x):  # pragma: no cover - compiled by numba
        total = 0.0
        for i in range(1, x.size):
            d = x[i] - x[i - 1]
            total += 0.5 * d * d
        for i in range(x.size):
            total += 0.25 * x[i] ** 4
        return total

    x = np.random.default_rng(0).standard_normal(n)
    d = np.diff(x)
    g = x**3
    g[1:] += d
    g[:-1] -= d
    f(x)
    return f, x, g


# ----------------------------------------------------------------------------------- check
def check_command(args: argparse.Namespace) -> int:
    """Import ``module:function``, call it for ``(f, params, grad)`` and check."""
    module, (f, params, grad, *extra) = load(args.target)
    f_args = extra[0] if extra else ()
    if args.args is not None:
        f_args = args_from(module, args.target, args.args)
    if not isinstance(f_args, tuple):
        raise UsageError(
            f"{args.target}: the extra arguments of f must be a tuple, got {type(f_args).__name__}"
        )
    f = naming_the_point(f, params, f_args)
    options = {
        "eps": args.eps,
        "method": args.method,
        "seed": args.seed,
        "engine": args.engine,
        "sample": args.sample,
        "directions": args.directions,
        "budget": args.budget,
        "tol": args.tol,
        "workers": args.workers,
        "progress": args.progress,
        "control": args.control or None,
        "args": f_args or None,
    }
    report = _guarded(
        args.target,
        lambda: check(f, params, grad, **{k: v for k, v in options.items() if v is not None}),
    )
    return _emit(report, report.passed, args.json)


def taylor_command(args: argparse.Namespace) -> int:
    """The Taylor test of ``module:function``'s ``(f, params, grad)``."""
    _, (f, params, grad, *_extra) = load(args.target)
    result = _guarded(
        args.target,
        lambda: taylor_test(f, params, grad, directions=args.directions, seed=args.seed),
    )
    return _emit(result, result.passed, args.json)


def _guarded(target: str, call: Callable[[], Any]) -> Any:
    """``call()``; a refused argument becomes a usage error, an exception in the user's
    code its traceback and a usage error saying where it was raised (and at which point).
    """
    try:
        return call()
    except Exception as exc:
        where = raised_at(exc)
        if where is None and isinstance(exc, (TypeError, ValueError)):
            # gradcheck refused an argument: its own message says which and why.
            raise UsageError(f"{target}: {exc}") from exc
        # Raised in the user's f or grad (or a library they call): show where.
        print_user_traceback(exc)
        point = getattr(exc, "gradcheck_point", "")
        raise UsageError(
            f"{target}: the check could not run: {type(exc).__name__}: {exc}, raised "
            f"in {where or 'gradcheck'}{point} (traceback above)"
        ) from exc


def _emit(result: Any, passed: bool, as_json: bool) -> int:
    """Print the result (as strict JSON when asked); the exit status of its verdict."""
    status = EXIT_PASS if passed else EXIT_FAIL
    try:
        text = json.dumps(result.to_dict(), indent=2, allow_nan=False) if as_json else result
        print(text, flush=True)
    except BrokenPipeError:  # piped into head: the verdict still sets the status
        _quiet_stdout()
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcheck", description="Check hand-written gradients against finite differences."
    )
    parser.add_argument("--version", action="version", version=f"gradcheck {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("demo", help="check the built-in 3-layer network, buggy and fixed")
    p.add_argument(
        "--eps",
        type=_positive_float,
        default=None,
        help="absolute step (the classic exercise uses 1e-7); default: automatic",
    )
    p.set_defaults(run=demo)

    p = commands.add_parser("info", help="versions, numba threads, threading layer and cache")
    p.set_defaults(run=info)

    p = commands.add_parser(
        "bench", help="time a course-style loop against the python and numba engines"
    )
    p.add_argument("--repeats", type=_positive_int, default=5, help="runs per contender (5)")
    p.add_argument(
        "--size", type=_positive_int, default=2000, help="parameters of the flat loss (2000)"
    )
    p.set_defaults(run=bench)

    p = commands.add_parser(
        "check",
        help="check module:function, which returns (f, params, grad)",
        description="Import MODULE (a module name, found from the current directory too, or "
        "a file: path/to/file.py:function), call FUNCTION() for (f, params, grad) and check "
        "the gradient. Exit status 0: pass or warn; 1: fail or inconclusive; 2: the check "
        "could not run (usage or import error, an exception in your code).",
    )
    p.add_argument(
        "target",
        metavar="module:function",
        help="e.g. mymodel:gradient_problem, or path/to/file.py:gradient_problem",
    )
    p.add_argument("--eps", type=_positive_float, help="absolute step; default: automatic")
    p.add_argument("--method", choices=sorted(METHODS), help="difference formula (central)")
    p.add_argument("--seed", type=_seed, help="seed of the plan (recorded in the report)")
    p.add_argument(
        "--engine", choices=[e for e in ENGINES if e not in ("batched", "dask")], help="(auto)"
    )
    p.add_argument(
        "--sample", type=_sample, help="coordinates to check: a count, or a fraction in (0, 1]"
    )
    p.add_argument("--directions", type=_positive_int, help="random directions per block")
    p.add_argument("--budget", type=_positive_float, help="seconds to spend")
    p.add_argument("--tol", type=_tol, help="threshold, or pass,fail thresholds")
    p.add_argument(
        "--control",
        action="store_true",
        help="a negative control: plant errors of the size the check could have missed in a "
        "copy of the gradient and show that they fail (no extra evaluations of f)",
    )
    p.add_argument(
        "--args",
        metavar="NAME",
        help="extra arguments of f and a callable grad, f(params, *args): NAME is a tuple in "
        "the target's module, or a function there returning one (a target may also return "
        "(f, params, grad, args))",
    )
    p.add_argument(
        "--workers", type=_positive_int, help="threads for the python engine (1: serial)"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: for a long check on a terminal)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print report.to_dict() as strict JSON (NaN and infinity as null)",
    )
    p.set_defaults(run=check_command)

    p = commands.add_parser(
        "taylor",
        help="the Taylor test of module:function's (f, params, grad)",
        description="Import MODULE, call FUNCTION() for (f, params, grad) and run the Taylor "
        "test: the rate at which |f(x + h d) - f(x) - h <grad, d>| falls with h, over steps "
        "it finds itself (2: right, 1: wrong). Exit status as for check.",
    )
    p.add_argument("target", metavar="module:function", help="as for check")
    p.add_argument("--directions", type=_positive_int, default=1, help="whole directions (1)")
    p.add_argument("--seed", type=_seed, help="seed of the directions")
    p.add_argument("--json", action="store_true", help="print result.to_dict() as strict JSON")
    p.set_defaults(run=taylor_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"gradcheck {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into head and the like: stop quietly
        _quiet_stdout()
        return EXIT_PASS


def _quiet_stdout() -> None:
    """Send what is left of stdout to devnull, so the interpreter's flush at exit is quiet."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
