"""``gradcheck.jax.compare``: a low-precision kernel against a float64 reference.

jax is imported when a function here is called, never by ``import gradcheck``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _frameworks, _jax_modes, _lowprec, _lowprec_run, _modes, _projection
from ._jax_backend import Jax, path_name
from ._lowprec import CompareReport
from ._lowprec_run import Pair, Run, Setting


def compare(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    args: Any,
    *,
    dtype: Any = None,
    cotangent: Any = None,
    seed: int | None = None,
    factor: Any = None,
    check_reference: bool = True,
    dependence: bool = True,
    **options: Any,
) -> CompareReport:
    """Compare a low-precision kernel's outputs and gradients (a ``custom_vjp`` rule) with
    a float64 reference, relative to what the reference itself reaches in the kernel's
    dtype.

    The same comparison as :func:`gradcheck.torch.compare`: the truth is ``reference`` in
    float64 (forward and ``jax.vjp``), the baseline ``reference`` in ``dtype``, the kernel
    ``fn`` in ``dtype``; every run sees the same inputs (rounded to ``dtype`` once) and the
    same cotangent. The runs take place inside ``jax.enable_x64`` (the global setting is
    left as it was).

    Parameters
    ----------
    fn : callable
        The kernel, ``fn(*args)`` (``fn(**args)`` for a dict): an array or a pytree of
        arrays.
    reference : callable
        The same function written plainly; float64 in, float64 out.
    args : array, tuple / list of pytrees, or dict
        The point. Every floating array leaf is cast to ``dtype`` and gets its gradient
        compared, named ``d`` + the argument's name (``fn``'s parameter name, or the dict
        key) and the leaf's path: ``dq``, ``dparams.w``.
    dtype : jax dtype, optional
        ``jnp.bfloat16`` (default), ``jnp.float16`` or ``jnp.float32``.
    cotangent : pytree of arrays, optional
        The output's cotangent (its structure); default standard normal from ``seed``,
        rounded to ``dtype``.
    seed : int, optional
        Seeds the cotangent, the dependence moves and the reference's check.
    factor : float or (float, float), optional
        The ratio allowed over the baseline's error for outputs and gradients; default
        (2, 3).
    check_reference : bool
        First check the reference's float64 gradient with :func:`gradcheck.jax.check` (every
        coordinate of up to 256, else 4 random directions per input, unless ``options``
        say otherwise).
    dependence : bool
        Move each input once and run the kernel and the truth again, to find results that
        do not depend on an input they should.
    **options
        Passed to the reference's check.

    Returns
    -------
    CompareReport
        As :func:`gradcheck.torch.compare` returns it.

    Raises
    ------
    TypeError
        ``fn`` or ``reference`` not callable, no floating array in ``args``.
    ValueError
        A bad ``dtype``, ``factor`` or ``cotangent``; outputs that do not match; a
        reference that does not return float64 on float64 inputs.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, gradcheck.jax
    >>> x = jax.random.normal(jax.random.key(0), (8, 64)).astype(jnp.bfloat16)
    >>> def softmax(x):
    ...     return jax.nn.softmax(x, axis=-1)
    >>> def kernel(x):
    ...     return jax.nn.softmax(x.astype(jnp.float32), axis=-1).astype(x.dtype)
    >>> gradcheck.jax.compare(kernel, softmax, (x,), seed=0).verdict
    'pass'
    """
    fw = Jax()
    jax = fw.jax
    started = time.perf_counter()
    for label, f in (("fn", fn), ("reference", reference)):
        if not callable(f):
            raise TypeError(f"`{label}` must be callable, got {type(f).__name__}: {f!r:.80}")
    jnp = jax.numpy
    dtype = jnp.bfloat16 if dtype is None else dtype
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype is None or not jnp.issubdtype(np_dtype, jnp.floating):
        raise ValueError(f"`dtype` must be a floating jax dtype, got {dtype!r}")
    for label, flag in (("check_reference", check_reference), ("dependence", dependence)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{label}` must be True or False, got {flag!r}")
    setting = Setting(
        dtype=np_dtype.name,
        unit=float(jnp.finfo(np_dtype).eps) / 2,
        factors=_lowprec.default_factor(factor),
        seed=_projection.resolve_seed(seed),
        framework="jax",
        device="",
        started=started,
    )
    asked = _Asked(cotangent, check_reference, dependence, options)
    with fw.x64():
        point = _point(jax, fn, reference, args, np_dtype)
        return _compare(
            fw, Pair(fn, reference), point, replace(setting, device=point.device), asked
        )


def assert_close_to_reference(
    fn: Callable[..., Any], reference: Callable[..., Any], args: Any, **options: Any
) -> CompareReport:
    """:func:`compare` for tests: the report, or AssertionError whose message is its table.

    Parameters
    ----------
    fn, reference, args, **options
        As :func:`compare` takes them.

    Returns
    -------
    CompareReport
        The passing report.

    Raises
    ------
    AssertionError
        The comparison did not pass.
    """
    return _lowprec_run.assert_passed(compare(fn, reference, args, **options))


@dataclass(frozen=True)
class _Asked:
    cotangent: Any
    check_reference: bool
    dependence: bool
    options: dict


@dataclass(frozen=True)
class _Point:
    """The arguments flattened, their floating leaves cast to one dtype: which leaves are
    checked (by name), how to rebuild the arguments, the device.
    """

    names: list[str]
    keyword: bool
    flat: list  # per argument: its leaves and its treedef
    checked: dict  # (argument, leaf) -> gradient's block name without the "d"
    device: str


def _point(jax, fn, reference, args, dtype) -> _Point:
    keyword = isinstance(args, Mapping)
    if not keyword and not isinstance(args, (tuple, list)):
        args = (args,)
    values = list(args.values()) if keyword else list(args)
    if keyword:
        names = [str(k) for k in args]
    else:
        names = _frameworks.parameter_names(fn, len(values))
        if names and names[0] == "input0":
            names = _frameworks.parameter_names(reference, len(values))
    flat, checked, devices = [], {}, []
    for i, v in enumerate(values):
        pairs, treedef = jax.tree_util.tree_flatten_with_path(v)
        leaves = []
        for j, (path, leaf) in enumerate(pairs):
            if _floating(jax, leaf):
                checked[i, j] = names[i] + path_name(path)
                if isinstance(leaf, jax.Array):
                    devices.append(next(iter(leaf.devices())))
                leaf = jax.numpy.asarray(leaf).astype(dtype)
            leaves.append(leaf)
        flat.append((leaves, treedef))
    if not checked:
        raise TypeError(
            "`args` holds no floating-point array to compare; got "
            + ", ".join(f"{n}: {type(v).__name__}" for n, v in zip(names, values, strict=True))
        )
    device = devices[0] if devices else jax.devices()[0]
    flat = [([jax.device_put(x, device) for x in leaves], tree) for leaves, tree in flat]
    return _Point(names, keyword, flat, checked, str(device))


def _floating(jax, leaf: Any) -> bool:
    # bf16 and fp16 leaves count too (numpy's dtype kind of bf16 is not "f").
    return isinstance(leaf, (np.ndarray, jax.Array)) and jax.numpy.issubdtype(
        leaf.dtype, jax.numpy.floating
    )


def _cast(jax, point: _Point, dtype) -> _Point:
    flat = [
        ([x.astype(dtype) if (i, j) in point.checked else x for j, x in enumerate(leaves)], tree)
        for i, (leaves, tree) in enumerate(point.flat)
    ]
    return replace(point, flat=flat)


def _call(jax, f, point: _Point, named: dict):
    rebuilt = []
    for i, (leaves, treedef) in enumerate(point.flat):
        own = [named.get(point.checked.get((i, j)), x) for j, x in enumerate(leaves)]
        rebuilt.append(jax.tree_util.tree_unflatten(treedef, own))
    if point.keyword:
        return f(**dict(zip(point.names, rebuilt, strict=True)))
    return f(*rebuilt)


def _leaves(point: _Point) -> dict:
    return {name: point.flat[i][0][j] for (i, j), name in point.checked.items()}


def _side(jax, f, point: _Point, ct: list | None) -> tuple[Run, Any]:
    """``f`` at ``point``: outputs and the vjp on ``ct`` (drawn later when None: then only
    the outputs and the output tree come back).
    """
    out, pullback = jax.vjp(lambda named: _call(jax, f, point, named), _leaves(point))
    outs, tree, floating = _outputs(jax, out)
    outputs = {n: _numpy(o) for n, o in outs.items() if n in floating}
    if ct is None:
        return Run(outputs, {}), (outs, tree, floating)
    it = iter(ct)
    full = [
        next(it).astype(o.dtype) if n in floating else np.zeros(o.shape, jax.dtypes.float0)
        for n, o in outs.items()
    ]
    (grads,) = pullback(jax.tree_util.tree_unflatten(tree, full))
    return Run(outputs, {"d" + n: _numpy(g) for n, g in grads.items()}), (outs, tree, floating)


def _outputs(jax, out) -> tuple[dict, Any, set]:
    """The output's leaves by name (``out``, ``out[1]``, a dict's keys), its tree, and the
    names of its floating leaves.
    """
    pairs, tree = jax.tree_util.tree_flatten_with_path(out)
    outs = {}
    for path, leaf in pairs:
        name = path_name(path)
        if isinstance(out, Mapping):
            name = name.removeprefix(".")
        outs["out" + name if not isinstance(out, Mapping) else name] = leaf
    floating = {n for n, o in outs.items() if jax.numpy.issubdtype(o.dtype, jax.numpy.floating)}
    if not floating:
        raise TypeError(f"the function must return floating arrays, got {_frameworks.short(out)}")
    return outs, tree, floating


def _numpy(a) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def _compare(fw: Jax, pair: Pair, point: _Point, setting: Setting, asked: _Asked) -> CompareReport:
    """The three runs, the rules, the reference's check and the report."""
    jax = fw.jax
    fn, reference = pair.fn, pair.reference
    jnp = jax.numpy
    dtype = np.dtype(setting.dtype)
    wide = _cast(jax, point, jnp.float64)
    _, (outs, tree, floating) = _side(jax, reference, wide, None)
    for name in floating:
        if outs[name].dtype != jnp.float64:
            raise ValueError(
                f"`reference` must follow its inputs' dtype, but on float64 inputs its output "
                f"{name} is {outs[name].dtype}"
            )
    ct = _cotangent(jax, asked.cotangent, outs, floating, setting.seed, dtype)
    truth, _ = _side(jax, reference, wide, [c.astype(jnp.float64) for c in ct])
    baseline, _ = _side(jax, reference, point, ct)
    with _lowprec_run.watching(_lowprec_run.code_objects(reference)) as called:
        kernel, _ = _side(jax, fn, point, ct)
    kernel = replace(kernel, called_reference=called() or fn is reference)
    if kernel.outputs.keys() != truth.outputs.keys() or any(
        kernel.outputs[n].shape != a.shape for n, a in truth.outputs.items()
    ):
        raise ValueError(
            "`fn` and `reference` must return the same outputs: the reference gives "
            f"{_shapes(truth.outputs)}, fn {_shapes(kernel.outputs)}"
        )
    gradients = _lowprec_run.reference_gradients(truth)
    rounded = Run(
        {n: a.astype(dtype).astype(np.float64) for n, a in truth.outputs.items()},
        {n: a.astype(dtype).astype(np.float64) for n, a in gradients.items()},
    )
    blocks, sides = _lowprec_run.measured(setting, truth, baseline, kernel, rounded)
    if asked.dependence:
        rng = _lowprec_run.depend_rng(setting.seed)
        for (i, j), name in point.checked.items():
            moved = _moved(jax, pair, point, (i, j), ct, rng)
            blocks = _lowprec_run.depend(blocks, name, truth, kernel, *moved)
    checked = _reference_check(fw, reference, wide, (outs, tree), ct, setting, asked)
    cotangent = [np.asarray(c).astype(np.float64) for c in ct]
    return _lowprec_run.report(setting, blocks, sides, checked, cotangent)


