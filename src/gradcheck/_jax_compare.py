"""``gradcheck.jax.compare``: a low-precision kernel against a float64 reference.

jax is imported when a function here is called, never by ``import gradcheck``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import (
    _frameworks,
    _jax_modes,
    _lowprec,
    _lowprec_run,
    _modes,
    _projection,
    _reference_compare,
)
from ._jax_backend import Jax, path_name
from ._lowprec_report import CompareReport
from ._lowprec_run import Pair, Run, Setting
from ._report import Report


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
    _reference_compare.require_callable(fn, reference, lambda f: f"{f!r:.80}")
    jnp = jax.numpy
    dtype = jnp.bfloat16 if dtype is None else dtype
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype is None or not jnp.issubdtype(np_dtype, jnp.floating):
        raise ValueError(f"`dtype` must be a floating jax dtype, got {dtype!r}")
    asked = _reference_compare.asked(cotangent, check_reference, dependence, options)
    setting = Setting(
        dtype=np_dtype.name,
        unit=float(jnp.finfo(np_dtype).eps) / 2,
        factors=_lowprec.default_factor(factor),
        seed=_projection.resolve_seed(seed),
        framework="jax",
        device="",
        started=started,
    )
    with fw.x64():
        point = _point(fw, fn, reference, args, np_dtype)
        runs = _Runs(fw, point, np_dtype)
        setting = replace(setting, device=point.device)
        return _reference_compare.compare(runs, Pair(fn, reference), setting, asked)


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
class _Point:
    """The arguments flattened, their floating leaves cast to one dtype: which leaves are
    checked (by name), how to rebuild the arguments, the device.
    """

    names: list[str]
    keyword: bool
    flat: list  # per argument: its leaves and its treedef
    checked: dict  # (argument, leaf) -> gradient's block name without the "d"
    device: str


def _point(
    fw: Jax, fn: Callable[..., Any], reference: Callable[..., Any], args: Any, dtype: Any
) -> _Point:
    jax = fw.jax
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
            if isinstance(leaf, (np.ndarray, jax.Array)) and fw.floating([leaf]):
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


@dataclass(frozen=True)
class _Runs:
    """jax's runs of the comparison (``_reference_compare.Runs``) at ``point``, whose
    floating leaves are in ``dtype``; inside ``jax.enable_x64``.
    """

    fw: Jax
    point: _Point
    dtype: np.dtype

    def _cast(self, dtype: Any) -> _Point:
        point = self.point
        flat = [
            (
                [x.astype(dtype) if (i, j) in point.checked else x for j, x in enumerate(leaves)],
                tree,
            )
            for i, (leaves, tree) in enumerate(point.flat)
        ]
        return replace(point, flat=flat)

    def _vjp(self, f: Callable[..., Any], point: _Point) -> tuple[tuple, Callable]:
        """``f``'s outputs at ``point`` (leaves by name, tree, floating names) and pullback."""
        jax = self.fw.jax
        leaves = {name: point.flat[i][0][j] for (i, j), name in point.checked.items()}
        out, pullback = jax.vjp(lambda named: self._call(f, point, named), leaves)
        return self._outputs(out), pullback

    def _call(self, f: Callable[..., Any], point: _Point, named: dict) -> Any:
        """``f`` at ``point``, its checked leaves from ``named``."""
        rebuilt = []
        for i, (leaves, treedef) in enumerate(point.flat):
            own = [named.get(point.checked.get((i, j)), x) for j, x in enumerate(leaves)]
            rebuilt.append(self.fw.jax.tree_util.tree_unflatten(treedef, own))
        if point.keyword:
            return f(**dict(zip(point.names, rebuilt, strict=True)))
        return f(*rebuilt)

    def _outputs(self, out: Any) -> tuple[dict, Any, set]:
        """The output's leaves by name (``out``, ``out[1]``, a dict's keys), its tree, and
        the names of its floating leaves.
        """
        pairs, tree = self.fw.jax.tree_util.tree_flatten_with_path(out)
        outs = {}
        for path, leaf in pairs:
            name = path_name(path)
            if isinstance(out, Mapping):
                name = name.removeprefix(".")
            outs["out" + name if not isinstance(out, Mapping) else name] = leaf
        where = set(self.fw.floating(list(outs.values())))
        floating = {n for k, n in enumerate(outs) if k in where}
        if not floating:
            raise TypeError(
                f"the function must return floating arrays, got {_frameworks.short(out)}"
            )
        return outs, tree, floating

    def outputs(self, reference: Callable[..., Any]) -> tuple[dict, Any, set]:
        outputs, _ = self._vjp(reference, self._cast(np.float64))
        outs, _, floating = outputs
        for name in floating:
            if outs[name].dtype != np.float64:
                raise ValueError(
                    f"`reference` must follow its inputs' dtype, but on float64 inputs its "
                    f"output {name} is {outs[name].dtype}"
                )
        return outputs

    def cotangent(self, given: Any, outputs: tuple, seed: int) -> list:
        """The cotangent of each floating output, rounded to the dtype."""
        outs, _, floating = outputs
        names = [n for n in outs if n in floating]
        if given is None:
            rng = _projection.cotangent_rng(seed, 0)
            arrays = _projection.draw_like(rng, [outs[n].shape for n in names])
        else:
            leaves = self.fw.jax.tree_util.tree_leaves(given)
            if len(leaves) != len(names):
                raise ValueError(
                    f"`cotangent` has {len(leaves)} arrays, but the function returns "
                    f"{len(names)} floating arrays"
                )
            arrays = [
                _frameworks.cotangent_leaf(np.asarray(c), tuple(outs[n].shape), f"`cotangent` {n}")
                for c, n in zip(leaves, names, strict=True)
            ]
        return [self.fw.jax.numpy.asarray(a).astype(self.dtype) for a in arrays]

    def side(self, f: Callable[..., Any], ct: list, *, wide: bool, reference: bool) -> Run:
        """``f`` at the point (or its float64 copy): outputs and the vjp on ``ct``."""
        jax = self.fw.jax
        point = self._cast(np.float64) if wide else self.point
        ct = [c.astype(np.float64) for c in ct] if wide else ct
        (outs, tree, floating), pullback = self._vjp(f, point)
        it = iter(ct)
        full = [
            next(it).astype(o.dtype) if n in floating else np.zeros(o.shape, jax.dtypes.float0)
            for n, o in outs.items()
        ]
        (grads,) = pullback(jax.tree_util.tree_unflatten(tree, full))
        outputs = {n: self.numpy(o) for n, o in outs.items() if n in floating}
        return Run(outputs, {"d" + n: self.numpy(g) for n, g in grads.items()})

    def rounded(self, a: np.ndarray) -> np.ndarray:
        return a.astype(self.dtype).astype(np.float64)

    def numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a).astype(np.float64)

    def inputs(self) -> Iterator[tuple[tuple[int, int], str]]:
        return iter(self.point.checked.items())

    def moved(self, where: tuple[int, int], rng: np.random.Generator) -> _Runs:
        """The runs with the checked leaf at ``where`` moved (signs and zeros kept)."""
        i, j = where
        flat = [(list(leaves), tree) for leaves, tree in self.point.flat]
        x = flat[i][0][j]
        factor = _lowprec_run.moved(rng, tuple(x.shape))
        flat[i][0][j] = (x.astype(np.float64) * factor).astype(x.dtype)
        return replace(self, point=replace(self.point, flat=flat))

    def reference_check(
        self, reference: Callable[..., Any], outputs: tuple, ct: list, seed: int, options: dict
    ) -> Report:
        """The reference's float64 gradient checked as :func:`gradcheck.jax.check` checks
        it, on the same cotangent (in the output's structure: the check reads its floating
        leaves).
        """
        jax, wide = self.fw.jax, self._cast(np.float64)
        rebuilt = [jax.tree_util.tree_unflatten(tree, leaves) for leaves, tree in wide.flat]
        args = dict(zip(wide.names, rebuilt, strict=True)) if wide.keyword else tuple(rebuilt)
        outs, tree, _ = outputs
        leaves = iter(np.asarray(c).astype(np.float64) for c in ct)
        full = [
            next(leaves) if np.issubdtype(o.dtype, np.floating) else np.zeros(o.shape)
            for o in outs.values()
        ]
        run = _frameworks.settings(
            time.perf_counter(),
            {**options, "seed": seed},
            evaluate="float64",
            projections=1,
            cotangent=jax.tree_util.tree_unflatten(tree, full),
        )
        return _jax_modes.check_args(self.fw, reference, args, run, _modes.validate("auto", 1))
