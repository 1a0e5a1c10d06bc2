"""Problem: what the first call of f at params tells, frozen for every later stage.

The layout of the parameters (one flat buffer of named blocks), the parameters themselves
and the analytic gradient (both read-only), ``f(params)``, the loss dtype and the coarser
of it and the parameters' dtype, and how f is called. Built once per check; nothing after
it changes it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _layout
from ._layout import Layout
from ._plan import coarser

_F64 = np.dtype(np.float64)


class FunctionOutputError(TypeError):
    """f returned something that is not one real number (or one per row, batched)."""


@dataclass(frozen=True)
class Call:
    """How f is called and how its result is read."""

    pair: bool  # f returns (loss, grads): the loss is its first item
    array_valued: bool  # the loss comes as a size-1 array (a (1, 1) cost from np.dot)
    batched: bool  # f takes a stack of parameter vectors and returns one loss per row


@dataclass(frozen=True)
class Problem:
    """The check's facts, from the first call of f; frozen and read-only."""

    f: Callable[..., Any]
    layout: Layout
    theta: np.ndarray  # the flat parameters (read-only): every evaluation starts from it
    analytic: np.ndarray  # float64 flat gradient under test (read-only)
    f0: float
    loss_dtype: np.dtype
    dtype: np.dtype  # the coarser of the parameters' and the loss dtype: it sets the steps
    call: Call
    seconds: float  # how long the first call took (a JIT compile included)
    # The precision the gradient is judged at: the coarser of the parameters' own dtype and
    # what f returned at them. It differs from `dtype` when float32 parameters are evaluated
    # on float64 copies (f follows its input's dtype): the steps and the noise are then
    # float64's, the thresholds still float32's, since the gradient was computed in float32.
    tol_dtype: np.dtype = _F64
    calls: int = 1  # evaluations of f the first call took (2 when it tried float64)

    @property
    def n(self) -> int:
        return self.layout.n

    @property
    def widened(self) -> bool:
        """float32 parameters evaluated on float64 copies."""
        return self.theta.dtype != self.layout.dtype


def build(
    f: Callable[..., Any], params: Any, grad: Any, *, batched: bool, evaluate: str = "native"
) -> Problem:
    """Lay out ``params``, call ``f`` (and a callable ``grad``) once, and freeze the facts.

    ``evaluate``: "auto" evaluates float32 parameters on float64 copies when f follows its
    input's dtype, "float64" insists on it, "native" keeps the parameters' dtype.

    Raises ``ValueError`` when f or grad modify their input, or ``f(params)`` is not
    finite; ``TypeError`` when f's result is not one real number.
    """
    layout, buffer = _layout.build(params)
    pristine = buffer.copy()
    struct = layout.structure(buffer)
    started = time.perf_counter()
    if batched:
        if grad is None:
            raise ValueError("with batched=True, pass `grad`: a batched `f` returns losses only")
        f0, loss_dtype = loss_value(batch_values(f, layout, buffer.reshape(1, -1), 1))
        call = Call(pair=False, array_valued=False, batched=True)
    else:
        views = [arr for _, _, arr in _layout.leaves(struct)]
        out = f(struct)
        rebound(layout, struct, views)
        pair = grad is None
        if pair:
            out, grad = split(out)
        # A torch tensor or jax array loss is reduced to a number at every call, as an array is.
        array_valued = isinstance(out, np.ndarray) or is_framework_value(out)
        call = Call(pair=pair, array_valued=array_valued, batched=False)
        f0, loss_dtype = loss_value(out)
    seconds = time.perf_counter() - started
    if not np.isfinite(f0):
        raise ValueError(f"`f(params)` must be finite to check a gradient there, got {f0!r}")
    if callable(grad):
        grad = grad(struct)
    analytic = layout.flatten(grad, what="grad")
    unchanged(layout, buffer, pristine, "f or grad")
    tol_dtype = coarser(buffer.dtype, loss_dtype)
    calls = 1
    if buffer.dtype == np.float32 and evaluate != "native":
        wide = _widened(f, layout, pristine, call, (f0, loss_dtype))
        calls = 2
        if wide is not None:
            pristine, (f0, loss_dtype) = wide
        elif evaluate == "float64":
            raise ValueError(
                "evaluate='float64' needs f to follow its input's dtype, but f gave the same "
                f"{loss_dtype} loss on float64 copies of the float32 parameters (it casts "
                "to float32 inside): use evaluate='native'"
            )
    analytic.flags.writeable = False
    pristine.flags.writeable = False
    dtype = coarser(pristine.dtype, loss_dtype)
    return Problem(
        f, layout, pristine, analytic, f0, loss_dtype, dtype, call, seconds, tol_dtype, calls
    )


def _widened(f, layout: Layout, theta: np.ndarray, call: Call, first: tuple):
    """``(float64 theta, (f0, loss dtype))`` when f follows its input's dtype, else None.

    f follows it when, on float64 copies of the float32 parameters, it returns a float64
    loss that is not bitwise the float32 run's: a float32 loss turned float64, or a float64
    loss that moved (the arithmetic inside changed precision). A bitwise-equal loss means f
    casts to float32 inside, and its differences would carry float32's noise anyway.
    """
    wide = theta.astype(np.float64)
    if call.batched:
        out = batch_values(f, layout, wide.reshape(1, -1), 1)
    else:
        out = f(layout.structure(wide))
        if call.pair:
            out = split(out)[0]
    f64, dtype = loss_value(out)
    f32, dtype32 = first
    moved = dtype32 == np.float32 or f64 != f32
    if dtype != np.float64 or not moved or not np.isfinite(f64):
        return None
    unchanged(layout, wide, theta.astype(np.float64), "f")
    return wide, (f64, dtype)