def _shapes(arrays: dict) -> str:
    return ", ".join(f"{n} {tuple(a.shape)}" for n, a in arrays.items())


def _cotangent(jax, given, outs: dict, floating: set, seed: int, dtype) -> list:
    """The cotangent of each floating output, rounded to ``dtype``."""
    names = [n for n in outs if n in floating]
    if given is None:
        arrays = _projection.draw_like(
            _projection.cotangent_rng(seed, 0), [outs[n].shape for n in names]
        )
    else:
        leaves = jax.tree_util.tree_leaves(given)
        if len(leaves) != len(names):
            raise ValueError(
                f"`cotangent` has {len(leaves)} arrays, but the function returns {len(names)} "
                "floating arrays"
            )
        arrays = [
            _frameworks.cotangent_leaf(np.asarray(c), tuple(outs[n].shape), f"`cotangent` {n}")
            for c, n in zip(leaves, names, strict=True)
        ]
    return [jax.numpy.asarray(a).astype(dtype) for a in arrays]


def _moved(jax, pair: Pair, point: _Point, leaf: tuple[int, int], ct, rng) -> tuple[Run, Run]:
    """The truth and the kernel with one checked leaf moved (signs and zeros kept)."""
    jnp = jax.numpy
    i, j = leaf
    flat = [(list(leaves), tree) for leaves, tree in point.flat]
    x = flat[i][0][j]
    flat[i][0][j] = (x.astype(jnp.float64) * _lowprec_run.moved(rng, tuple(x.shape))).astype(
        x.dtype
    )
    there = replace(point, flat=flat)
    wide = _cast(jax, there, jnp.float64)
    truth = _side(jax, pair.reference, wide, [c.astype(jnp.float64) for c in ct])[0]
    return truth, _side(jax, pair.fn, there, ct)[0]


