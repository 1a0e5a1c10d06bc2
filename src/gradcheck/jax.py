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
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from . import _vjp
from ._check import check as _check
from ._report import Report

__all__ = ["check"]

# Memory for one vmapped call (rows and outputs, room for intermediates); larger stacks are
# split. Stacks are padded to a power of two rows (at least MIN_ROWS) so that jit compiles
# one program per size class, not one per chunk length the check happens to ask for.
VMAP_BYTES = 64 << 20
MIN_ROWS = 8
# As in gradcheck.torch: vmapped and single-point values at the inputs agree to rounding.
VMAP_AGREE_ULPS = 1000.0


def check(
    fn: Callable[..., Any],
    args: Any,
    *,
    cotangent: Any = None,
    evaluate: str = "native",
    projections: int = 1,
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
    evaluate : {"native", "float64"}
        "native": the inputs' own dtype (float32 unless 64-bit jax is on or an input is
        float64), with float32's steps and thresholds for float32. "float64": both sides
        run on float64 copies inside ``jax.enable_x64`` (the global setting is left as it
        was); it needs ``fn`` to follow its inputs' dtype. A float64 input turns 64-bit mode
        on for the check in either case, so that jax does not round it to float32.
    projections : int
        How many random cotangents to check (when ``cotangent`` is None); the report is the
        worst.
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
    _vjp.validate_evaluate(evaluate)
    projections = _vjp.validate_projections(projections, cotangent)
    seed = _vjp.resolve_seed(options.pop("seed", None))
    batched = _vjp.adapter_batched(options)

    keyword = isinstance(args, Mapping)
    if not keyword and not isinstance(args, (tuple, list)):
        args = (args,)
    names = [str(k) for k in args] if keyword else _vjp.parameter_names(fn, len(args))
    values = list(args.values()) if keyword else list(args)
    flat = [jax.tree_util.tree_flatten_with_path(v) for v in values]
    # (arg position, leaf position) -> block name, for every floating array leaf.
    checked: dict[tuple[int, int], str] = {}
    for i, (pairs, _) in enumerate(flat):
        for j, (path, leaf) in enumerate(pairs):
            if _floating_array(jax, leaf):
                checked[i, j] = names[i] + _path_name(path)
    if not checked:
        raise TypeError(
            "`args` holds no floating-point array to check; got "
            + ", ".join(f"{n}: {type(v).__name__}" for n, v in zip(names, values, strict=True))
        )
    dtypes = {np.dtype(flat[i][0][j][1].dtype) for i, j in checked}
    wide = evaluate == "float64" or np.dtype(np.float64) in dtypes
    with _x64(jax) if wide else contextlib.nullcontext():
        return _run(
            jax,
            fn,
            keyword,
            names,
            flat,
            checked,
            wide=wide,
            cotangent=cotangent,
            projections=projections,
            seed=seed,
            batched=batched,
            options=options,
            started=started,
        )


def _run(jax, fn, keyword, names, flat, checked, **kw) -> Report:
    jnp = jax.numpy
    wide = kw["wide"]
    devices = [
        leaf.devices() for pairs, _ in flat for _, leaf in pairs if isinstance(leaf, jax.Array)
    ]
    device = next(iter(devices[0])) if devices else None
    dtypes = {np.dtype(flat[i][0][j][1].dtype) for i, j in checked}
    if not wide and len(dtypes) > 1:
        raise ValueError(
            f"the checked arrays mix dtypes ({', '.join(sorted(map(str, dtypes)))}); use "
            "evaluate='float64', or give them one dtype"
        )
    dtype = np.dtype(np.float64) if wide else dtypes.pop()
    # numpy copies of the checked leaves (the point), and the rest held fixed.
    point = {
        name: np.array(flat[i][0][j][1], dtype=dtype, copy=True) for (i, j), name in checked.items()
    }

    def g(named):
        rebuilt = []
        for i, (pairs, treedef) in enumerate(flat):
            leaves = [
                named[checked[i, j]] if (i, j) in checked else leaf
                for j, (_, leaf) in enumerate(pairs)
            ]
            rebuilt.append(jax.tree_util.tree_unflatten(treedef, leaves))
        return fn(**dict(zip(names, rebuilt, strict=True))) if keyword else fn(*rebuilt)

    def put(named):
        return {n: jax.device_put(a, device) for n, a in named.items()}

    out, pullback = jax.vjp(g, put(point))
    out_leaves, out_tree = jax.tree_util.tree_flatten(out)
    projected = [k for k, o in enumerate(out_leaves) if jnp.issubdtype(o.dtype, jnp.floating)]
    if not projected:
        raise TypeError(
            f"`fn(*args)` must return floating arrays, got {_vjp.short(out)} (dtypes "
            f"{sorted({str(o.dtype) for o in out_leaves})})"
        )
    if wide and any(out_leaves[k].dtype != jnp.float64 for k in projected):
        got = sorted({str(out_leaves[k].dtype) for k in projected} - {"float64"})
        raise ValueError(
            f"evaluate='float64' needs the function to follow its inputs' dtype, but on "
            f"float64 inputs it returned {', '.join(got)}: use evaluate='native'"
        )
    float32 = all(out_leaves[k].dtype == jnp.float32 for k in projected)
    cotangent, projections, seed = kw["cotangent"], kw["projections"], kw["seed"]
    if cotangent is None:
        shapes = [out_leaves[k].shape for k in projected]
        cotangents = [
            _vjp.draw_like(_vjp.cotangent_rng(seed, k), shapes) for k in range(projections)
        ]
    else:
        cotangents = [_given_cotangent(jax, cotangent, out_tree, out_leaves, projected)]
    # Projections accumulate in float64 when jax allows it, else in the output's float32.
    acc = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    out_numel = sum(int(np.prod(out_leaves[k].shape)) for k in projected)

    def run_one(ct):
        # Rounded to each output's dtype, as the vjp receives it: both sides project on the
        # very same numbers.
        rounded = [c.astype(out_leaves[k].dtype) for c, k in zip(ct, projected, strict=True)]
        full = list(rounded_iter(rounded))

        def project(named):
            ys = jax.tree_util.tree_leaves(g(named))
            total = jnp.zeros((), acc)
            for k, c in zip(projected, rounded, strict=True):
                total = total + jnp.sum(ys[k].astype(acc) * jnp.asarray(c, acc))
            return total

        (grads,) = pullback(jax.tree_util.tree_unflatten(out_tree, full))
        analytic = {n: np.asarray(v) for n, v in grads.items()}
        scale = float(
            sum(
                np.sum(np.abs(np.asarray(out_leaves[k], np.float64)) * np.abs(c))
                for k, c in zip(projected, rounded, strict=True)
            )
        )
        f, is_batched, note = _numeric(
            jax, project, put, point, kw["batched"], float32, scale, out_numel
        )
        report = _check(f, point, analytic, seed=seed, batched=is_batched, **kw["options"])
        return replace(report, notes=(*report.notes, note)) if note else report

    def rounded_iter(rounded):
        # Every output leaf gets a cotangent: the projected ones theirs, the others zeros of
        # jax's float0 (integer outputs have no tangent space).
        it = iter(rounded)
        for k, o in enumerate(out_leaves):
            yield next(it) if k in projected else np.zeros(o.shape, jax.dtypes.float0)

    def record(ct):
        leaves = iter(c.astype(out_leaves[k].dtype) for c, k in zip(ct, projected, strict=True))
        return jax.tree_util.tree_unflatten(
            out_tree, [next(leaves) if k in projected else None for k in range(len(out_leaves))]
        )

    return _vjp.worst_of(run_one, cotangents, kw["started"], drawn=cotangent is None, record=record)


