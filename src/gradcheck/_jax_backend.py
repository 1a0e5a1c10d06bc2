"""What jax does in a projection check (``_projection``): the arguments' pytrees and their
checked leaves, the first call through ``jax.vjp``, the two sides of a projection, and
``jax.jit(jax.vmap(...))`` compiled once per function and argument structure.

jax is imported when a check runs (:func:`load`), never by ``import gradcheck``; a
:class:`Jax` holds it, so that no function here takes the module as an argument.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _frameworks
from ._projection import Refusal, Run, Sides, Traced, Vmap, refused, vmap_rows

# Stacks are padded to a power of two rows (at least MIN_ROWS) so that jit compiles one
# program per size class, not one per chunk length the check happens to ask for; chunks
# stay within _projection.VMAP_BYTES.
MIN_ROWS = 8
# jit(project) and jit(vmap(project)) per function and argument structure, reused by every
# check of the same function: jax.jit then compiles once per shape, where a new closure per
# check compiled again every time (2-10 s a check on real rules). The oldest go first.
_COMPILED: dict = {}
_COMPILED_MOST = 32


def load() -> Any:
    try:
        import jax
    except ImportError as exc:  # pragma: no cover - the tests run with jax installed
        raise ImportError("gradcheck.jax needs jax: pip install 'gradcheck[jax]'") from exc
    return jax


class Jax:
    """jax, loaded, and the adapter's rules for its values."""

    def __init__(self) -> None:
        self.jax = load()

    def x64(self) -> contextlib.AbstractContextManager:
        """A context with 64-bit jax on, leaving the global setting as it was."""
        jax = self.jax
        if jax.config.jax_enable_x64:
            return contextlib.nullcontext()
        enable: Any = getattr(jax, "enable_x64", None)
        if enable is None:  # jax before 0.6 had it in jax.experimental
            enable = importlib.import_module("jax.experimental").enable_x64
        return enable(True)

    def floating_array(self, leaf: Any) -> bool:
        return isinstance(leaf, (np.ndarray, self.jax.Array)) and np.dtype(leaf.dtype).kind == "f"

    def floating(self, leaves: list) -> list[int]:
        """The positions of the floating leaves (bf16 and fp16 included)."""
        jnp = self.jax.numpy
        return [k for k, o in enumerate(leaves) if jnp.issubdtype(o.dtype, jnp.floating)]


def path_name(path: tuple) -> str:
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


@dataclass(frozen=True)
class Args:
    """The user's arguments, flattened: which leaves are checked and how to rebuild them."""

    fn: Callable[..., Any]
    keyword: bool  # called as fn(**args)
    names: list[str]
    flat: list  # per argument: its (path, leaf) pairs and its treedef
    checked: dict  # (argument, leaf) position -> block name, for every floating array leaf

    @classmethod
    def of(
        cls,
        fw: Jax,
        fn: Callable[..., Any],
        args: Any,
        argnums: Callable[[int], set[int]] | None = None,
    ) -> Args:
        """``args`` (a dict, a tuple / list, or one argument) flattened, every floating array
        leaf of the arguments ``argnums(count)`` names (None: of all) checked.
        """
        keyword = isinstance(args, Mapping)
        if not keyword and not isinstance(args, (tuple, list)):
            args = (args,)
        names = [str(k) for k in args] if keyword else _frameworks.parameter_names(fn, len(args))
        values = list(args.values()) if keyword else list(args)
        wanted = set(range(len(values))) if argnums is None else argnums(len(values))
        flat = [fw.jax.tree_util.tree_flatten_with_path(v) for v in values]
        # (arg position, leaf position) -> block name, for every floating array leaf.
        checked: dict[tuple[int, int], str] = {}
        for i, (pairs, _) in enumerate(flat):
            for j, (path, leaf) in enumerate(pairs):
                if i in wanted and fw.floating_array(leaf):
                    checked[i, j] = names[i] + path_name(path)
        if not checked:
            got = ", ".join(f"{n}: {type(v).__name__}" for n, v in zip(names, values, strict=True))
            raise TypeError(f"`args` holds no floating-point array to check; got {got}")
        return cls(fn, keyword, names, flat, checked)

    def dtypes(self) -> set[np.dtype]:
        """The checked leaves' dtypes."""
        return {np.dtype(self.flat[i][0][j][1].dtype) for i, j in self.checked}

    def key(self) -> tuple:
        """What identifies the function and its arguments' structure (a cache's key)."""
        treedefs = tuple(treedef for _, treedef in self.flat)
        return (self.fn, self.keyword, tuple(self.names), treedefs, tuple(self.checked.items()))


