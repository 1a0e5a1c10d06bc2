"""The public entry points: validate, then run layout -> plan -> engine -> estimate -> compare
-> report, in that order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

import numpy as np

from . import _engine, _jit, _layout, _plan
from ._compare import compare
from ._estimate import estimate
from ._report import Report

ENGINES = ("auto", "python", "numba", "batched")
# engine="auto" compiles the numba kernel only when the Python engine would take longer than
# a first compile costs here (1-2 s), unless the kernel is already compiled in this process.
AUTO_NUMBA_SECONDS = 1.0


def check(
    f: Callable[..., Any],
    params: Any,
    grad: Any = None,
    *,
    eps: float | None = None,
    method: str = "central",
    seed: int | None = None,
    engine: str = "auto",
    batched: bool = False,
    tol: float | tuple[float, float] | None = None,
) -> Report:
    """Check a hand-written gradient against finite differences.

    Parameters
    ----------
    f : callable
        The loss. It receives the parameters in the structure of ``params`` (the arrays are
        views of a private copy, perturbed in place; ``f`` must not modify them) and returns
        one real number, or ``(loss, grads)`` when ``grad`` is None. With ``batched=True`` it
        receives the same structure with a leading batch axis on every array and returns one
        loss per row. A numba-jitted ``f`` of a flat 1-D float64 array can run in the
        parallel numba engine.
    params : ndarray, or dict / list / tuple (nested) of ndarrays
        The point at which to check: float64 or float32 arrays of any shape, all finite.
        They are copied once and never modified.
    grad : same structure as ``params``, callable, or None
        The gradient under test. Mapping keys may be the parameters' keys or course-style
        ``d``-prefixed ones (``dW1`` for ``W1``); extra keys (``dZ1``, ``dA1``, ...) are
        ignored. A callable is called once as ``grad(params)``. None: ``f`` returns it.
    eps : float, optional
        An absolute step for every coordinate, divided by ``2 * eps`` as the classic exercise
        does (``eps=1e-7`` reproduces its numbers). Default: a relative step
        ``eps_dtype**(1/3) * max(1, |x_i|)`` (central) chosen from the coarser of the
        parameter and loss dtypes, divided by the step actually taken.
    method : {"central", "forward"}
        Central differences (2 evaluations per coordinate, error O(h^2)) or forward
        differences (1 evaluation, error O(h)).
    seed : int, optional
        Recorded in the report so a check can be replayed; drawn when None.
    engine : {"auto", "python", "numba", "batched"}
        "auto" picks "batched" when ``batched=True``, "numba" for a jitted flat ``f`` whose
        check is long enough to repay compiling the kernel, and "python" otherwise.
    batched : bool
        ``f`` takes a stack of parameter vectors (see ``f``).
    tol : float or (float, float), optional
        One threshold (pass at or below it, fail above), or ``(pass, fail)`` with "warn" in
        between. Default by dtype: float64 ``(1e-7, 1e-5)``, float32 ``(1e-3, 1e-2)``.

    Returns
    -------
    Report
        Frozen: ``difference``, ``verdict``, ``passed``, per-block results in ``blocks``,
        ``worst`` entries by name, ``gradapprox``, ``nfev``, ``seed``; ``str(report)`` is a
        readable table and ``report.to_dict()`` is JSON-serialisable.

    Raises
    ------
    TypeError
        ``f`` is not callable or returns something that is not one real number; parameters
        or gradients of an unsupported type or dtype.
    ValueError
        Mismatched shapes, missing gradient entries, non-finite parameters or loss at
        ``params``, a bad option, or ``f`` that modifies its input.

    Notes
    -----
    The difference is ``||grad - gradapprox||_2 / (||grad||_2 + ||gradapprox||_2)``:
    symmetric (neither side is known to be right), bounded in [0, 1] and scale-free. It is
    computed per block as well; the verdict is the worst block's, because a global norm
    dilutes a single wrong block.

    Examples
    --------
    >>> import numpy as np, gradcheck
    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]])
    >>> x = np.array([0.5, -1.0])
    >>> report = gradcheck.check(lambda x: 0.5 * x @ A @ x, x, A @ x)
    >>> report.verdict
    'pass'
    """
    started = time.perf_counter()
    tol = _validate_options(f, eps, method, seed, engine, batched, tol)
    layout, buffer = _layout.build(params)
    struct = layout.structure(buffer)
    pristine = buffer.copy()

    nfev = 1
    if batched:
        if grad is None:
            raise ValueError("with batched=True, pass `grad`: a batched `f` returns losses only")
        f0, loss_dtype = _loss_value(_engine.batch_values(f, layout, buffer.reshape(1, -1), 1))
        call = None
    else:
        out = f(struct)
        pair = grad is None
        if pair:
            out, grad = _split(out)
        call = _caller(f, struct, pair=pair, array_valued=isinstance(out, np.ndarray))
        f0, loss_dtype = _loss_value(out)
    if not np.isfinite(f0):
        raise ValueError(f"`f(params)` must be finite to check a gradient there, got {f0!r}")
    if callable(grad):
        grad = grad(struct)
    analytic = layout.flatten(grad, what="grad")
    _unchanged(layout, buffer, pristine, "f or grad")

    seed = int(np.random.default_rng().integers(2**63)) if seed is None else int(seed)
    plan = _plan.make(buffer, method=method, eps=eps, loss_dtype=loss_dtype, seed=seed)
    if eps is not None:
        collapsed = _plan.collapsed(plan, buffer)
        if collapsed.size:
            i = int(plan.idx[collapsed[0]])
            raise ValueError(
                f"`eps`={eps!r} is below the resolution of {layout.entry_name(i)} = "
                f"{buffer[i]!r}: x + eps and x - eps round to the same number"
            )

    chosen, timing_calls = _choose_engine(engine, batched, f, layout, buffer, call, plan)
    nfev += timing_calls
    if chosen == "batched":
        evaluations = _engine.batched_engine(f, layout, buffer, plan)
    elif chosen == "numba":
        evaluations = _engine.numba_engine(f, buffer, plan)
    else:
        evaluations = _engine.python_engine(call, buffer, plan)
    nfev += evaluations.size
    _unchanged(layout, buffer, pristine, "f")

    est = estimate(plan, evaluations, f0)
    result = compare(layout, plan, est, analytic[plan.idx], f0=f0, loss_dtype=loss_dtype, tol=tol)
    full = np.full(layout.n, np.nan)
    full[plan.idx] = est.gradapprox
    full.flags.writeable = False
    step = (
        f"absolute step eps={eps!r}"
        if eps is not None
        else f"relative step {plan.rel_step:.3g}*max(1,|x|)"
    )
    return Report(
        difference=result.difference,
        verdict=result.verdict,
        blocks=MappingProxyType({b.name: b for b in result.blocks}),
        worst=result.worst,
        gradapprox=layout.structure(full),
        nfev=nfev,
        seed=seed,
        engine=chosen,
        method=method,
        step=step,
        n=layout.n,
        checked=int(plan.idx.size),
        loss=f0,
        tol=result.tol,
        seconds=time.perf_counter() - started,
    )


def assert_gradient(f: Callable[..., Any], params: Any, grad: Any = None, **options) -> Report:
    """Check a gradient and raise ``AssertionError`` with the report's table if it fails.

    Parameters
    ----------
    f, params, grad, **options
        As for :func:`check`.

    Returns
    -------
    Report
        The report, when the check passes (verdict "pass" or "warn").

    Raises
    ------
    AssertionError
        When any block fails or the check is inconclusive; the message is ``str(report)``,
        which names the failing blocks and the worst entries.

    Examples
    --------
    >>> import numpy as np, gradcheck
    >>> x = np.array([1.0, 2.0])
    >>> gradcheck.assert_gradient(lambda x: (x**2).sum(), x, 2 * x).verdict
    'pass'
    """
    report = check(f, params, grad, **options)
    if not report.passed:
        raise AssertionError("\n" + str(report))
    return report


def _validate_options(f, eps, method, seed, engine, batched, tol) -> tuple[float, float] | None:
    if not callable(f):
        raise TypeError(f"`f` must be callable, got {type(f).__name__}: {f!r:.80}")
    if method not in _plan.METHODS:
        raise ValueError(f"`method` must be one of {sorted(_plan.METHODS)}, got {method!r}")
    if eps is not None and (
        isinstance(eps, bool) or not isinstance(eps, Real) or not 0 < eps < np.inf
    ):
        raise ValueError(f"`eps` must be a positive finite number or None, got {eps!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0):
        raise ValueError(f"`seed` must be a non-negative integer or None, got {seed!r}")
    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {ENGINES}, got {engine!r}")
    if not isinstance(batched, bool):
        raise TypeError(f"`batched` must be True or False, got {batched!r}")
    if engine == "batched" and not batched:
        raise ValueError("engine='batched' needs batched=True: `f` must take a stack of vectors")
    if batched and engine not in ("auto", "batched"):
        raise ValueError(f"batched=True runs in the batched engine, not engine={engine!r}")
    return _validate_tol(tol)


def _validate_tol(tol) -> tuple[float, float] | None:
    """``tol`` as a (pass, fail) pair, or None for the dtype's defaults."""
    if tol is None:
        return None
    pair = tol if isinstance(tol, tuple) else (tol, tol)
    ok = len(pair) == 2 and all(
        isinstance(t, Real) and not isinstance(t, bool) and 0 < t < np.inf for t in pair
    )
    if not ok or pair[0] > pair[1]:
        raise ValueError(
            f"`tol` must be a positive number or a (pass, fail) pair with pass <= fail, got {tol!r}"
        )
    return (float(pair[0]), float(pair[1]))