def rebound(layout: Layout, struct: Any, views: list) -> None:
    """Raise ``ValueError`` when f put another array in place of one it was given.

    ``p["W1"] = p["W1"] * 2`` leaves the buffer alone but cuts f off from it: every later
    perturbation would miss f, and the check would read as noise or nondeterminism.
    """
    try:
        now = _layout.leaves(struct)
    except TypeError:
        now = []
    for block, view, (_, _, arr) in zip(layout.blocks, views, now, strict=False):
        key = block.path[-1] if block.path else block.name
        if arr is not view:
            raise ValueError(
                f"f replaced `{block.name}` in the structure it was given (as in "
                f"p[{key!r}] = p[{key!r}] * 2): the check perturbs the "
                "arrays it hands to f, so f must read them, not rebind them; compute into "
                "a new variable (w = p[...] * 2) or a copy of the dict"
            )
    if len(now) != len(views):
        raise ValueError(
            "f added or removed entries of the structure it was given: it must leave its "
            "argument as it is (work on a copy)"
        )


def unchanged(layout: Layout, buffer: np.ndarray, pristine: np.ndarray, who: str) -> None:
    """Raise ``ValueError`` naming the first entry of ``buffer`` that differs, bitwise."""
    bits = f"u{buffer.itemsize}"  # bitwise: a restored value must be the very same number
    changed = np.flatnonzero(buffer.view(bits) != pristine.view(bits))
    if changed.size:
        i = int(changed[0])
        raise ValueError(
            f"{who} modified its input in place: {layout.entry_name(i)} changed from "
            f"{pristine[i]!r} to {buffer[i]!r}; the check needs f to leave its arguments alone"
        )


def split(out: Any) -> tuple[Any, Any]:
    """``(loss, grads)`` from what an f called with ``grad=None`` returned."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            "with grad=None, `f` must return (loss, grads); it returned "
            f"{type(out).__name__}: {out!r:.80}"
        )
    return out


def loss_value(out: Any) -> tuple[float, np.dtype]:
    """The loss as a float and its dtype; refuse anything but one real number."""
    if isinstance(out, np.ndarray) and out.size == 1 and out.dtype.kind in "iuf":
        out = out.reshape(())[()]
    framework_dtype = framework_scalar_dtype(out)
    if framework_dtype is not None:
        # A 0-d (or size-1) torch tensor or jax array: its value, with its dtype's rules.
        return float(out.item()), framework_dtype
    if not is_scalar(out):
        shape = f" of shape {out.shape} and dtype {out.dtype}" if hasattr(out, "shape") else ""
        vector = hasattr(out, "shape") and math.prod(out.shape) > 1
        hint = (
            "; for a vector output, check its vector-Jacobian product with "
            "gradcheck.check_vjp(f, inputs, vjp) (gradcheck.torch.check or "
            "gradcheck.jax.check for tensors), or reduce it to a loss"
            if vector
            else ""
        )
        raise TypeError(
            f"`f` must return one real number, got {type(out).__name__}{shape}: {out!r:.80}{hint}"
        )
    # float32 losses make the steps and thresholds float32's; anything else is float64.
    dtype = np.dtype(np.float32) if isinstance(out, np.float32) else np.dtype(np.float64)
    return float(out), dtype


# Where torch tensors and jax arrays are defined: recognised by their type's module, so that
# gradcheck never imports either framework to find out.
_FRAMEWORKS = frozenset(("torch", "jax", "jaxlib"))
_FRAMEWORK_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
}


def is_framework_value(value: Any) -> bool:
    """True for a torch tensor or a jax array (of any shape)."""
    return type(value).__module__.partition(".")[0] in _FRAMEWORKS and hasattr(value, "shape")


def framework_scalar_dtype(value: Any) -> np.dtype | None:
    """The numpy dtype of a one-element float32/float64 (or integer) torch tensor or jax
    array, else None.
    """
    if not is_framework_value(value):
        return None
    if math.prod(value.shape) != 1:
        return None
    # torch spells its dtypes "torch.float32", jax as numpy does, "float32".
    name = str(value.dtype).rpartition(".")[2]
    if name in _FRAMEWORK_DTYPES:
        return _FRAMEWORK_DTYPES[name]
    if name.startswith(("int", "uint")):
        return np.dtype(np.float64)
    return None


def is_scalar(r: Any) -> bool:
    """One real number, and not a bool (numpy would read True as 1.0)."""
    return isinstance(r, (int, float, np.integer, np.floating)) and not isinstance(
        r, (bool, np.bool_)
    )


def batch_values(f: Callable[[Any], Any], layout: Layout, stack: np.ndarray, count: int):
    """Call the batched ``f`` on ``stack`` (count, n) and check it gave ``count`` numbers."""
    result = f(layout.structure(stack, batch=count))
    arr = np.asarray(result)
    if arr.dtype.kind not in "iuf" or arr.size != count or arr.ndim > 2:
        raise FunctionOutputError(
            f"with batched=True, `f` must return {count} real numbers (one per row of its "
            f"(B, ...) input), but returned {type(result).__name__} of shape "
            f"{getattr(arr, 'shape', None)} and dtype {arr.dtype}"
        )
    return arr.reshape(count)