def _reference_check(fw: Jax, reference, wide: _Point, out: tuple, ct, setting: Setting, asked):
    """The reference's float64 gradient checked by finite differences, or None, as
    :func:`gradcheck.jax.check` checks it; ``out`` is the truth's output leaves by name and
    its tree.
    """
    if not asked.check_reference:
        return None
    jax = fw.jax

    rebuilt = [jax.tree_util.tree_unflatten(tree, leaves) for leaves, tree in wide.flat]
    args = dict(zip(wide.names, rebuilt, strict=True)) if wide.keyword else tuple(rebuilt)
    n = sum(int(np.prod(wide.flat[i][0][j].shape)) for i, j in wide.checked)
    options = _lowprec_run.reference_options(n, asked.options)
    outs, tree = out
    # The same cotangent, in the output's structure (the check reads its floating leaves).
    leaves = iter(np.asarray(c).astype(np.float64) for c in ct)
    full = [
        next(leaves) if np.issubdtype(o.dtype, np.floating) else np.zeros(o.shape)
        for o in outs.values()
    ]
    cotangent = jax.tree_util.tree_unflatten(tree, full)
    run = _frameworks.settings(
        time.perf_counter(),
        {**options, "seed": setting.seed},
        evaluate="float64",
        projections=1,
        cotangent=cotangent,
    )
    return _jax_modes.check_args(fw, reference, args, run, _modes.validate("auto", 1))
