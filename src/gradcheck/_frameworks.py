"""What the torch and jax adapters share: their settings, the vmap-or-loop decision, the
dtype rules, cotangent leaves, module state, short reprs.

Neither framework is imported here: the functions that need one take it as an argument
(``torch``), so that ``import gradcheck`` loads neither.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _check, _options, _vjp
from ._report import Report

# How the adapters may evaluate f: as the numpy core does by default ("auto": the numeric
# side on float64 copies of float32 inputs when the function follows its inputs' dtype,
# the analytic side on the inputs as given), in the inputs' dtype, or both sides on float64
# copies.
EVALUATE = ("auto", "native", "float64")
# Memory for one vmapped call: the perturbed rows and their outputs, with room for the
# intermediates (four outputs' worth) of a typical layer. Larger stacks are split.
VMAP_BYTES = 64 << 20
# The vmapped and the looped value of f at the inputs may differ by the rounding of a
# differently ordered sum; beyond this many units of the projection's scale, vmap computed
# something else (random ops, state, data-dependent code) and the loop is used.
VMAP_AGREE_ULPS = 1000.0


@dataclass(frozen=True)
class Run:
    """The settings of one adapter call, validated once and carried to every projection.

    ``options`` are the check's, validated (with the seed); ``batched`` is None (try vmap),
    True (require it) or False (never); ``wide``: the function runs on float64 copies;
    ``loss``: a user loss makes the output scalar (no cotangents); ``widen``: the numeric
    side alone may run on float64 copies of float32 inputs, where the function follows
    their dtype ("auto").
    """

    started: float
    cotangent: Any
    projections: int
    seed: int
    batched: bool | None
    wide: bool
    options: _options.Options
    loss: Callable[[Any], Any] | None = None
    widen: bool = False

    @property
    def drawn(self) -> bool:
        # The report says the cotangent came from the seed only when it did.
        return self.cotangent is None and self.loss is None


def settings(
    started: float, options: dict, *, evaluate: Any, projections: Any, cotangent: Any, loss=None
) -> Run:
    """The validated :class:`Run` of an adapter call (``options``: the keyword arguments
    for :func:`gradcheck.check`); ``wide`` as ``evaluate`` asks, which an adapter may widen
    further.
    """
    if evaluate not in EVALUATE:
        raise ValueError(f"`evaluate` must be one of {EVALUATE}, got {evaluate!r}")
    projections = _vjp.validate_projections(projections, cotangent)
    seed = _vjp.resolve_seed(options.pop("seed", None))
    batched = _batched(options)
    wide = evaluate == "float64"
    # One thread: a module's forward is not safe to run from several threads at once (its
    # buffers, batch-norm statistics among them, are shared), and the frameworks run their
    # own kernels on every core already.
    checked = _options.validate(**{"workers": 1, **options}, seed=seed, batched=bool(batched))
    widen = evaluate == "auto"
    return Run(started, cotangent, projections, seed, batched, wide, checked, loss, widen)


def cotangents(run: Run, shapes: list[tuple[int, ...]], given: Callable[[], Any]) -> list:
    """The cotangent of each projection: ``[None]`` under a user loss, else ``given()``
    (the user's, validated) or ``run.projections`` of them drawn from ``run.seed`` for
    outputs of ``shapes``.
    """
    if run.loss is not None:
        return [None]
    if run.cotangent is not None:
        return [given()]
    return [_vjp.draw_like(_vjp.cotangent_rng(run.seed, k), shapes) for k in range(run.projections)]


def check_numeric(numeric: tuple, params: dict, analytic: dict, run: Run) -> Report:
    """:func:`gradcheck.check` of one projection, ``numeric`` being what the adapter's
    ``_numeric`` chose: ``(f, batched, note)``; the note (why not vmap) joins the report's.
    """
    f, batched, note = numeric
    report = _check.run(f, params, analytic, replace(run.options, batched=batched))
    return replace(report, notes=(*report.notes, note)) if note else report


def _batched(options: dict) -> bool | None:
    """``batched`` for the adapters: None tries vmap, True requires it, False skips it."""
    batched = options.pop("batched", None)
    if batched is not None and not isinstance(batched, bool):
        raise TypeError(f"`batched` must be True, False or None, got {batched!r}")
    engine = options.get("engine", "auto")
    if engine == "batched":
        batched = True
    elif engine != "auto":
        if batched:
            raise ValueError(f"batched=True runs in the batched engine, not engine={engine!r}")
        batched = False
    if options.get("method") == "complex":
        raise ValueError(
            "method='complex' is not supported by the framework adapters (the inputs are "
            "real tensors); use method='central'"
        )
    return batched


def parameter_names(target: Any, count: int, *, skip: int = 0) -> list[str]:
    """The names of ``target``'s first ``count`` positional parameters (after ``skip``),
    else ``input0``, ``input1``, ... when the signature cannot be read or has too few.
    """
    default = [f"input{i}" for i in range(count)]
    try:
        parameters = list(inspect.signature(target).parameters.values())[skip:]
    except (TypeError, ValueError):
        return default
    names = []
    for p in parameters:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        names.append(p.name)
    return names[:count] if len(names) >= count else default


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def why(exc: Exception) -> str:
    """An exception in one line: its type and the first line of its message."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


# --- dtypes and cotangents ---------------------------------------------------------------------


def refuse_mixed_dtypes(what: str, listing: str) -> None:
    # One dtype for all: a float32 entry perturbed in a float64 buffer would round its step.
    raise ValueError(
        f"the checked {what} mix dtypes ({listing}); use evaluate='float64', or give them one dtype"
    )


def require_float64(dtypes: Iterable[str], float64: str) -> None:
    """With evaluate='float64', refuse outputs (their dtypes' names) other than ``float64``:
    a function that does not follow its inputs' dtype would be checked in another one.
    """
    got = sorted({d for d in dtypes if d != float64})
    if got:
        raise ValueError(
            f"evaluate='float64' needs the function to follow its inputs' dtype, but on "
            f"float64 inputs it returned {', '.join(got)}: use evaluate='native'"
        )


def cotangent_leaf(arr: np.ndarray, want: tuple[int, ...], label: str) -> np.ndarray:
    """A given cotangent's array for an output of shape ``want``, as float64; ``label``
    names it in the errors (``"`cotangent`[1]"``).
    """
    if arr.shape != want or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{label} must be real with the output's shape {want}, got {arr.dtype} of shape "
            f"{arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{label} must be finite")
    return arr.astype(np.float64)


