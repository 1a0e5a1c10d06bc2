# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The Taylor test: judge the rate, not the size
#
# Adjoint and PDE people check a gradient `g` of a loss `f` by the first-order Taylor
# remainder along a direction `d`:
#
#     r(h) = |f(x + h d) − f(x) − h ⟨g, d⟩|
#
# If `g` is the gradient, Taylor's theorem says `r(h) = h²/2 ⟨d, H d⟩ + O(h³)`: halve `h`
# and `r` falls fourfold. If `g` is wrong by `e`, then `r(h) ≈ h |⟨e, d⟩|` for small `h`:
# halve `h` and `r` only halves. So the **rate** at which the remainder falls, the slope of
# `log r` against `log h`, is 2 for a right gradient and 1 for a wrong one, whatever the
# scale of `f`, of `x` or of the error. No threshold is needed.
#
# `gradcheck.taylor_test` finds the steps where that rate can be read: it halves `h` from
# 0.5 until the remainder sinks into the rounding of `f` (measured, not guessed), and takes
# the smallest-step window where consecutive rates agree. When there is no such window (a
# loss at machine precision, a kink), it says so instead of reporting a number.
#
# Every number here is computed when the notebook runs.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import gradcheck

rng = np.random.default_rng(0)

# %% [markdown]
# ## A linear-solve loss and its adjoint
#
# `u = A⁻¹ x`, `J(x) = Σ u³ / 3` with 100 parameters: the gradient is the adjoint solve
# `Aᵀ λ = u²`, `g = λ`. A classic slip is to solve with `A` instead of `Aᵀ`.

# %%
n = 100
A = np.eye(n) * 4 + rng.standard_normal((n, n)) / np.sqrt(n)
x = rng.standard_normal(n)


def loss(x):
    u = np.linalg.solve(A, x)
    return np.sum(u**3) / 3


def adjoint(x):
    return np.linalg.solve(A.T, np.linalg.solve(A, x) ** 2)


def adjoint_wrong(x):
    return np.linalg.solve(A, np.linalg.solve(A, x) ** 2)  # A, not A^T


started = time.perf_counter()
right = gradcheck.taylor_test(loss, x, adjoint, seed=0)
right_seconds = time.perf_counter() - started
wrong = gradcheck.taylor_test(loss, x, adjoint_wrong, seed=0)
print(right)
print()
print(wrong)
assert right.verdict == "pass"
assert abs(right.rates["whole"] - 2) < 0.1
assert wrong.verdict == "fail"
assert abs(wrong.rates["whole"] - 1) < 0.1

# %% [markdown]
# The plot shows what the test saw: each remainder curve against `h`, its converging range
# drawn thick, the reference slopes 1 and 2 through it, and the rounding level of `f`
# (dotted). The right adjoint runs parallel to slope 2 until it meets rounding; the wrong
# one bends to slope 1 at small steps, where the `h ⟨e, d⟩` term outgrows the curvature.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
right.plot(ax=axes[0])
wrong.plot(ax=axes[1])
axes[0].set_title("adjoint with A^T: rate 2")
axes[1].set_title("adjoint with A: rate 1")
fig.tight_layout()

# %% [markdown]
# ## Why not a threshold on the remainder?
#
# The size of `r(h)` depends on everything but the gradient's correctness: the curvature
# `⟨d, H d⟩`, the scale of `f`, the step. Multiply the loss by 10⁶ and every remainder is
# 10⁶ times larger; the rate does not move. A threshold would have to be set per problem;
# the rate is the same number for every problem:

# %%
for scale in (1e-6, 1.0, 1e6):
    result = gradcheck.taylor_test(
        lambda v, s=scale: s * loss(v), x, lambda v, s=scale: s * adjoint(v), seed=0
    )
    d = result.directions[0]
    lo, hi = d.range
    print(
        f"loss x {scale:>6.0e}: remainders {d.remainders[lo]:.1e} .. {d.remainders[hi]:.1e}, "
        f"rate {d.rate:.2f}"
    )
    assert abs(d.rate - 2) < 0.1

# %% [markdown]
# ## Per block: which part is wrong
#
# With several parameter blocks, one more direction per block (zero elsewhere) tells which
# block's gradient is wrong: its rate alone falls to 1.

# %%
X = rng.standard_normal((30, 5))
y = rng.standard_normal(30)
params = {"w": rng.standard_normal(5), "b": np.array(0.3)}


