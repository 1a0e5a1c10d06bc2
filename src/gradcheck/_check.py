"""The public entry points: validate, then run layout -> plan -> engine -> estimate -> compare
-> report, in that order.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

import numpy as np

from . import _directions, _engine, _jit, _layout, _noise, _plan, _refine
from ._compare import THRESHOLDS, compare, noise_level, scores, with_directions
from ._estimate import estimate
from ._report import Report

ENGINES = ("auto", "python", "numba", "batched", "dask")
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
    sample: int | float | None = None,
    directions: int | None = None,
    localize: int = 8,
    budget: float | None = None,
    client: Any = None,
    progress: bool | None = None,
    noise: bool = True,
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
    engine : {"auto", "python", "numba", "batched", "dask"}
        "auto" picks "batched" when ``batched=True``, "numba" for a jitted flat ``f`` whose
        check is long enough to repay compiling the kernel, and "python" otherwise. "dask"
        sends slices of the coordinates to the workers of a ``dask.distributed`` client,
        each running the serial Python or numba engine.
    batched : bool
        ``f`` takes a stack of parameter vectors (see ``f``).
    tol : float or (float, float), optional
        One threshold (pass at or below it, fail above), or ``(pass, fail)`` with "warn" in
        between. Default by dtype: float64 ``(1e-7, 1e-5)``, float32 ``(1e-3, 1e-2)``.
    sample : int or float, optional
        Check a random sample of coordinates instead of all: an int is how many, a float in
        (0, 1] what fraction. Stratified per block: blocks of up to 32 entries are checked
        whole, larger ones get a share in proportion to their size; drawn without
        replacement from ``seed``. ``report.blocks[name].miss_probability(p)`` is the chance
        that a bug touching a fraction ``p`` of a block went unseen.
    directions : int, optional
        Also compare ``v . grad`` with the directional difference along this many random
        Gaussian directions per block (2 evaluations each, whatever the block's size). Alone
        (without ``sample``), no coordinate is checked one by one.
    localize : int
        When a block fails its directions, halve its coordinates and test the halves with
        directions of their own, recursively, until up to this many wrong entries are found
        (about 4 log2(n) evaluations each); they are listed in ``blocks[name].localized``.
        0 turns the search off.
    budget : float, optional
        Seconds to spend: one evaluation of ``f`` is timed and ``sample`` and
        ``directions`` (those left None) are chosen to fit; a full check when it fits.
    client : dask.distributed.Client, optional
        For ``engine="dask"``; default: the current client.
    progress : bool, optional
        Show a progress bar (tqdm) on stderr. Default: when the check is expected to take
        more than a few seconds and stderr is a terminal.
    noise : bool
        Probe f's noise first (about ten evaluations): call it twice more at ``params``
        (a non-deterministic f makes the check "inconclusive") and estimate its noise level
        along a random line (Moré & Wild's ECnoise), which sets what the finite differences
        can resolve. False: assume rounding noise ``u * |f(params)|`` only.

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
    _validate_large(sample, directions, localize, budget, progress)
    layout, buffer = _layout.build(params)
    struct = layout.structure(buffer)
    pristine = buffer.copy()

    first = _first_call(f, layout, struct, buffer, grad, batched)
    call, f0, loss_dtype = first.call, first.f0, first.loss_dtype
    analytic = layout.flatten(first.grad, what="grad")
    _unchanged(layout, buffer, pristine, "f or grad")
    nfev = 1
    how = {"pair": first.pair, "array_valued": first.array_valued}

    seed = int(np.random.default_rng().integers(2**63)) if seed is None else int(seed)
    # One stream each for the noise probe, the sample and the directions, so that turning
    # one of them on or off leaves what the others draw unchanged.
    noise_rng, sample_rng, direction_rng = map(
        np.random.default_rng, np.random.SeedSequence(seed).spawn(3)
    )
    if batched:

        def evaluate(points):
            return _engine.batched_segment_engine(f, layout, buffer, points)
    else:

        def evaluate(points):
            return _engine.segment_engine(call, buffer, points)

    dtype = _plan.coarser(buffer.dtype, loss_dtype)
    rounding = noise_level(f0, dtype)
    measured = _noise.measure(evaluate, buffer, f0, rounding, noise_rng, dtype) if noise else None
    nfev += measured.evaluations if measured else 0
    noise_f = measured.level if measured else rounding
    per_call = None
    if budget is not None:
        # The middle of three timings: one call alone can catch a cold cache or a hiccup.
        per_call = sorted(_time_one(call, f, layout, buffer) for _ in range(3))[1]
        nfev += 3
        sample, directions = _fit_budget(
            budget, per_call, layout, sample, directions, method=method, spent=nfev
        )
    idx = _coordinates(layout, sample, directions, sample_rng)
    plan = _plan.make(buffer, idx, method=method, eps=eps, loss_dtype=loss_dtype, seed=seed)
    if eps is not None:
        collapsed = _plan.collapsed(plan)
        if collapsed.size:
            i = int(plan.idx[collapsed[0]])
            raise ValueError(
                f"`eps`={eps!r} is below the resolution of {layout.entry_name(i)} = "
                f"{buffer[i]!r}: x + eps and x - eps round to the same number"
            )

    expected = plan.values.size + 2 * (directions or 0) * len(layout.blocks)
    show = _show_progress(progress, per_call or first.seconds, expected)
    chosen, timing_calls = _choose_engine(engine, batched, f, layout, buffer, plan, per_call)
    nfev += timing_calls
    run = functools.partial(_evaluate, chosen, f, call, layout, buffer, client=client, how=how)
    notes: list[str] = []
    with _progress_bar(show, plan.idx.size) as tick:
        if method == "complex":
            evaluations, self_test = _complex_step(
                f, layout, buffer, plan, analytic, how, tick, notes
            )
            nfev += self_test
        else:
            evaluations = run(plan, tick=tick)
    nfev += evaluations.size
    _unchanged(layout, buffer, pristine, "f")

    est = estimate(plan, evaluations, f0)
    judge = functools.partial(
        compare,
        layout,
        plan,
        est,
        analytic[plan.idx],
        f0=f0,
        loss_dtype=loss_dtype,
        tol=tol,
        noise_f=noise_f,
    )
    result = judge()
    kinks: list[_refine.Kink] = []
    if method != "complex" and plan.idx.size:
        result, kinks, spent = _look_again(
            run,
            judge,
            layout,
            buffer,
            plan,
            est,
            analytic,
            result,
            f0=f0,
            loss_dtype=loss_dtype,
            eps=eps,
        )
        nfev += spent
        _unchanged(layout, buffer, pristine, "f")
    if measured and measured.spread > NONDETERMINISTIC * rounding:
        notes.append(
            f"inconclusive: f is not deterministic: f(params) changed by {measured.spread:.3g} "
            "across 3 calls (dropout, random batches, nondeterministic kernels?); fix its "
            "randomness before checking"
        )
    if directions:
        # Directions are central differences whatever the method: a complex or one-sided
        # step, or its thresholds, would misjudge them.
        rel_step = _plan.relative_step("central", buffer.dtype, loss_dtype)
        real_tol = result.tol
        if result.adaptive and method == "complex":
            real_tol = THRESHOLDS[_plan.coarser(buffer.dtype, loss_dtype)]
        found = [
            _directions.check_block(
                evaluate,
                buffer,
                analytic,
                block.offset,
                block.offset + block.size,
                k=directions,
                rel_step=rel_step,
                rng=direction_rng,
                tol=real_tol,
                adaptive=result.adaptive,
                noise_f=noise_f,
                localize=localize,
            )
            for block in layout.blocks
        ]
        nfev += sum(r.evaluations for r in found)
        found, search_kinks, spent = _confirm(
            run,
            layout,
            buffer,
            analytic,
            found,
            rel_step,
            _directions.disagreement(real_tol, result.adaptive, noise_f),
            noise_f=noise_f,
            f0=f0,
            loss_dtype=loss_dtype,
            localize=localize,
        )
        seen = {k.name for k in kinks}
        kinks += [k for k in search_kinks if k.name not in seen]
        nfev += spent
        _unchanged(layout, buffer, pristine, "f")
        result = with_directions(result, layout, found, directions)

    full = np.full(layout.n, np.nan)
    full[plan.idx] = est.gradapprox
    full.flags.writeable = False
    rel_step = _plan.relative_step(method, buffer.dtype, loss_dtype)
    step = (
        f"absolute step eps={eps!r}"
        if eps is not None
        else f"relative step {rel_step:.3g}*max(1,|x|)"
    )
    verdict = result.verdict
    if verdict in ("pass", "warn") and any(n.startswith("inconclusive") for n in notes):
        verdict = "inconclusive"
    return Report(
        difference=result.difference,
        verdict=verdict,
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
        directions=directions or 0,
        budget=budget,
        noise=noise_f,
        notes=tuple(notes),
        kinks=tuple(kinks),
    )


@dataclass(frozen=True)
class _First:
    """What the first call of f at params tells: the loss, its dtype, how to call f."""

    f0: float
    loss_dtype: np.dtype
    call: Callable[[], Any] | None  # f at the buffer's views, reduced to the loss
    grad: Any
    pair: bool
    array_valued: bool
    seconds: float  # how long it took (a JIT compile included)


def _first_call(f, layout, struct, buffer, grad, batched) -> _First:
    started = time.perf_counter()
    if batched:
        if grad is None:
            raise ValueError("with batched=True, pass `grad`: a batched `f` returns losses only")
        f0, loss_dtype = _loss_value(_engine.batch_values(f, layout, buffer.reshape(1, -1), 1))
        call, pair, array_valued = None, False, False
    else:
        out = f(struct)
        pair = grad is None
        if pair:
            out, grad = _split(out)
        # A torch tensor or jax array loss is reduced to a number at every call, as an array is.
        array_valued = isinstance(out, np.ndarray) or _engine.is_framework_value(out)
        call = _engine.caller(f, struct, pair=pair, array_valued=array_valued)
        f0, loss_dtype = _loss_value(out)
    seconds = time.perf_counter() - started
    if not np.isfinite(f0):
        raise ValueError(f"`f(params)` must be finite to check a gradient there, got {f0!r}")
    if callable(grad):
        grad = grad(struct)
    return _First(f0, loss_dtype, call, grad, pair, array_valued, seconds)


def _coordinates(layout, sample, directions, rng) -> np.ndarray:
    """The flat indices to check one by one: a stratified sample, none, or all."""
    if sample is not None:
        take = _plan.sample_sizes(np.diff(layout.offsets), sample)
        return _plan.draw_sample(layout.offsets, take, rng)
    if directions is not None:
        return np.empty(0, dtype=np.int64)
    return np.arange(layout.n, dtype=np.int64)


def _look_again(run, judge, layout, buffer, plan, est, analytic, result, *, f0, loss_dtype, eps):
    """Evaluate disagreeing entries again at smaller steps: kinks leave the verdicts."""
    dtype = _plan.coarser(buffer.dtype, loss_dtype)
    a = analytic[plan.idx]
    score = scores(a, est.gradapprox, result.noise_f * est.sensitivity, dtype)
    score[est.bad] = 0.0
    per_block = _refine.flagged_positions(plan, layout.offsets, score)
    examine = functools.partial(
        _refine.examine,
        run,
        buffer,
        plan,
        est,
        a,
        f0=f0,
        loss_dtype=loss_dtype,
        noise_f=result.noise_f,
        eps=eps,
    )
    mask, kinds, spent = _refine.in_rounds(examine, per_block)
    if not mask.any():
        return result, [], spent
    kinks = _kinks(layout, plan, est, a, kinds)
    on_kink = np.zeros_like(mask)
    on_kink[[pos for pos, kind in kinds if kind == "at"]] = True
    return judge(kinks=mask, on_kink=on_kink), kinks, spent


def _confirm(
    run, layout, buffer, analytic, found, rel_step, disagree, *, noise_f, f0, loss_dtype, localize
):
    """Keep, of the entries the directional search found, those a coordinate check of their
    own (by the search's rule) and a look at smaller steps still call wrong:
    ``(results, kinks, evaluations)``.

    A search direction that straddles a kink disagrees just as a bug does. A failing block
    becomes "inconclusive" only when its search ran out of ranges before its limit and every
    entry it found turned out to be a kink; otherwise it still fails, and says why nothing
    was named.
    """
    idx = np.array(sorted({i for r in found for i in r.found}), dtype=np.int64)
    if not idx.size:
        return found, [], 0
    plan = _plan.make(
        buffer, idx, method="central", eps=None, loss_dtype=loss_dtype, seed=0, rel_step=rel_step
    )
    values = run(plan)
    est = estimate(plan, values, f0)
    a = analytic[idx]
    numeric = values[:, 0] - values[:, 1]
    predicted = a * (plan.values[:, 0] - plan.values[:, 1])
    disagrees = np.array(
        [bool(np.isfinite(n) and disagree(n, p)) for n, p in zip(numeric, predicted, strict=True)]
    )
    flagged = np.flatnonzero(disagrees)
    kink, kinds, spent = _refine.examine(
        run, buffer, plan, est, a, flagged, f0=f0, loss_dtype=loss_dtype, noise_f=noise_f, eps=None
    )
    wrong = set(idx[disagrees & ~kink].tolist())
    at_kinks = set(idx[kink].tolist())
    confirmed = []
    for r in found:
        kept = tuple(i for i in r.found if i in wrong)
        if r.found and not kept and r.verdict == "fail":
            if len(r.found) < localize and at_kinks.issuperset(r.found):
                note = (
                    "the directions disagree, but each entry the search pinned down sits at "
                    "or near a kink of f; check coordinates (sample=) to judge the block"
                )
                r = replace(r, verdict="inconclusive", note=note)
            else:
                note = (
                    f"the directional search pinned down {len(r.found)} entries, none of "
                    "which a coordinate check confirms (kinks of f, or points where f is not "
                    "finite); raise localize= or check coordinates (sample=) to find the bug"
                )
                r = replace(r, note=note)
        confirmed.append(replace(r, found=kept))
    return confirmed, _kinks(layout, plan, est, a, kinds), values.size + spent


def _kinks(layout, plan, est, a, kinds) -> list[_refine.Kink]:
    return [
        _refine.Kink(
            layout.entry_name(int(plan.idx[pos])),
            kind,
            float(a[pos]),
            float(est.gradapprox[pos]),
            float(est.one_sided[pos, 0]),
            float(est.one_sided[pos, 1]),
        )
        for pos, kind in kinds
    ]


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
    if method == "complex" and (batched or engine not in ("auto", "python")):
        raise ValueError(
            "method='complex' runs in the python engine (f evaluated at complex points), "
            f"not engine={engine!r}{' with batched=True' if batched else ''}"
        )
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
    framework_dtype = _engine.framework_scalar_dtype(out)
    if framework_dtype is not None:
        # A 0-d (or size-1) torch tensor or jax array: its value, with its dtype's rules.
        return float(out.item()), framework_dtype
    if not _engine._is_scalar(out):
        shape = f" of shape {out.shape} and dtype {out.dtype}" if hasattr(out, "shape") else ""
        raise TypeError(
            f"`f` must return one real number, got {type(out).__name__}{shape}: {out!r:.80}"
        )
    # float32 losses make the steps and thresholds float32's; anything else is float64.
    dtype = np.dtype(np.float32) if isinstance(out, np.float32) else np.dtype(np.float64)
    return float(out), dtype


def _unchanged(layout, buffer: np.ndarray, pristine: np.ndarray, who: str) -> None:
    bits = f"u{buffer.itemsize}"  # bitwise: a restored value must be the very same number
    changed = np.flatnonzero(buffer.view(bits) != pristine.view(bits))
    if changed.size:
        i = int(changed[0])
        raise ValueError(
            f"{who} modified its input in place: {layout.entry_name(i)} changed from "
            f"{pristine[i]!r} to {buffer[i]!r}; the check needs f to leave its arguments alone"
        )


def _choose_engine(engine, batched, f, layout, buffer, plan, per_call) -> tuple[str, int]:
    """The engine to run, and how many extra evaluations of f choosing it took."""
    if plan.method == "complex":
        return "python", 0  # the options were checked up front
    if batched:
        if engine == "dask":
            raise ValueError("engine='dask' runs one point per call: use batched=False")
        return "batched", 0
    if engine in ("python", "dask"):
        return engine, 0
    unsuitable = _numba_unsuitable(f, layout, buffer)
    if engine == "numba":
        if unsuitable:
            raise ValueError(f"engine='numba' needs {unsuitable}")
        return "numba", 0
    if unsuitable or plan.idx.size == 0:
        return "python", 0
    if _jit.is_compiled("evaluate_flat", parallel=True):
        return "numba", 0
    extra = 0
    if per_call is None:
        per_call = _time_one(lambda: f(buffer), f, layout, buffer)
        extra = 1
    return ("numba" if per_call * plan.values.size > AUTO_NUMBA_SECONDS else "python"), extra


def _evaluate(chosen, f, call, layout, buffer, plan, *, client, how, tick=None) -> np.ndarray:
    if chosen == "batched":
        return _engine.batched_engine(f, layout, buffer, plan.idx, plan.values, tick)
    if chosen == "numba":
        return _engine.numba_engine(f, buffer, plan.idx, plan.values, tick)
    if chosen == "dask":
        client = _dask_client(client)
        worker = "numba" if not _numba_unsuitable(f, layout, buffer) else "python"
        return _engine.dask_engine(
            client,
            f,
            layout,
            buffer,
            plan.idx,
            plan.values,
            how={**how, "engine": worker},
            progress=tick,
        )
    return _engine.python_engine(call, buffer, plan.idx, plan.values, tick)


def _complex_step(f, layout, buffer, plan, analytic, how, tick, notes):
    """Im f(x + ih) for each planned coordinate, after checking f is complex-safe."""
    if not plan.idx.size:  # directions only: nothing to take the complex step on
        return np.empty((0, 1)), 0
    cbuffer = buffer.astype(np.complex128 if buffer.dtype == np.float64 else np.complex64)
    call = _engine.caller(f, layout.structure(cbuffer), **how)
    steps = plan.values[:, 0]
    values = _engine.complex_engine(call, cbuffer, plan.idx, steps, tick)
    if values.dtype.kind != "c" or (not values.imag.any() and analytic[plan.idx].any()):
        raise ValueError(
            "method='complex' needs f to carry complex input through to its result, but f "
            "returned no imaginary part: it drops it somewhere (np.abs, float(), .real, "
            "np.vdot or conjugation, a real-only kernel); use method='central'"
        )
    # Self-test: a complex-safe f gives the same Im f / h for a step 1000 times smaller.
    probe = np.argsort(-np.abs(analytic[plan.idx]), kind="stable")[:3]
    again = _engine.complex_engine(call, cbuffer, plan.idx[probe], steps[probe] * 1e-3)
    nfev_extra = int(probe.size)
    first = values.imag[probe] / steps[probe]
    second = again.imag / (steps[probe] * 1e-3)
    if not np.allclose(first, second, rtol=1e-6, atol=0):
        notes.append(
            "inconclusive: f is not complex-safe (Im f(x + ih) / h changes with h); "
            "a non-analytic operation (abs, conjugation, comparisons on complex values) "
            "breaks the complex step: use method='central'"
        )
    return values.imag[:, None], nfev_extra


def _dask_client(client):
    if client is not None:
        return client
    try:
        from distributed import get_client
    except ImportError as exc:
        raise ValueError(
            "engine='dask' needs dask.distributed: pip install 'gradcheck[dask]'"
        ) from exc
    try:
        return get_client()
    except ValueError as exc:
        raise ValueError(
            "engine='dask' needs a dask.distributed Client: pass client=, or create one first"
        ) from exc


def _time_one(call, f, layout, buffer) -> float:
    """Seconds one evaluation of f takes, at params."""
    started = time.perf_counter()
    if call is None:
        _engine.batch_values(f, layout, buffer.reshape(1, -1), 1)
    else:
        call()
    return max(time.perf_counter() - started, 1e-9)


def _fit_budget(budget, per_call, layout, sample, directions, *, method, spent):
    """Choose ``sample`` and ``directions`` (where None) so the check takes ``budget`` s.

    ``spent`` evaluations (the first call, the noise probe, the timing) are already paid;
    a coordinate costs as many evaluations as ``method`` has points.
    """
    affordable = int(budget / per_call) - spent
    per_coordinate = len(_plan.METHODS[method].offsets)
    blocks = len(layout.blocks)
    if sample is None and directions is None and per_coordinate * layout.n <= affordable:
        return None, None  # a full check fits
    if directions is None:
        # Up to 4 directions per block, on at most half the budget; at least one.
        directions = int(min(4, max(1, affordable // (4 * blocks))))
    if sample is None:
        left = affordable - 2 * directions * blocks
        fits = left // per_coordinate
        sample = int(fits) if fits >= blocks else None
    return sample, directions


# f(params) repeated may move by this many times its rounding u |f0| before the check calls
# f nondeterministic; below, the spread is noise like any other (the thresholds follow it).
NONDETERMINISTIC = 100.0
# Show a progress bar by default when a check should take longer than this.
PROGRESS_SECONDS = 3.0


def _show_progress(progress, per_call, expected) -> bool:
    if progress is not None:
        return progress
    if per_call is None or per_call * expected < PROGRESS_SECONDS:
        return False
    return sys.stderr.isatty() and _has_tqdm()


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _progress_bar(show: bool, total: int):
    if not show or total == 0:
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise ValueError("progress=True needs tqdm: pip install 'gradcheck[progress]'") from exc
    bar = tqdm(total=total, unit="coord", desc="gradcheck", file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


def _validate_large(sample, directions, localize, budget, progress) -> None:
    if sample is not None:
        is_int = isinstance(sample, Integral) and not isinstance(sample, bool)
        is_frac = isinstance(sample, float) and 0 < sample <= 1
        if not (is_int and sample > 0) and not is_frac:
            raise ValueError(
                "`sample` must be a positive int (how many coordinates) or a float in (0, 1] "
                f"(what fraction), got {sample!r}"
            )
    for name, value, low in (("directions", directions, 1), ("localize", localize, 0)):
        if value is None and name == "directions":
            continue
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, Real) or not 0 < budget < math.inf
    ):
        raise ValueError(f"`budget` must be a positive number of seconds, got {budget!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"`progress` must be True, False or None, got {progress!r}")


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
