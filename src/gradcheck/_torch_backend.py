"""What torch does in a projection check (``_projection``): its inputs, dtypes and outputs,
the first call through autograd, the two sides of a projection, and ``torch.func.vmap``.

torch is imported when a check runs (:func:`load`), never by ``import gradcheck``; a
:class:`Torch` holds it, so that no function here takes the module as an argument.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _frameworks
from ._frameworks import short
from ._projection import Refusal, Run, Sides, Traced, Vmap, refused, vmap_rows


def load() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the tests run with torch installed
        raise ImportError("gradcheck.torch needs PyTorch: pip install 'gradcheck[torch]'") from exc
    return torch


class Torch:
    """torch, loaded, and the adapter's rules for its values."""

    def __init__(self) -> None:
        self.torch = load()

    def inputs(self, inputs: Any) -> Any:
        """``inputs`` as a dict or a tuple / list of inputs (a lone tensor: a 1-tuple)."""
        if isinstance(inputs, self.torch.Tensor):
            return (inputs,)
        if isinstance(inputs, (Mapping, tuple, list)):
            return inputs
        raise TypeError(
            "`inputs` must be a tensor, a tuple / list of inputs or a dict, got "
            f"{type(inputs).__name__}: {short(inputs)}"
        )

    def parameter_names(self, fn: Any, count: int) -> list[str]:
        """The names of ``fn``'s first ``count`` positional parameters, else input0, ..."""
        torch = self.torch
        target, skip = fn, 0
        owner = getattr(fn, "__self__", None)
        if (
            isinstance(owner, type)
            and issubclass(owner, torch.autograd.Function)
            and getattr(fn, "__name__", "") == "apply"
        ):
            # MyFunction.apply(*args): forward's names, less ctx unless setup_context takes it.
            function: Any = owner  # a torch.autograd.Function subclass
            target = function.forward
            skip = int(function.setup_context is torch.autograd.Function.setup_context)
        elif isinstance(fn, torch.nn.Module):
            target = fn.forward
        return _frameworks.parameter_names(target, count, skip=skip)

    def forward_rule(self, fn: Any) -> bool:
        """Whether ``fn`` is a custom Function's ``apply`` whose class defines ``jvp``."""
        function = self.torch.autograd.Function
        owner = getattr(fn, "__self__", None)
        return (
            isinstance(owner, type)
            and issubclass(owner, function)
            and getattr(fn, "__name__", "") == "apply"
            # torch comes in as a value, so no type says owner is a Function: look jvp up by name
            and getattr(owner, "jvp", None) is not function.jvp
        )

    def checked(self, names: list[str], values: list) -> list[str]:
        """The inputs to check: floating tensors with requires_grad, or all floating tensors."""
        pairs = list(zip(names, values, strict=True))
        floating = [n for n, v in pairs if self.floating(v)]
        for n, v in pairs:
            if isinstance(v, self.torch.Tensor) and v.is_complex() and v.requires_grad:
                raise TypeError(
                    f"input `{n}` is complex: gradcheck checks real inputs; pass the real and "
                    "imaginary parts as separate tensors"
                )
        if not floating:
            raise TypeError(
                "`inputs` holds no floating-point tensor to check; got "
                + ", ".join(f"{n}: {type(v).__name__}" for n, v in pairs)
            )
        wanted = [n for n, v in pairs if n in floating and v.requires_grad]
        return wanted or floating

    def floating(self, v: Any) -> bool:
        return isinstance(v, self.torch.Tensor) and v.is_floating_point()

    def prepared(self, v: Any, wide: bool) -> Any:
        """A private, detached copy of a tensor (float64 when ``wide`` and floating)."""
        if not isinstance(v, self.torch.Tensor):
            return v
        t = v.detach()
        if wide and t.is_floating_point():
            t = t.to(self.torch.float64)
        return t.clone()

    def outputs(self, out: Any, what: str) -> list:
        """The floating tensors of ``out`` (a tensor, or a tuple / list of them)."""
        items = [out] if isinstance(out, self.torch.Tensor) else out
        if isinstance(items, (tuple, list)):
            tensors = [o for o in items if self.floating(o)]
            if tensors:
                return tensors
        raise TypeError(
            f"`{what}` must return a floating tensor or a tuple of tensors, got "
            f"{type(out).__name__}: {short(out)}"
        )

    def cotangent(self, cotangent: Any, outs: list) -> list[np.ndarray]:
        """A given cotangent as float64 arrays, one per floating output tensor in ``outs``."""
        items = cotangent if isinstance(cotangent, (tuple, list)) else [cotangent]
        if len(items) != len(outs):
            raise ValueError(
                f"`cotangent` has {len(items)} arrays, but the function returns {len(outs)} "
                "floating tensors"
            )
        arrays = []
        for k, (c, o) in enumerate(zip(items, outs, strict=True)):
            if isinstance(c, self.torch.Tensor):
                arr = c.detach().cpu().double().numpy()
            else:
                arr = np.asarray(c)
            where = f"[{k}]" if len(outs) > 1 else ""
            arrays.append(_frameworks.cotangent_leaf(arr, tuple(o.shape), f"`cotangent`{where}"))
        return arrays

    def forward_ad(self) -> Any:
        """``torch.autograd.forward_ad``, its decompositions loaded.

        torch loads them on the first dual tensor, through ``torch.jit.script``, which
        recent versions deprecate with a warning at every first use: a warning about
        torch's own internals, which a test suite that treats warnings as errors would fail
        on. They are loaded here once, that one warning silenced.
        """
        with warnings.catch_warnings():
            message = "`torch.jit.script` is deprecated"
            warnings.filterwarnings("ignore", message, DeprecationWarning)
            importlib.import_module("torch._decomp.decompositions_for_jvp")
        return self.torch.autograd.forward_ad

    # --- dtypes: float32 or float64, and the numeric side widened ("auto") --------------------

    def validate_dtypes(self, point: dict) -> None:
        """float32 or float64, one dtype for all: a float32 entry perturbed in a float64
        buffer would round the step it is given.
        """
        torch = self.torch
        for n, t in point.items():
            if t.dtype not in (torch.float32, torch.float64):
                raise ValueError(
                    f"`{n}` has dtype {t.dtype}: finite differences cannot resolve a gradient "
                    "in it; use evaluate='float64' (if the function follows its inputs' dtype)"
                )
        dtypes = {n: t.dtype for n, t in point.items()}
        if len(set(dtypes.values())) > 1:
            listing = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
            _frameworks.refuse_mixed_dtypes("tensors", listing)

    def may_widen(self, point: dict, run: Run) -> bool:
        """``evaluate="auto"`` on float32 inputs: the numeric side may use float64 copies."""
        return run.widen and all(t.dtype == self.torch.float32 for t in point.values())

    def wide_copies(self, point: dict, run: Run, held: Any) -> Any:
        """``held`` (tensors, in tuples, lists and dicts) with float64 copies of its floating
        tensors where the numeric side may widen, else itself.
        """
        if not self.may_widen(point, run):
            return held
        return self._float64_copies(held)

    def _float64_copies(self, held: Any) -> Any:
        if isinstance(held, dict):
            return {k: self._float64_copies(v) for k, v in held.items()}
        if isinstance(held, (tuple, list)):
            return type(held)(self._float64_copies(v) for v in held)
        return self.prepared(held, True)

    def follows(self, g: Callable[[dict], Any], point: dict, run: Run) -> bool:
        """Whether the numeric side may widen and ``g`` computes in float64 on float64
        copies of the point: its floating outputs (or the user's loss) come back float64.
        One evaluation.
        """
        torch = self.torch
        if not self.may_widen(point, run):
            return False
        wide = {n: t.to(torch.float64) for n, t in point.items()}
        try:
            with torch.no_grad():
                y = g(wide)
                if run.loss is not None:
                    return run.loss(y).dtype == torch.float64
                return all(o.dtype == torch.float64 for o in self.outputs(y, "fn(*inputs)"))
        except Exception:  # a function that cannot run in float64 is checked in its own dtype
            return False


