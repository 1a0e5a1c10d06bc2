"""gradcheck for jax: check ``custom_vjp`` rules (and anything ``jax.vjp`` differentiates).

The analytic side is ``jax.vjp`` through your function, so a ``custom_vjp`` rule is what is
tested; the numeric side is gradcheck's finite differences of the same scalar projection
``<cotangent, fn(*args)>``, evaluated by ``jax.vmap`` under ``jax.jit`` when the function
allows it, on the inputs' own device.

jax is imported when :func:`check` is called, never by ``import gradcheck``.

>>> import jax.numpy as jnp, gradcheck.jax
>>> gradcheck.jax.check(jnp.sin, (jnp.arange(4.0),), seed=0).verdict
'pass'
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from . import _frameworks, _jax_modes, _modes, _options, _vjp
from ._report import Report

__all__ = ["assert_close_to_reference", "check", "compare"]

# Stacks are padded to a power of two rows (at least MIN_ROWS) so that jit compiles one
# program per size class, not one per chunk length the check happens to ask for; chunks
# stay within _frameworks.VMAP_BYTES.
MIN_ROWS = 8


def check(
    fn: Callable[..., Any],
    args: Any,
    *,
    cotangent: Any = None,
    evaluate: str = "auto",
    projections: int = 1,
    modes: str | tuple[str, ...] = "auto",
    order: int = 1,
    argnums: int | Sequence[int] | None = None,
    **options: Any,
) -> Report:
    """Check the gradients ``jax.vjp`` computes through ``fn`` (a ``custom_vjp`` rule
    included) against finite differences.

    Parameters
    ----------
    fn : callable
        ``fn(*args)`` (or ``fn(**args)`` for a dict) returns an array of any shape or a
        pytree of arrays.
    args : array, tuple / list of pytrees, or dict
        The point at which to check. Every floating array leaf (jax or numpy) is checked;
        other leaves (integers, Python numbers) are held fixed. Blocks are named by ``fn``'s
        parameter names (``input0``, ... when ``inspect.signature`` cannot read them) and
        the leaves' pytree paths: ``params.w``, ``layers[0].b``.
    cotangent : pytree of arrays, optional
        The direction ``c`` of the projection ``<c, fn(*args)>``, in the structure of the
        output. Default: standard normal entries drawn from ``seed``.
    evaluate : {"auto", "native", "float64"}
        "auto" (default), for float32 inputs: your VJP runs on them as given, and the
        finite differences on float64 copies, with 64-bit jax on for them alone, when
        ``fn`` follows its inputs' dtype (as :func:`gradcheck.check` does); the float32
        gradient is then held to pass <= 1e-4, fail > 1e-3. Otherwise, and with "native":
        the inputs' own dtype (float32 unless 64-bit jax is on or an input is
        float64), with float32's steps and thresholds for float32. "float64": both sides
        run on float64 copies inside ``jax.enable_x64`` (the global setting is left as it
        was); it needs ``fn`` to follow its inputs' dtype. A float64 input turns 64-bit mode
        on for the check in either case, so that jax does not round it to float32.
    projections : int
        How many random cotangents to check (when ``cotangent`` is None); the report is the
        worst.
    modes : {"auto", "rev", "fwd"} or a sequence of them
        "rev": ``jax.vjp`` (a ``custom_vjp`` rule) through a random projection. "fwd":
        ``jax.jvp`` (a ``custom_jvp`` rule) along a random tangent per input, so that the
        report names the input whose rule is wrong (blocks ``"x (fwd)"``). "auto"
        (default): reverse, plus forward when ``fn`` calls a ``custom_jvp`` function. With
        both, the adjoint identity ``<J t, c> = <t, J^T c>`` is checked without finite
        differences (block ``"adjoint"``, a line of its own in the notes).
    order : {1, 2}
        2 checks the derivative of the derivative: ``fn``'s VJP on a fixed cotangent,
        ``x -> J(x)^T c``, is checked in reverse mode (``jax.grad`` of the projected VJP,
        through a ``custom_vjp``'s backward), as ``jax.test_util.check_grads(order=2)``
        does. A backward that stops the gradient of an input passes at order 1 and fails
        at order 2.
    argnums : int or sequence of int, optional
        As ``jax.grad``'s: the positions of the arguments to check (of a dict's items, in
        order); the others, data among them, are held fixed. None: every argument.
    **options
        Every option of :func:`gradcheck.check`. ``batched``: None (default) evaluates the
        perturbed points with ``jax.jit(jax.vmap(...))`` when that runs, else one by one
        (jitted); True requires vmap; False never uses it.

    Returns
    -------
    Report
        As :func:`gradcheck.check` returns, with ``report.cotangent`` (numpy arrays in the
        output's structure) for replay.

    Raises
    ------
    TypeError
        ``fn`` is not callable, ``args`` holds no floating array, or ``fn`` returns no
        floating array.
    ValueError
        A bad option, ``evaluate="float64"`` on a function that does not follow its inputs'
        dtype, or any error :func:`gradcheck.check` raises.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, gradcheck.jax
    >>> @jax.custom_vjp
    ... def center(x):
    ...     return x - jnp.mean(x)
    >>> def center_fwd(x):
    ...     return center(x), x.shape[0]
    >>> def center_bwd(n, g):
    ...     return (g - jnp.sum(g),)          # a planted bug: the mean is sum / n
    >>> center.defvjp(center_fwd, center_bwd)
    >>> gradcheck.jax.check(center, (jnp.arange(5.0),), seed=0).failing
    ('x',)
    """
    jax = _jax()
    started = time.perf_counter()
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}: {fn!r:.80}")
    asked = _modes.validate(modes, order)
    run = _frameworks.settings(
        started, options, evaluate=evaluate, projections=projections, cotangent=cotangent
    )

    keyword = isinstance(args, Mapping)
    if not keyword and not isinstance(args, (tuple, list)):
        args = (args,)
    names = [str(k) for k in args] if keyword else _frameworks.parameter_names(fn, len(args))
    values = list(args.values()) if keyword else list(args)
    wanted = _argnums(argnums, len(values))
    flat = [jax.tree_util.tree_flatten_with_path(v) for v in values]
    # (arg position, leaf position) -> block name, for every floating array leaf.
    checked: dict[tuple[int, int], str] = {}
    for i, (pairs, _) in enumerate(flat):
        for j, (path, leaf) in enumerate(pairs):
            if i in wanted and _floating_array(jax, leaf):
                checked[i, j] = names[i] + _path_name(path)
    if not checked:
        raise TypeError(
            "`args` holds no floating-point array to check; got "
            + ", ".join(f"{n}: {type(v).__name__}" for n, v in zip(names, values, strict=True))
        )
    dtypes = {np.dtype(flat[i][0][j][1].dtype) for i, j in checked}
    run = replace(run, wide=run.wide or np.dtype(np.float64) in dtypes)
    with _x64(jax) if run.wide else contextlib.nullcontext():
        return _jax_modes.run(jax, _Args(fn, keyword, names, flat, checked), run, asked)


def _argnums(argnums: Any, count: int) -> set[int]:
    """The positions ``argnums`` names (negative ones from the end, as jax counts them)."""
    if argnums is None:
        return set(range(count))
    many = isinstance(argnums, (tuple, list))
    items = list(argnums) if many else [argnums]
    ok = bool(items) and all(_options.is_integer(k) and -count <= int(k) < count for k in items)
    if not ok:
        raise ValueError(
            f"`argnums` must be an integer or a sequence of integers in [{-count}, {count}) "
            f"(fn is given {count} argument{'s' * (count != 1)}), got {argnums!r}"
        )
    return {int(k) % count for k in items}


# --- the core: the checked leaves of the arguments, checked through a projection --------------


@dataclass(frozen=True)
class _Args:
    """The user's arguments, flattened: which leaves are checked and how to rebuild them."""

    fn: Callable[..., Any]
    keyword: bool  # called as fn(**args)
    names: list[str]
    flat: list  # per argument: its (path, leaf) pairs and its treedef
    checked: dict  # (argument, leaf) position -> block name, for every floating array leaf


@dataclass(frozen=True)
class _Traced:
    """The call through ``jax.vjp`` at the point: what every projection of one check shares."""

    g: Callable[[dict], Any]  # fn of the named checked leaves, the others held fixed
    put: Callable[[dict], dict]  # numpy leaves to jax arrays on the inputs' device
    point: dict  # numpy copies of the checked leaves: the point gradcheck.check differences at
    pullback: Callable[[Any], Any]  # jax.vjp's, at the point
    out_leaves: list  # the output's leaves at the point ...
    out_tree: Any  # ... and its structure
    projected: list[int]  # the floating output leaves, which the projection sums over
    float32: bool  # the loss gradcheck.check sees is float32
    acc: Any  # the projection's accumulation dtype


def _run(jax, args: _Args, run) -> Report:
    """Check the projection of ``fn`` at the checked leaves: the analytic side by
    ``jax.vjp``, the numeric side by ``gradcheck.check`` on numpy copies of them.
    """
    point, device = _point(jax, args, run.wide)
    g = partial(_call, jax, args)

    def put(named):
        return {n: jax.device_put(a, device) for n, a in named.items()}

    traced = _trace(jax, g, put, point, run.wide)
    out_leaves, projected = traced.out_leaves, traced.projected
    shapes = [out_leaves[k].shape for k in projected]
    given = partial(_given_cotangent, jax, run.cotangent, traced)
    cotangents = _frameworks.cotangents(run, shapes, given)

    def record(ct):
        leaves = iter(c.astype(out_leaves[k].dtype) for c, k in zip(ct, projected, strict=True))
        return jax.tree_util.tree_unflatten(
            traced.out_tree,
            [next(leaves) if k in projected else None for k in range(len(out_leaves))],
        )

    one = partial(_projection, jax, args, traced, run)
    return _vjp.worst_of(one, cotangents, run.started, drawn=run.drawn, record=record)


def _point(jax, args: _Args, wide: bool) -> tuple[dict, Any]:
    """The numpy copies of the checked leaves (one dtype) and the device they came from."""
    flat = args.flat
    devices = [
        leaf.devices() for pairs, _ in flat for _, leaf in pairs if isinstance(leaf, jax.Array)
    ]
    device = next(iter(devices[0])) if devices else None
    dtypes = {np.dtype(flat[i][0][j][1].dtype) for i, j in args.checked}
    if not wide and len(dtypes) > 1:
        _frameworks.refuse_mixed_dtypes("arrays", ", ".join(sorted(map(str, dtypes))))
    dtype = np.dtype(np.float64) if wide else dtypes.pop()
    point = {
        name: np.array(flat[i][0][j][1], dtype=dtype, copy=True)
        for (i, j), name in args.checked.items()
    }
    return point, device


def _call(jax, args: _Args, named: dict) -> Any:
    """``fn`` with the checked leaves taken from ``named``, the rest as the user gave them."""
    rebuilt = []
    for i, (pairs, treedef) in enumerate(args.flat):
        leaves = [
            named[args.checked[i, j]] if (i, j) in args.checked else leaf
            for j, (_, leaf) in enumerate(pairs)
        ]
        rebuilt.append(jax.tree_util.tree_unflatten(treedef, leaves))
    if args.keyword:
        return args.fn(**dict(zip(args.names, rebuilt, strict=True)))
    return args.fn(*rebuilt)


def _trace(jax, g, put, point: dict, wide: bool) -> _Traced:
    """``jax.vjp`` of ``g`` at the point, refusing outputs the check cannot project."""
    jnp = jax.numpy
    out, pullback = jax.vjp(g, put(point))
    out_leaves, out_tree = jax.tree_util.tree_flatten(out)
    projected = [k for k, o in enumerate(out_leaves) if jnp.issubdtype(o.dtype, jnp.floating)]
    if not projected:
        raise TypeError(
            f"`fn(*args)` must return floating arrays, got {_frameworks.short(out)} (dtypes "
            f"{sorted({str(o.dtype) for o in out_leaves})})"
        )
    if wide:
        _frameworks.require_float64((str(out_leaves[k].dtype) for k in projected), "float64")
    float32 = all(out_leaves[k].dtype == jnp.float32 for k in projected)
    # Projections accumulate in float64 when jax allows it, else in the output's float32.
    acc = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return _Traced(g, put, point, pullback, out_leaves, out_tree, projected, float32, acc)


def _projection(jax, args: _Args, traced: _Traced, run, ct) -> Report:
    """The check of the projection on one cotangent ``ct`` (the projected leaves' arrays)."""
    jnp = jax.numpy
    out_leaves, projected, acc = traced.out_leaves, traced.projected, traced.acc
    # Rounded to each output's dtype, as the vjp receives it: both sides project on the
    # very same numbers.
    rounded = [c.astype(out_leaves[k].dtype) for c, k in zip(ct, projected, strict=True)]

    # Every output leaf gets a cotangent: the projected ones theirs, the others zeros of
    # jax's float0 (integer outputs have no tangent space).
    it = iter(rounded)
    full = [
        next(it) if k in projected else np.zeros(o.shape, jax.dtypes.float0)
        for k, o in enumerate(out_leaves)
    ]
    (grads,) = traced.pullback(jax.tree_util.tree_unflatten(traced.out_tree, full))
    analytic = {n: np.asarray(v) for n, v in grads.items()}
    scale = float(
        sum(
            np.sum(np.abs(np.asarray(out_leaves[k], np.float64)) * np.abs(c))
            for k, c in zip(projected, rounded, strict=True)
        )
    )
    held, statics = _held(jax, args)
    one, many = _projections(jax, args, statics, tuple(projected), acc)
    cts = [jnp.asarray(c, acc) for c in rounded]
    wide = None
    if run.widen:
        wide = _wide(jax, args, traced, statics, tuple(projected), (held, rounded))
    numeric = _numeric(jax, traced, one, many, (held, cts), scale, run.batched, wide)
    return _frameworks.check_numeric(numeric, traced.point, analytic, run)


def _wide(jax, args: _Args, traced: _Traced, statics, projected: tuple, rest: tuple):
    """``(jit(project), jit(vmap(project)), arguments)`` for float64 copies of a float32
    point, with 64-bit jax on for them alone, when ``fn`` computes in float64 there (it
    follows its inputs' dtype); else None.
    """
    if not all(a.dtype == np.float32 for a in traced.point.values()):
        return None
    held, rounded = rest
    with _x64(jax):
        named = {n: jax.ShapeDtypeStruct(a.shape, np.float64) for n, a in traced.point.items()}
        try:
            leaves = jax.tree_util.tree_leaves(jax.eval_shape(traced.g, named))
        except Exception:  # a function that cannot run in float64 is checked in its own dtype
            return None
        if not all(leaves[k].dtype == np.float64 for k in traced.projected):
            return None
        one, many = _projections(jax, args, statics, projected, jax.numpy.float64)
        cts = [jax.numpy.asarray(c, jax.numpy.float64) for c in rounded]
    return one, many, (held, cts)


def _numeric(
    jax,
    traced: _Traced,
    jitted,
    vmapped,
    rest: tuple,
    scale: float,
    batched: bool | None,
    wide: tuple | None = None,
):
    """The numpy loss ``gradcheck.check`` differences: ``(f, batched, note)``.

    ``vmapped`` (``jit(vmap(project))``) on stacks (unless ``batched`` is False), tried once
    on two rows and kept when it runs and agrees with ``jitted`` (``jit(project)``) at the
    inputs; otherwise ``jitted`` one point at a time, and ``note`` says why. ``rest``: the
    held leaves and the cotangents, their last arguments. ``wide`` (``_wide``): the
    projection of float64 copies, which evaluates the float64 points ``gradcheck.check``
    asks for (with 64-bit jax on for them alone) when it evaluates f there ("auto").
    """
    put, point = traced.put, traced.point
    # A function that follows its inputs' dtype returns float64 values, so that
    # gradcheck.check evaluates it on float64 copies; the first call, on the float32
    # point, tells it the parameters' own precision.
    loss_dtype = np.float32 if traced.float32 and wide is None else np.float64

    def widened(struct) -> bool:
        return wide is not None and next(iter(struct.values())).dtype == np.float64

    def one(struct):
        if wide is not None and widened(struct):
            with _x64(jax):
                return np.float64(wide[0](put(struct), *wide[2]))
        return loss_dtype(jitted(put(struct), *rest))

    want = float(one(point))

    def call(part):
        if wide is not None and widened(part):
            with _x64(jax):
                return np.asarray(wide[1](put(part), *wide[2]))
        return np.asarray(vmapped(put(part), *rest))

    out_numel = sum(int(np.prod(traced.out_leaves[k].shape)) for k in traced.projected)
    rows = max(MIN_ROWS, 1 << int(np.log2(_frameworks.vmap_rows(point, out_numel))))
    return _frameworks.vmap_or_loop(
        one,
        _frameworks.stacked(call, rows, loss_dtype, pad=_padded),
        point,
        lambda: want,
        batched=batched,
        tol=_frameworks.agreement(loss_dtype, scale),
        refusal=_refusal,
    )


# jit(project) and jit(vmap(project)) per function and argument structure, reused by every
# check of the same function: jax.jit then compiles once per shape, where a new closure per
# check compiled again every time (2-10 s a check on real rules). The oldest go first.
_COMPILED: dict = {}
_COMPILED_MOST = 32


def _held(jax, args: _Args) -> tuple[list, tuple | None]:
    """The leaves not checked: arrays (arguments of the compiled projection, so new data of
    the same shapes reuses it) and the others (static: part of the cache's key, or None
    when one cannot be hashed).
    """
    arrays, statics = [], []
    for i, (pairs, _) in enumerate(args.flat):
        for j, (_, leaf) in enumerate(pairs):
            if (i, j) in args.checked:
                continue
            if isinstance(leaf, (np.ndarray, jax.Array)):
                arrays.append(leaf)
            else:
                statics.append(((i, j), type(leaf), leaf))
    try:
        hash(tuple(statics))
    except TypeError:
        return arrays, None
    return arrays, tuple(statics)


def _projections(jax, args: _Args, statics: tuple | None, projected: tuple, acc):
    """``(jit(project), jit(vmap(project)))``, ``project(named, held, cts)`` being the
    projection of ``fn`` on the cotangents ``cts`` with the checked leaves from ``named``
    and the other array leaves from ``held``.
    """
    jnp = jax.numpy
    treedefs = tuple(treedef for _, treedef in args.flat)
    checked_at = tuple(args.checked.items())
    key: tuple = (args.fn, args.keyword, tuple(args.names), treedefs, checked_at, statics)
    key += (projected, np.dtype(acc).name)
    if statics is not None and key in _COMPILED:
        return _COMPILED[key]
    sizes = [len(pairs) for pairs, _ in args.flat]
    fixed = {} if statics is None else {where: leaf for where, _, leaf in statics}
    if statics is None:  # unhashable static leaves: this check's own, not cached
        fixed = {
            (i, j): leaf
            for i, (pairs, _) in enumerate(args.flat)
            for j, (_, leaf) in enumerate(pairs)
            if (i, j) not in args.checked and not isinstance(leaf, (np.ndarray, jax.Array))
        }
    fn, keyword, names, checked = args.fn, args.keyword, list(args.names), dict(args.checked)

    def project(named, held, cts):
        it = iter(held)
        rebuilt = []
        for i, size in enumerate(sizes):
            leaves = [_leaf(named, checked, fixed, it, (i, j)) for j in range(size)]
            rebuilt.append(jax.tree_util.tree_unflatten(treedefs[i], leaves))
        out = fn(**dict(zip(names, rebuilt, strict=True))) if keyword else fn(*rebuilt)
        ys = jax.tree_util.tree_leaves(out)
        total = jnp.zeros((), acc)
        for k, c in zip(projected, cts, strict=True):
            total = total + jnp.sum(ys[k].astype(acc) * c)
        return total

    pair = (jax.jit(project), jax.jit(jax.vmap(project, in_axes=(0, None, None))))
    if statics is not None:
        while len(_COMPILED) >= _COMPILED_MOST:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = pair
    return pair


def _leaf(named: dict, checked: dict, fixed: dict, held, where: tuple) -> Any:
    """The leaf at ``where``: checked (from ``named``), static, or the next held array."""
    if where in checked:
        return named[checked[where]]
    return fixed[where] if where in fixed else next(held)


def _padded(part: dict) -> dict:
    """A chunk padded to its size class with copies of its first row (a real point)."""
    count = len(next(iter(part.values())))
    size = max(MIN_ROWS, 1 << (count - 1).bit_length())
    padded = {}
    for k, a in part.items():
        block = np.empty((size, *a.shape[1:]), a.dtype)
        block[:count] = a
        block[count:] = a[0]
        padded[k] = block
    return padded


def _refusal(exc, got, want) -> _frameworks.Refusal:
    why = "jax.vmap changed its value at the inputs" if exc is None else _frameworks.why(exc)
    return _frameworks.refused("jax.vmap", "evaluate", why)


# --- helpers ----------------------------------------------------------------------------------


def _jax():
    try:
        import jax
    except ImportError as exc:  # pragma: no cover - the tests run with jax installed
        raise ImportError("gradcheck.jax needs jax: pip install 'gradcheck[jax]'") from exc
    return jax


def _x64(jax):
    """A context with 64-bit jax on, leaving the global setting as it was."""
    if jax.config.jax_enable_x64:
        return contextlib.nullcontext()
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax before 0.6 had it in jax.experimental
        from jax.experimental import enable_x64 as enable
    return enable(True)


def _floating_array(jax, leaf: Any) -> bool:
    return isinstance(leaf, (np.ndarray, jax.Array)) and np.dtype(leaf.dtype).kind == "f"


def _path_name(path: tuple) -> str:
    """``.w``, ``[0]``, ``.layers[0].b``: a pytree path in the report's naming."""
    parts = []
    for key in path:
        if hasattr(key, "key"):  # DictKey, FlattenedIndexKey
            k = key.key
            parts.append(f".{k}" if isinstance(k, str) else f"[{k!r}]")
        elif hasattr(key, "idx"):  # SequenceKey
            parts.append(f"[{key.idx}]")
        elif hasattr(key, "name"):  # GetAttrKey (namedtuples, dataclasses)
            parts.append(f".{key.name}")
        else:
            parts.append(f"[{key}]")
    return "".join(parts)


def _given_cotangent(jax, cotangent, traced: _Traced) -> list[np.ndarray]:
    leaves, tree = jax.tree_util.tree_flatten(cotangent)
    if tree != traced.out_tree:
        raise ValueError(
            f"`cotangent` must have the output's structure {traced.out_tree}, got {tree}"
        )
    return [
        _frameworks.cotangent_leaf(
            np.asarray(leaves[k]), tuple(traced.out_leaves[k].shape), f"`cotangent` leaf {k}"
        )
        for k in traced.projected
    ]


# The low-precision comparison lives in its own module; it is part of this adapter's face.
from ._jax_compare import assert_close_to_reference, compare  # noqa: E402
