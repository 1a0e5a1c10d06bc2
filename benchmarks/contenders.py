"""The contenders: gradcheck's engines, the course loop, and the peers, on one workload.

Every contender checks the same hand-written gradient of the same loss (``workloads.py``).
``prepare(name, workload, ...)`` returns a :class:`Run`: a zero-argument callable to time and
what one call of it covers.

A peer that would need minutes is timed on a prefix of its own run: its loss raises
:class:`BudgetExhausted` after ``limit`` evaluations, and the time is scaled by
``full evaluations / evaluations made``. The full count comes from counting the peer's calls
on a cheap loss at two sizes (``full_evaluations``), not from its documentation. The peer's
per-evaluation overhead (scipy and numdifftools build a new n-vector for every point) is
inside the timed prefix, so the scaled figure keeps it; the one-off set-up before the first
evaluation is scaled too, which overstates the peer by at most (scale - 1) x that set-up.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import gradcheck
from gradcheck import _demo

from .workloads import Workload

COURSE_EPS = 1e-7  # the course's step


class BudgetExhausted(Exception):
    """Raised by a counted loss once its evaluation budget is spent."""


class Counted:
    """``f`` that counts its calls and raises :class:`BudgetExhausted` past ``limit``."""

    def __init__(self, f: Callable[[np.ndarray], float], limit: int | None = None):
        self.f = f
        self.limit = limit
        self.calls = 0

    def __call__(self, x):
        if self.limit is not None and self.calls >= self.limit:
            raise BudgetExhausted
        self.calls += 1
        return self.f(x)


def relative_difference(grad: np.ndarray, approx: np.ndarray) -> float:
    """The course's number, computed as the course computes it (np.linalg.norm)."""
    return float(np.linalg.norm(grad - approx) / (np.linalg.norm(grad) + np.linalg.norm(approx)))


# --- the course loop --------------------------------------------------------------------------


def course_loop(
    loss: Callable[[dict], float],
    unflatten: Callable[[np.ndarray], dict],
    theta: np.ndarray,
    grad: np.ndarray,
    coords: np.ndarray | None = None,
    eps: float = COURSE_EPS,
) -> float:
    """The classic exercise's gradient check (``gradcheck._demo.course_loop``): two fresh
    copies of theta per coordinate, the dictionary rebuilt from each, central difference
    with an absolute step. ``coords`` restricts it to those coordinates (for timing on a
    subset).
    """
    return _demo.course_loop(loss, theta, grad, unflatten=unflatten, coords=coords, eps=eps)


# --- the peers, each as: run(f_flat, grad_flat, theta, g) -> difference ------------------------
# f_flat is the numpy loss of one flat vector (wrapped in Counted); grad_flat the hand-written
# gradient as a function of it; g that gradient at theta (what a checker is handed).


def _scipy_approx_fprime(f, grad_flat, theta, g):
    from scipy.optimize import approx_fprime

    return relative_difference(g, approx_fprime(theta, f))


def _scipy_check_grad(f, grad_flat, theta, g):
    from scipy.optimize import check_grad

    # An absolute norm, as scipy reports it; the checkers' relative number needs approx_fprime.
    return float(check_grad(f, grad_flat, theta))


def _scipy_approx_derivative(f, grad_flat, theta, g):
    from scipy.optimize._numdiff import approx_derivative

    return relative_difference(g, approx_derivative(f, theta, method="3-point"))


def _numdifftools_gradient(f, grad_flat, theta, g):
    import numdifftools

    return relative_difference(g, numdifftools.Gradient(f)(theta))


def _torch_function(f, grad_flat):
    """The numpy loss and hand-written gradient as a torch autograd Function, so that
    torch.autograd.gradcheck checks this very gradient of this very function.
    """
    import torch

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tensor(f(x.detach().numpy()), dtype=torch.float64)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * torch.from_numpy(grad_flat(x.detach().numpy()))

    return Loss.apply


