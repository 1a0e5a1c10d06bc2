"""The check command's target: ``module:function`` imported and called for ``(f, params,
grad)`` (and ``args``), and where an exception in the user's code was raised.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import _layout


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line, exit status 2."""


def args_from(module: Any, target: str, name: str) -> tuple:
    """``--args NAME``: a tuple in the target's module, or a function there returning one."""
    if not hasattr(module, name):
        raise UsageError(
            f"--args: {module.__name__!r} has no {name!r}; it should be a tuple of f's extra "
            "arguments, or a function returning one"
        )
    value = getattr(module, name)
    if callable(value):
        try:
            value = value()
        except Exception as exc:
            traceback.print_exc()
            raise UsageError(f"--args: {name}() raised {type(exc).__name__}: {exc}") from exc
    return value if isinstance(value, tuple) else (value,)


def naming_the_point(f: Callable, params: Any, f_args: tuple) -> Callable:
    """``f``, wrapped so that an exception it raises at a perturbed point says where: the
    coordinates that differ from ``params`` and by how much (a compiled ``f`` is left as it
    is: the numba engine runs it unwrapped).
    """
    if type(f).__module__.partition(".")[0] == "numba" or not callable(f):
        return f
    try:
        layout, start = _layout.build(params)
    except (TypeError, ValueError):
        return f  # the check refuses these params itself, with its own message

    def named(point, *rest):
        try:
            return f(point, *rest)
        except Exception as exc:
            if not hasattr(exc, "gradcheck_point"):
                exc.gradcheck_point = _where(layout, start, point)
            raise

    return named


def _where(layout, start: np.ndarray, point: Any) -> str:
    """Where ``point`` differs from ``start``, as ``", at the perturbed point W1[3, 2] with
    step +6.1e-06"``; empty when that cannot be told.
    """
    try:
        flat = layout.flatten(point, what="params", dtype=start.dtype)
    except (TypeError, ValueError):
        return ""
    moved = np.flatnonzero(flat != start)
    if moved.size == 0:
        return ", at params itself"
    steps = flat[moved].astype(np.float64) - start[moved]
    if moved.size == 1:
        return f", at the perturbed point {layout.entry_name(moved[0])} with step {steps[0]:+.3g}"
    # Several entries at once: a random line (the noise probe) or a random direction.
    k = int(np.argmax(np.abs(steps)))
    return (
        f", at a point moved in {moved.size:,} entries at once (a random direction or the "
        f"noise probe's line), the most {layout.entry_name(moved[k])} with step {steps[k]:+.3g}"
    )


def print_user_traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` from the first frame outside gradcheck: the user's code."""
    tb = exc.__traceback__
    while tb is not None and _is_ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)


def _is_ours(filename: str) -> bool:
    return Path(filename).resolve().parent == Path(__file__).resolve().parent


def raised_at(exc: BaseException) -> str | None:
    """``"file.py:12, in f"`` for the frame that raised ``exc``, or None when that frame is
    gradcheck's own (a refused argument, raised by gradcheck's validation).
    """
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if _is_ours(code.co_filename):
        return None
    return f"{Path(code.co_filename).name}:{tb.tb_lineno}, in {code.co_name}"


def load(target: str) -> tuple[Any, tuple]:
    """The target's module and what its function returned: ``(f, params, grad)``, or
    ``(f, params, grad, args)``.
    """
    module_name, sep, function_name = target.partition(":")
    if not sep or not module_name or not function_name:
        raise UsageError(
            f"the target must be module:function (or path/to/file.py:function), got {target!r}"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # find the user's modules where the command runs
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise FileNotFoundError(f"no file {str(path)!r}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {str(path)!r} as a module")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"cannot import {module_name!r} (from {cwd}): {type(exc).__name__}: {exc}"
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        if function is None:
            names = sorted(
                name
                for name, value in vars(module).items()
                if inspect.isfunction(value)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            )
            found = f"its functions: {', '.join(names)}" if names else "it defines no functions"
        else:
            found = f"found: {type(function).__name__}, not a function"
        raise UsageError(
            f"{module_name!r} has no function {function_name!r} ({found}); it should "
            "return (f, params, grad)"
        )
    try:
        result = function()
    except Exception as exc:
        traceback.print_exc()
        raise UsageError(f"{target}() raised {type(exc).__name__}: {exc}") from exc
    if not (isinstance(result, (tuple, list)) and len(result) in (3, 4)):
        raise UsageError(
            f"{target}() must return (f, params, grad) or (f, params, grad, args), got "
            f"{type(result).__name__}: {result!r:.80}"
        )
    return module, tuple(result)