def _split(out: Any) -> tuple[Any, Any]:
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            "with grad=None, `f` must return (loss, grads); it returned "
            f"{type(out).__name__}: {out!r:.80}"
        )
    return out


def _loss_value(out: Any) -> tuple[float, np.dtype]:
    """The loss as a float and its dtype; refuse anything but one real number."""
    if isinstance(out, np.ndarray) and out.size == 1 and out.dtype.kind in "iuf":
        out = out.reshape(())[()]
    if not _engine._is_scalar(out):
        shape = f" of shape {out.shape} and dtype {out.dtype}" if hasattr(out, "shape") else ""
        raise TypeError(
            f"`f` must return one real number, got {type(out).__name__}{shape}: {out!r:.80}"
        )
    # float32 losses make the steps and thresholds float32's; anything else is float64.
    dtype = np.dtype(np.float32) if isinstance(out, np.float32) else np.dtype(np.float64)
    return float(out), dtype


def _caller(f, struct, *, pair: bool, array_valued: bool) -> Callable[[], Any]:
    """``f(struct)`` reduced to the loss, in the cheapest form the first call allows."""
    if pair and array_valued:
        return lambda: _item(f(struct)[0])
    if pair:
        return lambda: f(struct)[0]
    if array_valued:
        return lambda: _item(f(struct))
    return lambda: f(struct)


