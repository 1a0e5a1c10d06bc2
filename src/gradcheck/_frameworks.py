"""What the torch and jax adapters share: their settings, parameter names, the dtype rules,
cotangent leaves, short reprs. The pipeline they run is ``_projection``'s; what each
framework does in it is in ``_torch_backend`` and ``_jax_backend``.

Neither framework is imported here, so that ``import gradcheck`` loads neither.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import _options
from ._projection import Run, resolve_seed, validate_projections

# How the adapters may evaluate f: as the numpy core does by default ("auto": the numeric
# side on float64 copies of float32 inputs when the function follows its inputs' dtype,
# the analytic side on the inputs as given), in the inputs' dtype, or both sides on float64
# copies.
EVALUATE = ("auto", "native", "float64")


def settings(
    started: float,
    options: dict,
    *,
    evaluate: Any,
    projections: Any,
    cotangent: Any,
    loss: Callable[[Any], Any] | None = None,
) -> Run:
    """The validated :class:`Run` of an adapter call (``options``: the keyword arguments
    for :func:`gradcheck.check`); ``wide`` as ``evaluate`` asks, which an adapter may widen
    further.
    """
    if evaluate not in EVALUATE:
        raise ValueError(f"`evaluate` must be one of {EVALUATE}, got {evaluate!r}")
    projections = validate_projections(projections, cotangent)
    seed = resolve_seed(options.pop("seed", None))
    batched = _batched(options)
    wide = evaluate == "float64"
    # One thread: a module's forward is not safe to run from several threads at once (its
    # buffers, batch-norm statistics among them, are shared), and the frameworks run their
    # own kernels on every core already.
    checked = _options.validate(**{"workers": 1, **options}, seed=seed, batched=bool(batched))
    widen = evaluate == "auto"
    return Run(started, cotangent, projections, seed, batched, wide, checked, loss, widen)


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


def why(exc: BaseException) -> str:
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