@dataclass(frozen=True)
class _Traced(Traced):
    """The call through ``jax.vjp`` at the point: what every projection of one check shares."""

    pullback: Callable[[Any], Any]  # jax.vjp's, at the point
    out_leaves: list  # the output's leaves at the point ...
    out_tree: Any  # ... and its structure
    projected: list[int]  # the floating output leaves, which the projection sums over
    float32: bool  # the loss gradcheck.check sees is float32
    acc: Any  # the projection's accumulation dtype


@dataclass(frozen=True)
class Projection:
    """``args.fn`` as a function of the checked leaves, at ``point`` (numpy copies of them,
    from ``device``): the pipeline's jax backend. The analytic side is ``jax.vjp``; the
    numeric side ``jax.jit`` of the projection, ``jax.jit(jax.vmap(...))`` where it runs.
    """

    fw: Jax
    args: Args
    point: dict
    device: Any

    @classmethod
    def at(cls, fw: Jax, args: Args, wide: bool) -> Projection:
        """The numpy copies of the checked leaves (one dtype) and the device they came from."""
        flat = args.flat
        devices = [
            leaf.devices()
            for pairs, _ in flat
            for _, leaf in pairs
            if isinstance(leaf, fw.jax.Array)
        ]
        device = next(iter(devices[0])) if devices else None
        dtypes = args.dtypes()
        if not wide and len(dtypes) > 1:
            _frameworks.refuse_mixed_dtypes("arrays", ", ".join(sorted(map(str, dtypes))))
        dtype = np.dtype(np.float64) if wide else dtypes.pop()
        point = {
            name: np.array(flat[i][0][j][1], dtype=dtype, copy=True)
            for (i, j), name in args.checked.items()
        }
        return cls(fw, args, point, device)

    def put(self, named: dict) -> dict:
        """Numpy leaves as jax arrays on the inputs' device."""
        return {n: self.fw.jax.device_put(a, self.device) for n, a in named.items()}

    def g(self, named: dict) -> Any:
        """``fn`` with the checked leaves from ``named``, the rest as the user gave them."""
        args, unflatten = self.args, self.fw.jax.tree_util.tree_unflatten
        rebuilt = []
        for i, (pairs, treedef) in enumerate(args.flat):
            leaves = [
                named[args.checked[i, j]] if (i, j) in args.checked else leaf
                for j, (_, leaf) in enumerate(pairs)
            ]
            rebuilt.append(unflatten(treedef, leaves))
        if args.keyword:
            return args.fn(**dict(zip(args.names, rebuilt, strict=True)))
        return args.fn(*rebuilt)

    def trace(self, run: Run) -> _Traced:
        """``jax.vjp`` of ``g`` at the point, refusing outputs the check cannot project."""
        jax = self.fw.jax
        jnp = jax.numpy
        out, pullback = jax.vjp(self.g, self.put(self.point))
        out_leaves, out_tree = jax.tree_util.tree_flatten(out)
        projected = self.fw.floating(out_leaves)
        if not projected:
            raise TypeError(
                f"`fn(*args)` must return floating arrays, got {_frameworks.short(out)} (dtypes "
                f"{sorted({str(o.dtype) for o in out_leaves})})"
            )
        if run.wide:
            dtypes = (str(out_leaves[k].dtype) for k in projected)
            _frameworks.require_float64(dtypes, "float64")
        float32 = all(out_leaves[k].dtype == jnp.float32 for k in projected)
        # Projections accumulate in float64 when jax allows it, else in the output's float32.
        acc = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        shapes = [tuple(out_leaves[k].shape) for k in projected]
        return _Traced(
            params=self.point,
            shapes=shapes,
            pullback=pullback,
            out_leaves=out_leaves,
            out_tree=out_tree,
            projected=projected,
            float32=float32,
            acc=acc,
        )

    def given(self, traced: _Traced, cotangent: Any) -> list[np.ndarray]:
        leaves, tree = self.fw.jax.tree_util.tree_flatten(cotangent)
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

    def record(self, traced: _Traced, ct: list[np.ndarray] | None) -> Any:
        out_leaves, projected = traced.out_leaves, traced.projected
        cts = ct or []
        leaves = iter(c.astype(out_leaves[k].dtype) for c, k in zip(cts, projected, strict=True))
        return self.fw.jax.tree_util.tree_unflatten(
            traced.out_tree,
            [next(leaves) if k in projected else None for k in range(len(out_leaves))],
        )

    def sides(self, traced: _Traced, run: Run, ct: list[np.ndarray] | None) -> Sides:
        """The check of the projection on one cotangent ``ct`` (the projected leaves')."""
        jax = self.fw.jax
        out_leaves, projected, acc = traced.out_leaves, traced.projected, traced.acc
        # Rounded to each output's dtype, as the vjp receives it: both sides project on the
        # very same numbers.
        rounded = [c.astype(out_leaves[k].dtype) for c, k in zip(ct or [], projected, strict=True)]

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
        held, statics = self.held()
        one, many = self._projections(statics, tuple(projected), acc)
        rest = (held, [jax.numpy.asarray(c, acc) for c in rounded])
        wide = self._wide(traced, statics, held, rounded) if run.widen else None
        # A function that follows its inputs' dtype returns float64 values, so that
        # gradcheck.check evaluates it on float64 copies; the first call, on the float32
        # point, tells it the parameters' own precision.
        loss_dtype = np.float32 if traced.float32 and wide is None else np.float64
        put, x64 = self.put, self.fw.x64

        def widened(struct) -> bool:
            return wide is not None and next(iter(struct.values())).dtype == np.float64

        def f(struct):
            if wide is not None and widened(struct):
                with x64():
                    return np.float64(wide[0](put(struct), *wide[2]))
            return loss_dtype(one(put(struct), *rest))

        def call(part):
            if wide is not None and widened(part):
                with x64():
                    return np.asarray(wide[1](put(part), *wide[2]))
            return np.asarray(many(put(part), *rest))

        out_numel = sum(int(np.prod(out_leaves[k].shape)) for k in projected)
        rows = max(MIN_ROWS, 1 << int(np.log2(vmap_rows(self.point, out_numel))))
        return Sides(analytic, f, loss_dtype, scale, Vmap(call, rows, _refusal, _padded))

    def _wide(
        self, traced: _Traced, statics: tuple | None, held: list, rounded: list
    ) -> tuple | None:
        """``(jit(project), jit(vmap(project)), arguments)`` for float64 copies of a float32
        point, with 64-bit jax on for them alone, when ``fn`` computes in float64 there (it
        follows its inputs' dtype); else None.
        """
        if not all(a.dtype == np.float32 for a in self.point.values()):
            return None
        jax = self.fw.jax
        with self.fw.x64():
            named = {n: jax.ShapeDtypeStruct(a.shape, np.float64) for n, a in self.point.items()}
            try:
                leaves = jax.tree_util.tree_leaves(jax.eval_shape(self.g, named))
            except Exception:  # a function that cannot run in float64 is checked in its own dtype
                return None
            if not all(leaves[k].dtype == np.float64 for k in traced.projected):
                return None
            wide = jax.numpy.float64
            one, many = self._projections(statics, tuple(traced.projected), wide)
            cts = [jax.numpy.asarray(c, wide) for c in rounded]
        return one, many, (held, cts)

    def held(self) -> tuple[list, tuple | None]:
        """The leaves not checked: arrays (arguments of the compiled projection, so new data
        of the same shapes reuses it) and the others (static: part of the cache's key, or
        None when one cannot be hashed).
        """
        arrays, statics = [], []
        for i, (pairs, _) in enumerate(self.args.flat):
            for j, (_, leaf) in enumerate(pairs):
                if (i, j) in self.args.checked:
                    continue
                if isinstance(leaf, (np.ndarray, self.fw.jax.Array)):
                    arrays.append(leaf)
                else:
                    statics.append(((i, j), type(leaf), leaf))
        try:
            hash(tuple(statics))
        except TypeError:
            return arrays, None
        return arrays, tuple(statics)

    def _projections(self, statics: tuple | None, projected: tuple, acc: Any) -> tuple:
        """``(jit(project), jit(vmap(project)))``, ``project(named, held, cts)`` being the
        projection of ``fn`` on the cotangents ``cts`` with the checked leaves from ``named``
        and the other array leaves from ``held``.
        """
        jax, args = self.fw.jax, self.args
        jnp = jax.numpy
        key = (*args.key(), statics, projected, np.dtype(acc).name)
        if statics is not None and key in _COMPILED:
            return _COMPILED[key]
        treedefs = [treedef for _, treedef in args.flat]
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


def _leaf(named: dict, checked: dict, fixed: dict, held: Any, where: tuple) -> Any:
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


def _refusal(exc: BaseException | None, got: Any, want: Any) -> Refusal:
    why = "jax.vmap changed its value at the inputs" if exc is None else _frameworks.why(exc)
    return refused("jax.vmap", "evaluate", why)