def mse(p):
    r = np.tanh(X @ p["w"] + p["b"]) - y
    return 0.5 * r @ r


def mse_grad(p):
    t = np.tanh(X @ p["w"] + p["b"])
    r = (t - y) * (1 - t**2)
    return {"w": X.T @ r, "b": np.array(2 * r.sum())}  # db doubled: a planted mistake


blocks = gradcheck.taylor_test(mse, params, mse_grad, seed=1)
print(blocks)
assert blocks.failing == ("whole", "b")

# %% [markdown]
# ## float32, and where the range comes from
#
# In float32 the rounding of `f` is about 10⁻⁷ of its size, so the remainder reaches it
# after a few halvings; the test measures that level along the direction (ECnoise on the
# signed remainders, where `u |f|` would miss the rounding of terms that cancel) and reads
# the rate above it.

# %%
x32 = rng.uniform(-1, 1, 50).astype(np.float32)
grad32 = (np.cos(x32) + np.sin(x32) / 3) * np.exp(x32 / 3)
smooth = gradcheck.taylor_test(lambda v: np.sum(np.sin(v) * np.exp(v / 3)), x32, grad32, seed=0)
d = smooth.directions[0]
print(smooth)
print(f"steps tried: {d.steps.size}, from {d.steps[0]:.1e} to {d.steps[-1]:.1e}")
assert smooth.verdict == "pass"
assert abs(d.rate - 2) < 0.1

# %% [markdown]
# ## When no range converges, it says so
#
# Two losses where a rate would be a guess: one whose changes are below its own rounding
# (`1 + 10⁻¹⁷ |x|²` is 1.0 in float64 at every step), and `Σ |x_i|` with one entry at its
# kink, where the remainder falls like `h` for a right subgradient too. The kink is told
# from a wrong gradient by the even part `(f(x + h d) + f(x − h d))/2 − f(x)`: `O(h²)` for
# a smooth `f`, whatever the gradient, but `O(h)` at a kink.

# %%
flat = gradcheck.taylor_test(lambda v: 1.0 + 1e-17 * (v @ v), x, 2e-17 * x, seed=0)
xk = x.copy()
xk[3] = 0.0
kink = gradcheck.taylor_test(lambda v: np.sum(np.abs(v)), xk, np.sign(xk), seed=0)
for name, result in (("machine precision", flat), ("kink", kink)):
    print(f"{name}: {result.verdict}: {result.directions[0].reason}")
    assert result.verdict == "inconclusive"
    assert "no converging range" in result.directions[0].reason

# %% [markdown]
# ## Second order: a Hessian-vector product gives rate 3
#
# With `hvp=`, the second-order remainder `r(h) − h²/2 ⟨d, H d⟩` is tested: rate 3 when
# both the gradient and the Hessian-vector product are right, 2 when the HVP is wrong.

# %%
S = rng.standard_normal((n, n)) / np.sqrt(n)
S = S @ S.T + np.eye(n)


def quartic(v):
    return 0.5 * v @ S @ v + 0.25 * np.sum(v**4)


def quartic_grad(v):
    return S @ v + v**3


def quartic_hvp(v, t):
    return S @ t + 3 * v**2 * t


def quartic_hvp_wrong(v, t):
    return S @ t + 2 * v**2 * t


for name, hvp in (("right", quartic_hvp), ("wrong", quartic_hvp_wrong)):
    result = gradcheck.taylor_test(quartic, x, quartic_grad, hvp=hvp, seed=0)
    print(f"{name} hvp: rate {result.rates['whole']:.2f} ({result.verdict})")
assert gradcheck.taylor_test(quartic, x, quartic_grad, hvp=quartic_hvp, seed=0).passed

# %% [markdown]
# ## What it costs
#
# The Taylor test costs a few dozen evaluations of `f` per direction, whatever the number
# of parameters; a coordinate-wise check costs two per parameter. It tells *whether* the
# gradient is right along the directions drawn; `gradcheck.check` also tells *which
# entries* are wrong. Here, on the 100-parameter solve:

# %%
started = time.perf_counter()
full = gradcheck.check(loss, x, adjoint, seed=0)
full_seconds = time.perf_counter() - started
print(f"taylor_test: {right.nfev} evaluations, {right_seconds:.3f} s, verdict {right.verdict}")
print(f"check:       {full.nfev} evaluations, {full_seconds:.3f} s, verdict {full.verdict}")
assert right.nfev < full.nfev