def _numeric(jax, project, put, point, batched, float32, scale, out_numel):
    """The numpy loss ``gradcheck.check`` differences: ``(f, batched, note)``.

    ``jit(vmap(project))`` on stacks (unless ``batched`` is False), tried once on two rows
    and kept when it runs and agrees with ``jit(project)`` at the inputs; otherwise
    ``jit(project)`` one point at a time, and ``note`` says why.
    """
    loss_dtype = np.float32 if float32 else np.float64
    eps = float(np.finfo(loss_dtype).eps)
    # What jax.vjp traced, jit traces too: the one-point f is always jitted.
    jitted = jax.jit(project)

    def one(struct):
        return loss_dtype(jitted(put(struct)))

    want = float(one(point))

    def agrees(values) -> bool:
        return all(abs(float(v) - want) <= VMAP_AGREE_ULPS * eps * scale for v in values)

    if batched is False:
        return one, False, None

    vmapped = jax.jit(jax.vmap(project))
    n = sum(a.size for a in point.values())
    rows = max(MIN_ROWS, 1 << int(np.log2(max(1, VMAP_BYTES // (8 * (n + 4 * out_numel))))))

    def many(struct):
        count = len(next(iter(struct.values())))
        values = np.empty(count)
        for lo in range(0, count, rows):
            hi = min(lo + rows, count)
            size = max(MIN_ROWS, 1 << (hi - lo - 1).bit_length())  # the padded size
            part = {}
            for k, a in struct.items():
                block = np.empty((size, *a.shape[1:]), a.dtype)
                block[: hi - lo] = a[lo:hi]
                block[hi - lo :] = a[lo]  # padding rows: a real point, discarded
                part[k] = block
            values[lo:hi] = np.asarray(vmapped(put(part)))[: hi - lo]
        return values.astype(loss_dtype)

    try:
        ok = agrees(many({k: np.repeat(a[None], 2, axis=0) for k, a in point.items()}))
        why = "" if ok else "jax.vmap changed its value at the inputs"
    except Exception as exc:
        ok, why = False, _why(exc)
    if not ok:
        if batched:
            raise ValueError(f"batched=True, but jax.vmap cannot evaluate the function: {why}")
        return one, False, f"evaluated point by point: jax.vmap cannot run it ({why:.160})"
    return many, True, None


def _why(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


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


def _given_cotangent(jax, cotangent, out_tree, out_leaves, projected) -> list[np.ndarray]:
    leaves, tree = jax.tree_util.tree_flatten(cotangent)
    if tree != out_tree:
        raise ValueError(f"`cotangent` must have the output's structure {out_tree}, got {tree}")
    arrays = []
    for k in projected:
        arr = np.asarray(leaves[k])
        want = tuple(out_leaves[k].shape)
        if arr.shape != want or arr.dtype.kind not in "iuf":
            raise ValueError(
                f"`cotangent` leaf {k} must be real with the output's shape {want}, got "
                f"{arr.dtype} of shape {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"`cotangent` leaf {k} must be finite")
        arrays.append(arr.astype(np.float64))
    return arrays
