"""What users of other checkers type, answered: their keyword arguments and argument order,
refused with what gradcheck takes instead.

torch's ``gradcheck(fn, inputs, eps, atol, rtol, raise_exception, fast_mode, ...)``,
jax's ``check_grads(f, args, order, modes, eps, atol, rtol)`` and scipy's
``check_grad(func, grad, x0, *args, epsilon=...)`` each have their own words for the same
ideas; a bare "unexpected keyword argument" leaves the user to find ours.
"""

from __future__ import annotations

from typing import Any

_TOL = (
    "gradcheck judges each block's relative difference "
    "||grad - gradapprox|| / (||grad|| + ||gradapprox||), not entries against atol + rtol: "
    "use tol=(pass, fail) (default (1e-7, 1e-5) in float64, (1e-3, 1e-2) in float32)"
)
INSTEAD = {
    "atol": _TOL,
    "rtol": _TOL,
    "fast_mode": (
        "torch's fast mode checks one random projection; gradcheck's cheap check is "
        "directions=k (k random directions per block, 2 evaluations each) and sample=m "
        "(m coordinates one by one)"
    ),
    "raise_exception": (
        "check returns a Report (report.passed, report.failing); "
        "gradcheck.assert_gradient raises AssertionError with the report instead"
    ),
    "nondet_tol": (
        "gradcheck calls f again at the same point and calls a check of an f that is not "
        "deterministic inconclusive (noise=True, the default)"
    ),
    "check_undefined_grad": "gradcheck checks the gradient's values only",
    "check_batched_grad": "gradcheck checks the gradient's values only",
    "epsilon": "the step is eps= (None: a relative step chosen from the dtype)",
    "order": "gradcheck checks first derivatives: a second-order check is a check of the "
    "gradient's own gradient (check f's gradient function as the f of a check_vjp)",
    "modes": "gradcheck checks the vector-Jacobian product (reverse mode)",
    "epsilon_fd": "the step is eps=",
}


def refuse_unknown(unknown: dict[str, Any], options: list[str]) -> None:
    """Raise ``TypeError`` for keyword arguments gradcheck does not take, saying what it
    uses instead of those it knows from other checkers.
    """
    names = sorted(unknown)
    hints = [f"`{name}`: {INSTEAD[name]}" for name in names if name in INSTEAD]
    text = f"unknown option(s) {names}"
    if hints:
        text += "; " + "; ".join(hints)
    raise TypeError(f"{text}. The options are {options}")


def scipy_order(params: Any) -> None:
    """Refuse a callable where the parameters go: ``check(f, grad, x0)``, scipy's order."""
    if callable(params) and not hasattr(params, "shape"):
        raise TypeError(
            "`params` is a function, but gradcheck.check(f, params, grad) takes the point "
            "second and the gradient third, where scipy's check_grad(func, grad, x0) takes "
            "the gradient second: call check(f, x0, grad)"
        )