def _item(value: Any) -> Any:
    # A size-1 array loss (a (1, 1) cost from np.dot) is one number; anything else is left
    # for the engine to refuse with the coordinate named.
    return value.item() if isinstance(value, np.ndarray) and value.size == 1 else value


def _unchanged(layout, buffer: np.ndarray, pristine: np.ndarray, who: str) -> None:
    bits = f"u{buffer.itemsize}"  # bitwise: a restored value must be the very same number
    changed = np.flatnonzero(buffer.view(bits) != pristine.view(bits))
    if changed.size:
        i = int(changed[0])
        raise ValueError(
            f"{who} modified its input in place: {layout.entry_name(i)} changed from "
            f"{pristine[i]!r} to {buffer[i]!r}; the check needs f to leave its arguments alone"
        )


def _choose_engine(engine, batched, f, layout, buffer, call, plan) -> tuple[str, int]:
    """The engine to run, and how many extra evaluations of f choosing it took."""
    if batched:
        return "batched", 0
    if engine == "python":
        return "python", 0
    unsuitable = _numba_unsuitable(f, layout, buffer)
    if engine == "numba":
        if unsuitable:
            raise ValueError(f"engine='numba' needs {unsuitable}")
        return "numba", 0
    if unsuitable:
        return "python", 0
    if _jit.is_compiled("evaluate_flat", parallel=True):
        return "numba", 0
    started = time.perf_counter()
    call()
    per_call = time.perf_counter() - started
    return ("numba" if per_call * plan.values.size > AUTO_NUMBA_SECONDS else "python"), 1


def _numba_unsuitable(f, layout, buffer: np.ndarray) -> str | None:
    """Why the numba engine cannot run this check, or None when it can."""
    block = layout.blocks[0]
    if not _jit.is_jitted(f):
        return f"`f` jitted with numba (numba.njit), got {type(f).__name__} {f!r:.60}"
    if len(layout.blocks) > 1 or block.path != () or len(block.shape) != 1:
        return f"`params` to be one 1-D array, got blocks {[b.name for b in layout.blocks]}"
    if buffer.dtype != np.float64 or block.dtype != np.float64:
        return f"`params` of dtype float64, got {block.dtype}"
    returns = _jit.return_type_name(f, buffer)
    if returns != "float64":
        return f"`f(params)` to return a float64 (and `grad` given separately), got {returns}"
    return None
