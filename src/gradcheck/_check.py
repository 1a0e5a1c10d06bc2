"""The public entry points: validate, set the check up, then run the passes in order.

options -> problem -> plan -> evaluator -> passes (estimate, compare, refine, directions) ->
report. Each stage is a module; this one sets up the :class:`~._context.Check` the passes
read (the seed's streams, the selection fitted to a budget, the noise probe, the judge) and
calls them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import (
    _budget,
    _compare,
    _control,
    _directions,
    _estimate,
    _evaluator,
    _habits,
    _noise,
    _options,
    _plan,
    _policy,
    _problem,
    _progress,
    _refine,
    _report,
    _reproduce,
    _results,
)
from ._context import Check, Findings, Streams
from ._judge import Judge
from ._problem import Problem
from ._report import Report


def check(
    f: Callable[..., Any],
    params: Any,
    grad: Any = None,
    *,
    eps: float | None = None,
    method: str = "central",
    seed: int | None = None,
    engine: str = "auto",
    workers: int | None = None,
    batched: bool = False,
    tol: float | tuple[float, float] | None = None,
    sample: int | float | None = None,
    directions: int | None = None,
    localize: int = 8,
    budget: float | None = None,
    client: Any = None,
    progress: bool | None = None,
    noise: bool = True,
    evaluate: str = "auto",
    control: bool = False,
    args: tuple = (),
    **refused: Any,
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
        They are copied once and never modified. An empty array is skipped (listed as
        ``empty``); parameters that are all empty are refused.
    grad : same structure as ``params``, callable, or None
        The gradient under test. Mapping keys may be the parameters' keys or course-style
        ``d``-prefixed ones (``dW1`` for ``W1``); extra keys (``dZ1``, ``dA1``, ...) are
        ignored; a mapping holding both ``W1`` and ``dW1`` with different values is refused.
        For structured ``params``, also one flat 1-D array of all their entries in the
        parameters' order. A callable is called once as ``grad(params)``. None: ``f``
        returns it.
    eps : float, optional
        An absolute step for every coordinate, divided by ``2 * eps`` as the classic exercise
        does (``eps=1e-7`` reproduces its numbers). Default: a relative step
        ``eps_dtype**(1/3) * max(1, |x_i|)`` (central) chosen from the coarser of the
        parameter and loss dtypes, divided by the step actually taken.
    method : {"central", "forward", "richardson", "complex"}
        The difference formula. "central" (default): 2 evaluations per coordinate, error
        O(h^2), step ``eps**(1/3) * max(1, |x|)``. "forward": 1 evaluation, error O(h), step
        ``eps**(1/2) * max(1, |x|)``. "richardson": central differences at h and h/2
        combined to cancel the h^2 term, 4 evaluations, error O(h^4), step
        ``eps**(1/5) * max(1, |x|)``. "complex": the complex step ``Im f(x + ih) / h``, 1
        evaluation, exact to rounding (h = 1e-20; 1e-10 in float32), for an ``f`` that
        carries complex input through to its result; held to ``(1e-10, 1e-8)`` (float32
        ``(1e-5, 1e-3)``); python engine only.
    seed : int, optional
        Recorded in the report so a check can be replayed; drawn when None.
    engine : {"auto", "python", "numba", "batched", "dask"}
        "auto" picks "batched" when ``batched=True``, "numba" for a jitted flat ``f`` whose
        check is long enough to repay compiling the kernel, and "python" otherwise. "dask"
        sends slices of the coordinates to the workers of a ``dask.distributed`` client,
        each running the serial Python or numba engine.
    workers : int, optional
        Threads the python engine evaluates ``f`` on, each perturbing its own copy of the
        parameters (``f`` gets its own views of that copy) with BLAS held to one thread
        (when threadpoolctl is installed). ``f`` must be thread-safe: no shared mutable
        state (a cache on ``self``, a global counter); numpy releases the GIL in its
        kernels, so a numpy ``f`` runs on every core. Each worker holds a copy of the
        parameters. 1: serial. None (default): every core (as many as 1 GiB of copies
        allows) when the check is expected to take longer than half a second (the first
        call's time times the evaluations), serially otherwise. The results are those of
        the serial engine, bit for bit. Other engines ignore it.
    batched : bool
        ``f`` takes a stack of parameter vectors (see ``f``).
    tol : float or (float, float), optional
        One threshold (pass at or below it, fail above), or ``(pass, fail)`` with "warn" in
        between. Default by dtype: float64 ``(1e-7, 1e-5)``, float32 ``(1e-3, 1e-2)``.
    sample : int or float, optional
        Check a random sample of coordinates instead of all: an int is how many, a float in
        (0, 1] what fraction; about that many in all, whatever the number of blocks.
        Stratified by need: every block gets at least 4 (or all it has) when the total
        allows, the smallest blocks are pooled and sampled together when it does not; blocks
        of up to 32 entries are checked whole on at most half of the rest, and the rest is
        shared in proportion to size; drawn without replacement from ``seed``.
        ``report.blocks[name].miss_probability(p)`` is the chance that a bug touching a
        fraction ``p`` of a block went unseen (by the coordinates and by the directions: see
        :meth:`BlockResult.miss_probability`).
    directions : int, optional
        Also compare ``v . grad`` with the directional difference along this many random
        Gaussian directions per block (2 evaluations each, whatever the block's size). Alone
        (without ``sample``), no coordinate is checked one by one. The step along a
        direction of norm 1 is ``eps`` when given, else the central relative step.
    localize : int
        When a block fails its directions, halve its coordinates and test the halves with
        directions of their own, recursively, until up to this many wrong entries are found
        (about 4 log2(n) evaluations each); they are listed in ``blocks[name].localized``.
        0 turns the search off.
    budget : float, optional
        Seconds to spend: one evaluation of ``f`` is timed and ``sample`` and
        ``directions`` (those left None) are chosen to fit; a full check when it fits.
        Directions per block come first, then time kept to localise a wrong entry they
        flag, then sampled coordinates. A block left too thinly checked to have seen a
        bug in 1% of its entries (even odds of missing it) makes the check
        "inconclusive", and a note says so. A check that fails nowhere spends the time
        its plan left on more rounds of directions (up to 32 per block), which shrinks
        what it could have missed (``blocks[name].reach``).
    client : dask.distributed.Client, optional
        For ``engine="dask"``; default: the current client.
    progress : bool, optional
        Show a progress bar (tqdm) on stderr. Default: when the check is expected to take
        more than a few seconds and stderr is a terminal.
    noise : bool
        Probe f's noise first (about twenty evaluations, through the check's engine): call
        it twice more at ``params``
        (a non-deterministic f makes the check "inconclusive") and estimate its noise level
        along a random line (Moré & Wild's ECnoise), which sets what the finite differences
        can resolve. False: assume rounding noise ``u * |f(params)|`` only.
    args : tuple
        Extra arguments, as ``scipy.optimize.check_grad`` takes them: ``f(params, *args)``
        and a callable ``grad(params, *args)``.
    **refused
        Refused, with what gradcheck uses instead of the keywords of other checkers
        (``atol``/``rtol``: ``tol``; ``fast_mode``: ``directions``; ``raise_exception``:
        :func:`assert_gradient`; ``epsilon``: ``eps``).
    evaluate : {"auto", "float64", "native"}
        For float32 parameters. "auto": when ``f`` follows its input's dtype (given float64
        copies, it computes in float64), evaluate it there, so that the finite differences
        are accurate to float64's resolution; the float32 gradient is then held to what
        its own float32 rounding leaves, ``(1e-4, 1e-3)``, which a 0.5% error in every
        entry fails. Otherwise, and with "native", evaluate in float32 (steps, noise and
        thresholds of float32). "float64" insists (an error if ``f`` casts to float32 inside).
        Finding out costs one more evaluation of ``f``.
    control : bool
        A negative control: for each block that does not fail, plant in a copy of the
        gradient (the given arrays are never touched) one checked entry off by the
        block's ``reach.entry`` and the whole block times ``1 + reach.factor``, judge each
        again over the finite differences already taken (no evaluation of ``f``), and
        list the outcomes in ``blocks[name].controls``; the report says how many failed.
        Every report states what it could have missed (``blocks[name].reach``); the
        control shows that an error of that size does fail.

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
        ``params``, parameters that are all empty, a gradient mapping with both ``W1`` and
        ``dW1`` differing, a bad option, or ``f`` that modifies its input.

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
    if not callable(f):
        raise TypeError(f"`f` must be callable, got {type(f).__name__}: {f!r:.80}")
    _habits.scipy_order(params)
    if refused:
        _habits.refuse_unknown(refused, sorted(_options.NAMES | {"args"}))
    if not isinstance(args, tuple):
        raise TypeError(f"`args` must be a tuple (f(params, *args)), got {args!r:.80}")
    if args:
        f, grad = _with_args(f, grad, args)
    options = _options.validate(
        eps=eps,
        method=method,
        seed=seed,
        engine=engine,
        workers=workers,
        batched=batched,
        tol=tol,
        sample=sample,
        directions=directions,
        localize=localize,
        budget=budget,
        client=client,
        progress=progress,
        noise=noise,
        evaluate=evaluate,
        control=control,
    )
    return run(f, params, grad, options, started=started)


# The passes, in the order they run: each reads the check and what the passes before it
# found, and returns the findings with its own added. A new kind of check is a new pass here.
PASSES = (
    _estimate.run,
    _compare.run,
    _reproduce.run,
    _refine.run,
    _directions.run,
    _control.run,
)


def run(
    f: Callable[..., Any],
    params: Any,
    grad: Any,
    options: _options.Options,
    *,
    blocks: Sequence[int] | None = None,
    started: float | None = None,
) -> Report:
    """Check with validated ``options``; ``blocks`` limits it to those block indices."""
    started = time.perf_counter() if started is None else started
    problem = _problem.build(f, params, grad, batched=options.batched, evaluate=options.evaluate)
    seed = int(np.random.default_rng().integers(2**63)) if options.seed is None else options.seed
    streams = _streams(seed, options)
    evaluator = _evaluator.Evaluator(problem, client=options.client)
    scope = tuple(range(len(problem.layout.blocks))) if blocks is None else tuple(blocks)
    # With a budget the noise probe runs first, so that the plan is fitted to the time it
    # really left rather than to its worst case.
    noise = _probe(evaluator, options, streams.noise, scope) if options.budget else None
    selection, deadline = _budget.select(evaluator, options, streams.sample, blocks, started)
    plan = _plan.make(
        problem.theta,
        selection.idx,
        method=options.method,
        eps=options.eps,
        loss_dtype=problem.loss_dtype,
        seed=seed,
    )
    _plan.refuse_collapsed(plan, problem.layout, problem.theta, options.eps)
    per_call = deadline.per_call or None
    evaluator.choose(options.engine, plan, per_call, options.workers)
    noise = noise or _probe(evaluator, options, streams.noise, selection.blocks)
    judge = Judge.build(
        problem.tol_dtype, options.method, options.tol, noise.level, widened=problem.widened
    )
    expected = plan.values.size + 2 * (selection.directions or 0) * len(selection.blocks)
    show = _progress.wanted(options.progress, per_call or problem.seconds, expected)
    findings = Findings(plan, notes=(noise.note,) if noise.note else ())
    with evaluator.progress(show, expected) as bar:
        check = Check(problem, evaluator, judge, deadline, options, seed, selection, streams, bar)
        for step in PASSES:
            findings = step(check, findings)
            evaluator.verify()
    findings = findings.with_notes((*_widening(problem), *_unresolved(check, findings)))
    if options.budget is not None:
        c = findings.compared
        findings = findings.with_notes(_budget.unseen(c.blocks[k] for k in selection.blocks))
    return _report.build(check, findings, time.perf_counter() - started)


def _streams(seed: int, options: _options.Options) -> Streams:
    """Generators for the noise probe, the sample and the directions.

    The k-th is the k-th child of ``SeedSequence(seed)``, made only when used (None
    otherwise): making one costs a small check more than its compare does.
    """
    fitted = options.budget is not None
    used = (
        options.noise,
        options.sample is not None or fitted,
        options.directions is not None or fitted,
    )
    rngs = [
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,))) if u else None
        for k, u in enumerate(used)
    ]
    return Streams(*rngs)


def _with_args(f, grad, args: tuple):
    """``f`` and a callable ``grad`` with the extra arguments bound (scipy's ``args=``)."""

    def bound_f(params):
        return f(params, *args)

    bound_grad = grad
    if callable(grad):

        def bound_grad(params):
            return grad(params, *args)

    return bound_f, bound_grad


def _widening(problem: Problem) -> tuple[_results.Note, ...]:
    if not problem.widened:
        return ()
    return (
        _results.Note(
            "float32 parameters, f evaluated on float64 copies (it follows its input's "
            f"dtype): the float32 gradient is held to {_policy.WIDENED_THRESHOLDS}, what its "
            "own float32 rounding leaves against differences accurate to float64's; "
            "evaluate='native' checks in float32"
        ),
    )


def _unresolved(check: Check, findings: Findings) -> tuple[_results.Note, ...]:
    """What to do when float32 differences leave disagreeing entries at "warn".

    Entries that score above 1 disagree, yet float32's thresholds let a 1% error in every
    entry through as "warn": only differences in float64 can tell it from rounding.
    """
    problem, judge = check.problem, check.judge
    if problem.widened or problem.tol_dtype != _policy.F32 or not judge.adaptive:
        return ()
    c = findings.compared
    blocks = [c.blocks[k] for k in check.selection.blocks]
    if judge.final(blocks, findings.notes) != _results.Verdict.WARN:
        return ()
    if not any(e.score > 1 for e in c.worst):
        return ()
    return (
        _results.Note(
            "entries disagree (scores above 1), but differences of f in float32 cannot tell "
            "an error of a few percent from rounding, so this is only 'warn': let f compute "
            "in its input's dtype (no cast to float32 inside), so that the default "
            "evaluate='auto' differences it on float64 copies, or check with "
            "evaluate='float64'"
        ),
    )


def _probe(
    evaluator: _evaluator.Evaluator,
    options: _options.Options,
    rng: np.random.Generator | None,
    scope: Sequence[int],
) -> _noise.Noise:
    """The noise of f, measured along a line over the blocks in scope, or rounding alone."""
    problem = evaluator.problem
    if not options.noise or rng is None:  # no stream is made without the probe
        return _noise.Noise(_noise.rounding(problem.f0, problem.dtype))
    offsets = problem.layout.offsets
    lo, hi = int(offsets[min(scope)]), int(offsets[max(scope) + 1])
    if hi == lo:  # every block in scope is empty: the line has nowhere to go
        lo, hi = 0, problem.n
    # A line over NOISE_SPAN entries shows f's noise as well as one over millions, and its
    # points cost f alone rather than f plus writing millions of entries (0.9 s of a 1 s
    # monitor check on a 1.9M-parameter MLP).
    hi = min(hi, lo + _policy.NOISE_SPAN)
    return _noise.measure(problem, evaluator, rng, lo, hi)


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
    __tracebackhide__ = True  # pytest shows the test's line, not gradcheck's source
    report = check(f, params, grad, **options)
    if not report.passed:
        # The first line is the headline (verdict, failing blocks): pytest's one-line
        # summary shows it.
        raise AssertionError(str(report))
    return report
