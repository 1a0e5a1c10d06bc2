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

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from . import _frameworks, _jax_backend, _jax_modes, _modes, _options
from ._jax_compare import assert_close_to_reference, compare
from ._report import Report

__all__ = ["assert_close_to_reference", "check", "compare"]


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
    fw = _jax_backend.Jax()
    started = time.perf_counter()
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}: {fn!r:.80}")
    asked = _modes.validate(modes, order)
    run = _frameworks.settings(
        started, options, evaluate=evaluate, projections=projections, cotangent=cotangent
    )
    return _jax_modes.check_args(fw, fn, args, run, asked, partial(_argnums, argnums))


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