def _torch(fast_mode):
    def run(f, grad_flat, theta, g):
        import torch

        x = torch.from_numpy(theta.copy()).requires_grad_(True)
        ok = torch.autograd.gradcheck(
            _torch_function(f, grad_flat), (x,), fast_mode=fast_mode, raise_exception=False
        )
        return 0.0 if ok else 1.0

    return run


def _jax_function(f, grad_flat):
    """The numpy loss with the hand-written gradient as its VJP, via pure_callback."""
    import jax
    import jax.numpy as jnp

    def value(x):
        return jax.pure_callback(
            lambda v: np.float64(f(np.asarray(v))), jax.ShapeDtypeStruct((), jnp.float64), x
        )

    @jax.custom_vjp
    def loss(x):
        return value(x)

    def fwd(x):
        return value(x), x

    def bwd(x, ct):
        g = jax.pure_callback(
            lambda v: grad_flat(np.asarray(v)), jax.ShapeDtypeStruct(x.shape, x.dtype), x
        )
        return (ct * g,)

    loss.defvjp(fwd, bwd)
    return loss


def _jax_check_grads(f, grad_flat, theta, g):
    import jax.numpy as jnp
    from jax.test_util import check_grads

    # Reverse mode only: a custom_vjp function has no forward-mode rule.
    check_grads(_jax_function(f, grad_flat), (jnp.asarray(theta),), order=1, modes=("rev",))
    return 0.0


PEERS: dict[str, tuple[Callable, str]] = {
    # name: (runner, what one run covers)
    "scipy approx_fprime": (_scipy_approx_fprime, "full"),
    "scipy check_grad": (_scipy_check_grad, "full"),
    "scipy approx_derivative 3-point": (_scipy_approx_derivative, "full"),
    "numdifftools Gradient": (_numdifftools_gradient, "full"),
    "torch gradcheck (slow)": (_torch(False), "full"),
    "torch gradcheck (fast)": (_torch(True), "directional"),
    "jax check_grads (rev)": (_jax_check_grads, "directional"),
}
OPTIONAL = {  # module each peer needs beyond the test extra
    "torch gradcheck (slow)": "torch",
    "torch gradcheck (fast)": "torch",
    "jax check_grads (rev)": "jax",
}


def setup_optional(name: str) -> None:
    """Process-wide settings an optional peer needs (JAX computes in float32 otherwise)."""
    if OPTIONAL.get(name) == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)


@functools.cache
def full_evaluations(name: str) -> tuple[int, int]:
    """``(a, b)``: a full run of peer ``name`` on n parameters evaluates f ``a*n + b`` times.

    Counted on a cheap quadratic at two sizes, so it follows the installed version.
    """
    run, _ = PEERS[name]
    counts = []
    for n in (3, 4):
        rng = np.random.default_rng(n)
        theta = rng.standard_normal(n)
        f = Counted(lambda x: float(x @ x))
        run(f, lambda x: 2 * x, theta, 2 * theta)
        counts.append(f.calls)
    a = counts[1] - counts[0]
    return a, counts[0] - 3 * a


# --- what is timed ----------------------------------------------------------------------------


@dataclass
class Run:
    """One timed call and what it covers."""

    contender: str
    call: Callable[[], Any]
    kind: str  # "full", "subset" (scaled to a full check), "sampled", "directional"
    coordinates: int  # checked one by one in the timed call (n for a full check)
    evaluations: int  # of f in the timed call
    scale: float  # time x scale = a full check (1 unless kind == "subset")
    estimate: float  # seconds one call should take, from a pilot (to choose the rounds)
    note: str = ""

    def extra_info(self, workload: Workload) -> dict[str, Any]:
        return {
            "contender": self.contender,
            "workload": workload.name,
            "description": workload.description,
            "n": workload.n,
            "kind": self.kind,
            "coordinates": self.coordinates,
            "evaluations": self.evaluations,
            "scale": self.scale,
            "note": self.note,
        }


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def course_run(w: Workload, seconds: tuple[float, float]) -> Run:
    """The course loop: on all coordinates when that takes at most ``seconds[0]``, else on
    an evenly spread subset taking about ``seconds[1]`` (every coordinate costs the same: two
    copies of theta and two calls).
    """
    full_up_to, subset = seconds
    theta, g = w.theta(), w.flat_grad()
    pilot = np.linspace(0, w.n - 1, min(w.n, 8)).astype(np.int64)
    # The faster of two pilots: the first may pay for cold caches.
    per_coord = min(timed(lambda: course_loop(w.loss, w.unflatten, theta, g, pilot)) for _ in "12")
    per_coord /= pilot.size
    k = w.n if per_coord * w.n <= full_up_to else max(2, int(subset / per_coord))
    coords = None if k >= w.n else np.unique(np.linspace(0, w.n - 1, k).astype(np.int64))
    k = w.n if coords is None else coords.size
    return Run(
        "course loop",
        lambda: course_loop(w.loss, w.unflatten, theta, g, coords),
        "full" if coords is None else "subset",
        k,
        2 * k,
        w.n / k,
        per_coord * k,
        "" if coords is None else f"timed on {k:,} of {w.n:,} coordinates, scaled",
    )