def torch_cotangent(torch, cotangent: Any, outs: list) -> list[np.ndarray]:
    """A given cotangent as float64 arrays, one per floating output tensor in ``outs``."""
    items = cotangent if isinstance(cotangent, (tuple, list)) else [cotangent]
    if len(items) != len(outs):
        raise ValueError(
            f"`cotangent` has {len(items)} arrays, but the function returns {len(outs)} "
            "floating tensors"
        )
    arrays = []
    for k, (c, o) in enumerate(zip(items, outs, strict=True)):
        arr = c.detach().cpu().double().numpy() if isinstance(c, torch.Tensor) else np.asarray(c)
        where = f"[{k}]" if len(outs) > 1 else ""
        arrays.append(cotangent_leaf(arr, tuple(o.shape), f"`cotangent`{where}"))
    return arrays


# --- the vmap-or-loop decision -----------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why vmap is not used: the end of the error under ``batched=True`` ("batched=True, but
    ..."), the end of the report's note otherwise ("evaluated point by point: ..."), and
    the exception to chain to the error, if any.
    """

    error: str
    note: str
    cause: BaseException | None = None


def refused(vmap: str, verb: str, text: str, cause=None) -> Refusal:
    """Why ``vmap`` cannot be used, in ``text``: "``vmap`` cannot ``verb`` the function:
    ..." under ``batched=True``, "``vmap`` cannot run it (...)" in the note.
    """
    error = f"{vmap} cannot {verb} the function: {text}"
    return Refusal(error, f"{vmap} cannot run it ({_first_sentence(text)})", cause)


def _first_sentence(text: str, limit: int = 240) -> str:
    """``text`` up to the end of its first sentence, and cut at a word (with "…") if that
    is still longer than ``limit``: the note says why, the error under ``batched=True``
    says it all.
    """
    end = text.find(". ")
    text = text if end < 0 else text[: end + 1]
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


def vmap_rows(point: dict, out_numel: int) -> int:
    """Rows per vmapped call that keep one call within :data:`VMAP_BYTES`."""
    n = sum(a.size for a in point.values())
    return max(1, VMAP_BYTES // (8 * (n + 4 * out_numel)))


def stacked(call, rows: int, loss_dtype: type, pad=None):
    """``many(struct)``, the batched f: ``call`` (the vmapped function, numpy stacks in and
    values out) on chunks of at most ``rows`` rows of ``struct``'s stacks, as ``loss_dtype``
    values. ``pad(part)`` may lengthen a chunk; the values of the rows it adds are dropped.
    """

    def many(struct):
        count = len(next(iter(struct.values())))
        values = np.empty(count)
        for lo in range(0, count, rows):
            part = {k: a[lo : lo + rows] for k, a in struct.items()}
            n = min(rows, count - lo)
            values[lo : lo + n] = call(part if pad is None else pad(part))[:n]
        return values.astype(loss_dtype)

    return many


def agreement(loss_dtype: type, scale: float) -> float:
    """How far the vmapped value at the inputs may lie from the one-point value."""
    return VMAP_AGREE_ULPS * float(np.finfo(loss_dtype).eps) * scale


def vmap_or_loop(
    one: Callable,
    many: Callable,
    point: dict,
    want: Callable[[], float],
    *,
    batched: bool | None,
    tol: float,
    refusal: Callable[..., Refusal],
) -> tuple[Callable, bool, str | None]:
    """``(f, batched, note)``: ``many`` (a vmapped f of stacks) when it runs on two rows of
    ``point`` and agrees with ``want()`` (the one-point value) within ``tol``; else ``one``
    and a note, or a ValueError when ``batched`` is True.

    ``refusal(exc, got, want)`` words the reason: ``exc`` what ``many`` raised (None when
    it ran), ``got`` its values, ``want`` the one-point value (None when ``many`` raised).
    """
    if batched is False:
        return one, False, None
    try:
        got = many({k: np.repeat(a[None], 2, axis=0) for k, a in point.items()})
    except Exception as exc:  # vmap refuses many things (custom Functions, .item(), state)
        reason = refusal(exc, None, None)
    else:
        value = want()
        if all(abs(float(v) - value) <= tol for v in got):
            return many, True, None
        reason = refusal(None, got, value)
    if batched:
        error = ValueError(f"batched=True, but {reason.error}")
        # Chained only where the adapter asks (torch does, jax never did): the message
        # already quotes the exception's first line.
        if reason.cause is None:
            raise error
        raise error from reason.cause
    return one, False, f"evaluated point by point: {reason.note}"


# --- torch only: its dtypes, and the module state check_module leaves as it found it ------------


def validate_tensor_dtypes(torch, point: dict) -> None:
    """float32 or float64, one dtype for all: a float32 entry perturbed in a float64 buffer
    would round the step it is given.
    """
    for n, t in point.items():
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(
                f"`{n}` has dtype {t.dtype}: finite differences cannot resolve a gradient in "
                "it; use evaluate='float64' (if the function follows its inputs' dtype)"
            )
    dtypes = {n: t.dtype for n, t in point.items()}
    if len(set(dtypes.values())) > 1:
        refuse_mixed_dtypes("tensors", ", ".join(f"{n}: {d}" for n, d in dtypes.items()))


def may_widen(torch, point: dict, run: Run) -> bool:
    """``evaluate="auto"`` on float32 inputs: the numeric side may use float64 copies."""
    return run.widen and all(t.dtype == torch.float32 for t in point.values())


def widened(tensors: dict, point: dict) -> bool:
    """A call on float64 copies of the float32 point (the numeric side, widened)."""
    return any(t.dtype != point[n].dtype for n, t in tensors.items())


def wide_copies(torch, point: dict, run: Run, held: Any, prepare) -> Any:
    """``held`` (tensors, in tuples, lists and dicts) with float64 copies of its floating
    tensors (``prepare(torch, t, True)``) where the numeric side may widen, else itself.
    """
    if not may_widen(torch, point, run):
        return held
    if isinstance(held, dict):
        return {k: wide_copies(torch, point, run, v, prepare) for k, v in held.items()}
    if isinstance(held, (tuple, list)):
        return type(held)(wide_copies(torch, point, run, v, prepare) for v in held)
    return prepare(torch, held, True)


def follows(torch, g, point: dict, run: Run, outputs) -> bool:
    """Whether the numeric side may widen and ``g`` computes in float64 on float64 copies
    of the point: its floating outputs (``outputs(torch, y, what)``, or the user's loss)
    come back float64. One evaluation.
    """
    if not may_widen(torch, point, run):
        return False
    wide = {n: t.to(torch.float64) for n, t in point.items()}
    try:
        with torch.no_grad():
            y = g(wide)
            if run.loss is not None:
                return run.loss(y).dtype == torch.float64
            return all(o.dtype == torch.float64 for o in outputs(torch, y, "fn(*inputs)"))
    except Exception:  # a function that cannot run in float64 is checked in its own dtype
        return False


@contextmanager
def module_kept(torch, module):
    """Put ``module`` back as it was on leaving, even when its forward raised."""
    saved = _save_module(torch, module)
    try:
        yield
    finally:
        _restore_module(torch, saved)


def _save_module(torch, module) -> dict:
    """What check_module must put back: parameter values, .grad, buffers, modes."""
    with torch.no_grad():
        return {
            "params": [
                (p, p.detach().clone(), p.grad, None if p.grad is None else p.grad.clone())
                for p in module.parameters()
            ],
            "buffers": [(b, b.detach().clone()) for b in module.buffers()],
            "modes": [(m, m.training) for m in module.modules()],
        }


def _restore_module(torch, saved: dict) -> None:
    with torch.no_grad():
        for p, value, grad, grad_value in saved["params"]:
            if not _same(torch, p, value):
                p.copy_(value)
            p.grad = grad
            if grad is not None and not _same(torch, grad, grad_value):
                grad.copy_(grad_value)
        for b, value in saved["buffers"]:
            if not _same(torch, b, value):
                b.copy_(value)
    for m, training in saved["modes"]:
        m.training = training


def _same(torch, a, b) -> bool:
    # Bitwise, so that NaN equals NaN and a restored value is the very same number.
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and torch.equal(
            a.detach().reshape(-1).view(torch.uint8), b.detach().reshape(-1).view(torch.uint8)
        )
    )