def widened(tensors: dict, point: dict) -> bool:
    """A call on float64 copies of the float32 point (the numeric side, widened)."""
    return any(t.dtype != point[n].dtype for n, t in tensors.items())


def numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


# --- the projection backend ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Traced(Traced):
    """The first call through autograd: what every projection of one check shares."""

    leaves: dict  # clones of the point that require grad, for the analytic side
    out: Any  # g(leaves)
    outs: list  # its floating tensors
    float32: bool  # the loss gradcheck.check sees is float32
    follows: bool  # on float64 copies of the float32 point, g computes in float64


@dataclass(frozen=True)
class Projection:
    """``g``, a function of the named checked tensors, at ``point`` (private copies): the
    pipeline's torch backend. The analytic side is autograd through ``g``; the numeric
    side ``g`` under ``torch.no_grad()``, through ``torch.func.vmap`` where it allows.
    """

    fw: Torch
    g: Callable[[dict], Any]
    point: dict

    @classmethod
    def of_function(cls, fw: Torch, fn: Callable[..., Any], inputs: Any, run: Run) -> Projection:
        """``fn(*inputs)`` (or ``fn(**inputs)``) as a function of its checked inputs, at
        private copies of them; the others held fixed.
        """
        inputs = fw.inputs(inputs)
        keyword = isinstance(inputs, Mapping)
        names = [str(k) for k in inputs] if keyword else fw.parameter_names(fn, len(inputs))
        values = list(inputs.values()) if keyword else list(inputs)
        checked = fw.checked(names, values)
        # Private copies, detached: the user's tensors and their .grad are never touched.
        pairs = list(zip(names, values, strict=True))
        point = {n: fw.prepared(v, run.wide) for n, v in pairs if n in checked}
        fixed = [fw.prepared(v, run.wide) if n not in checked else None for n, v in pairs]
        # Held fixed, float64 copies go with the numeric side's float64 points ("auto").
        wide = fw.wide_copies(point, run, fixed)

        def g(tensors):
            held = wide if widened(tensors, point) else fixed
            args = [tensors[n] if n in checked else c for n, c in zip(names, held, strict=True)]
            return fn(**dict(zip(names, args, strict=True))) if keyword else fn(*args)

        return cls(fw, g, point)

    def trace(self, run: Run) -> _Traced:
        """Call ``g`` once through autograd, refusing outputs the check cannot project."""
        torch, fw = self.fw.torch, self.fw
        fw.validate_dtypes(self.point)
        leaves = {n: t.clone().requires_grad_(True) for n, t in self.point.items()}
        with torch.enable_grad():
            out = self.g(leaves)
        outs = fw.outputs(out, "fn(*inputs)" if run.loss is None else "module(*inputs)")
        if run.wide:
            _frameworks.require_float64((str(o.dtype) for o in outs), str(torch.float64))
        if run.loss is None:
            float32 = all(o.dtype != torch.float64 for o in outs)
        else:
            scalar = run.loss(out)
            if not isinstance(scalar, torch.Tensor) or scalar.numel() != 1:
                raise TypeError(
                    f"`loss` must return a one-element tensor, got {type(scalar).__name__}: "
                    f"{short(scalar)}"
                )
            float32 = scalar.dtype != torch.float64
        params = {n: numpy(t) for n, t in self.point.items()}
        follows = fw.follows(self.g, self.point, run)
        shapes = [tuple(o.shape) for o in outs]
        return _Traced(params, shapes, leaves, out, outs, float32, follows)

    def given(self, traced: _Traced, cotangent: Any) -> list[np.ndarray]:
        return self.fw.cotangent(cotangent, traced.outs)

    def record(self, traced: _Traced, ct: list[np.ndarray] | None) -> Any:
        if ct is None:
            return None
        return ct[0] if isinstance(traced.out, self.fw.torch.Tensor) else tuple(ct)

    def sides(self, traced: _Traced, run: Run, ct: list[np.ndarray] | None) -> Sides:
        """The check of one projection: on cotangent ``ct``, or through ``run.loss`` (None)."""
        torch = self.fw.torch
        loss, cts = run.loss, []
        if ct is not None:
            # Rounded to the output's dtype, as autograd hands it to the backward, then
            # widened: both sides project on the very same numbers.
            cts = [
                torch.as_tensor(c, dtype=o.dtype, device=o.device).double()
                for c, o in zip(ct, traced.outs, strict=True)
            ]

        def project(y):
            if loss is not None:
                return loss(y).reshape(()).double()
            total = 0.0
            for o, c in zip(self.fw.outputs(y, "fn(*inputs)"), cts, strict=True):
                # float64 accumulation of <c, y>, whatever the output's dtype.
                total = total + (o.double() * c).sum()
            return total

        leaves = traced.leaves
        with torch.enable_grad():
            value = project(self.g(leaves))
        if not value.requires_grad:
            raise ValueError(
                "the output does not depend on the checked inputs through autograd (it has "
                "no grad_fn): does the function detach, call .numpy() or run under no_grad?"
            )
        grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
        analytic = {
            # An input the output does not use has a zero gradient (autograd says None).
            n: numpy(torch.zeros_like(t) if gr is None else gr)
            for (n, t), gr in zip(leaves.items(), grads, strict=True)
        }
        if loss is not None:
            scale = abs(float(value.detach()))
        else:
            pairs = zip(traced.outs, cts, strict=True)
            scale = float(sum((o.detach().double().abs() * c.abs()).sum() for o, c in pairs))
        return self._numeric(traced, project, analytic, scale)

    def _numeric(self, traced: _Traced, project, analytic: dict, scale: float) -> Sides:
        """The numpy loss ``gradcheck.check`` differences, one point and vmapped."""
        torch, g = self.fw.torch, self.g
        where = {n: (t.device, t.dtype) for n, t in self.point.items()}
        # float64 values where g follows its inputs' dtype: gradcheck.check then widens.
        loss_dtype = np.float32 if traced.float32 and not traced.follows else np.float64

        def tensors(struct):
            # On the inputs' own device and dtype (or float64, where g follows it); on the
            # CPU in the same dtype, views of check's buffer (so a write to its input is
            # caught).
            return {
                n: torch.from_numpy(struct[n]).to(device=d, dtype=None if traced.follows else dt)
                for n, (d, dt) in where.items()
            }

        def one(struct):
            with torch.no_grad():
                return loss_dtype(project(g(tensors(struct))).item())

        vmapped = torch.func.vmap(lambda t: project(g(t)))

        def call(part):
            with torch.no_grad():
                return vmapped(tensors(part)).double().cpu().numpy()

        rows = vmap_rows(traced.params, sum(o.numel() for o in traced.outs))
        return Sides(analytic, one, loss_dtype, scale, Vmap(call, rows, _refusal))


def _refusal(exc: BaseException | None, got: Any, want: Any) -> Refusal:
    if exc is not None:
        return refused("torch.func.vmap", "run", _frameworks.why(exc), exc)
    why = f"torch.func.vmap gave {float(got[0])!r} at the inputs, one call {want!r}"
    return Refusal(why, why)