def peer_run(name: str, w: Workload, seconds: tuple[float, float]) -> Run:
    """Peer ``name`` on ``w``: whole when that takes at most ``seconds[0]``, else on a prefix
    of its run taking about ``seconds[1]``.
    """
    full_up_to, subset = seconds
    run, kind = PEERS[name]
    theta, g = w.theta(), w.flat_grad()

    def attempt(limit):
        f = Counted(w.flat_numpy, limit)
        try:
            run(f, w.flat_grad, theta, g)
        except BudgetExhausted:
            pass
        return f.calls

    if kind == "directional":
        started = time.perf_counter()
        evaluations = attempt(None)
        spent = time.perf_counter() - started
        return Run(name, lambda: attempt(None), kind, 0, evaluations, 1.0, spent, "1 direction")
    a, b = full_evaluations(name)
    total = a * w.n + b
    pilot = min(total, 2 * a + b + 8)
    per_call = min(timed(lambda: attempt(pilot)) for _ in "12") / pilot
    if per_call * total <= full_up_to:
        return Run(name, lambda: attempt(None), "full", w.n, total, 1.0, per_call * total)
    limit = max(pilot, int(subset / per_call))
    return Run(
        name,
        lambda: attempt(limit),
        "subset",
        int(min(w.n, max(1, (limit - b) // a))),
        limit,
        total / limit,
        per_call * limit,
        f"timed on {limit:,} of {total:,} evaluations, scaled",
    )


def gradcheck_run(w: Workload, engine: str, threads: int = 1, **options) -> Run:
    """gradcheck.check on the form of ``w`` that ``engine`` takes; the caller checks the
    verdict of the report the timed call returns. Kernels are warmed up elsewhere.
    """
    grads = w.grad(w.params)
    theta = w.theta()
    if engine == "numba":
        g = w.flat_grad()
        one = timed(lambda: w.flat(theta)) / threads

        def call():
            return gradcheck.check(w.flat, theta, g, engine="numba", **options)
    elif engine == "batched":
        rows = {k: np.repeat(v[None], 8, axis=0) for k, v in w.params.items()}
        one = timed(lambda: w.batched(rows)) / 8

        def call():
            return gradcheck.check(w.batched, w.params, grads, batched=True, **options)
    else:
        one = timed(lambda: w.loss(w.params))

        def call():
            return gradcheck.check(w.loss, w.params, grads, engine=engine, **options)

    sample, directions = options.get("sample"), options.get("directions")
    if sample is None and directions is None:
        kind, coordinates, note = "full", w.n, ""
    elif sample is not None:
        kind, coordinates, note = "sampled", int(sample), f"sample={sample}"
    else:
        kind, coordinates, note = "directional", 0, f"directions={directions} per block"
    # The evaluations the timed call makes are read from its report (report.nfev).
    evaluations = 2 * coordinates + 2 * (directions or 0) * len(w.keys)
    return Run(
        f"gradcheck {engine}", call, kind, coordinates, evaluations, 1.0, one * evaluations, note
    )
