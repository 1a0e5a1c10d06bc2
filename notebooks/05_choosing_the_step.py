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
# # Choosing the step
#
# A finite difference `(f(x + h) - f(x - h)) / 2h` is only as good as its step `h`. Too
# large, and the curvature of `f` spoils it (truncation error); too small, and the two values
# of `f` agree in almost all their digits, so their difference is mostly rounding error.
# `gradcheck.step_sweep` runs the check at a range of steps and shows both effects at once:
# a V-shaped curve whose bottom is the best a finite-difference check can do.
#
# This notebook draws that curve in float64 and float32, for a smooth function and for a
# small network, explains the default step, and compares the four methods gradcheck offers.
# Every number is computed when the notebook runs.

# %%
import matplotlib.pyplot as plt
import numpy as np

import gradcheck

rng = np.random.default_rng(0)
EPS = {np.float64: np.finfo(np.float64).eps, np.float32: np.finfo(np.float32).eps}


def slope(sweep, lo, hi):
    """The log-log slope of a sweep's differences over the steps in [lo, hi]."""
    keep = (sweep.steps >= lo) & (sweep.steps <= hi) & np.isfinite(sweep.differences)
    return np.polyfit(np.log10(sweep.steps[keep]), np.log10(sweep.differences[keep]), 1)[0]


def plot_sweeps(sweeps, ax):
    """Draw several sweeps on one axes with `sweep.plot()`, each labelled by its key."""
    for label, sweep in sweeps.items():
        before = len(ax.get_lines())
        sweep.plot(ax=ax, thresholds=False)  # the thresholds differ by dtype and method
        curve, best = ax.get_lines()[before : before + 2]
        curve.set_label(label)
        best.set_color(curve.get_color())
        best.set_label(f"{label}, best h = {sweep.best_step:.1e}")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    return ax


# %% [markdown]
# ## A smooth function
#
# `f(x) = Σ sin(x_i) exp(x_i / 3)` at 50 points in [-2, 2], with its exact gradient, in
# float64 and in float32. `step_sweep` tries absolute steps from `1e-1` down to `1e-12`,
# half a decade apart.

# %%
x = rng.uniform(-2, 2, 50)


def f(x):
    return np.sum(np.sin(x) * np.exp(x / 3))


def grad_f(x):
    return (np.cos(x) + np.sin(x) / 3) * np.exp(x / 3)


smooth = {}
for dtype in (np.float64, np.float32):
    xd = x.astype(dtype)
    smooth[dtype] = gradcheck.step_sweep(f, xd, grad_f(xd), seed=0)
    s = smooth[dtype]
    print(f"{dtype.__name__}: best step {s.best_step:.1e}, difference {s.best_difference:.2e}")

# %%
fig, ax = plt.subplots(figsize=(9, 4.5))
plot_sweeps({t.__name__: s for t, s in smooth.items()}, ax)
fig.tight_layout()

# %% [markdown]
# ## Reading the curve
#
# - **Right of the bottom: truncation.** Central differences are exact for quadratics; the
#   error comes from the third derivative and shrinks like `h²`: a line of slope 2 on the
#   log-log plot. Both precisions agree there, because rounding is negligible.
# - **Left of the bottom: rounding.** `f(x + h)` and `f(x - h)` each carry a rounding error
#   of about `eps · |f|`, and the division by `2h` magnifies it: the error grows like `1 / h`,
#   a slope of -1. In float32 `eps` is 2²⁹ times larger, so the left branch rises much
#   earlier. Below about `1e-7` the step no longer changes a float32 number of size one at
#   all (`x + h == x`); those steps are skipped and not drawn.
#
# The measured slopes:

# %%
s64, s32 = smooth[np.float64], smooth[np.float32]
right, left = slope(s64, 1e-3, 1e-1), slope(s64, 1e-12, 1e-7)
print(f"float64: slope {right:.2f} on the right (truncation), {left:.2f} on the left (rounding)")
left32 = slope(s32, 1e-6, 1e-3)
print(f"float32: slope {left32:.2f} on the left")
assert 1.9 < right < 2.1
assert -1.3 < left < -0.7
assert -1.3 < left32 < -0.7

# %% [markdown]
# ## Why float32 needs a larger step
#
# The two errors are about `c₁ h²` and `c₂ eps / h`; their sum is smallest where they are
# of the same size, at `h ≈ eps^(1/3)`, and the error there is about `eps^(2/3)`. In
# float64 that is a step of a few millionths; in float32 it is almost a hundredth, and no
# step gets the difference much below `eps^(2/3)`:

# %%
print(f"{'':8}{'eps':>10}{'eps^(1/3)':>11}{'best step':>11}{'eps^(2/3)':>11}{'best diff':>11}")
for dtype, s in smooth.items():
    eps = EPS[dtype]
    print(
        f"{dtype.__name__:8}{eps:>10.2e}{eps ** (1 / 3):>11.2e}{s.best_step:>11.1e}"
        f"{eps ** (2 / 3):>11.2e}{s.best_difference:>11.2e}"
    )
    assert 0.1 < s.best_step / eps ** (1 / 3) < 10
    assert 0.01 < s.best_difference / eps ** (2 / 3) < 100

# %% [markdown]
# ## The default step
#
# This is why `gradcheck.check` does not take a fixed step by default. It uses a relative
# step `h_i = eps^(1/3) · max(1, |x_i|)`, with `eps` of the coarser of the parameters' and
# the loss's dtypes (float32 as soon as either is), and divides by the step actually taken.
# The report says which step it used, and its difference is close to the bottom of the V
# (`evaluate="native"` keeps the float32 parameters in float32, as the sweep did):

# %%
for dtype, s in smooth.items():
    xd = x.astype(dtype)
    report = gradcheck.check(f, xd, grad_f(xd), seed=0, evaluate="native")
    print(
        f"{dtype.__name__}: {report.step}; difference {report.difference:.2e} "
        f"(the sweep's best: {s.best_difference:.2e})"
    )
    assert f"{EPS[dtype] ** (1 / 3):.3g}" in report.step
    assert report.difference < 10 * s.best_difference

# %% [markdown]
# By default a float32 check goes further. When `f` follows its input's dtype, as this one
# does, gradcheck evaluates it on float64 copies of the float32 parameters: the finite
# differences are then accurate to float64's resolution, far below float32's `eps^(2/3)`,
# and what is left of the difference is the gradient's own float32 rounding, so the float32
# gradient is held to what that rounding leaves (pass <= 1e-4, fail > 1e-3), which an error
# of 0.5% in every entry fails:

# %%
x32 = x.astype(np.float32)
wide = gradcheck.check(f, x32, grad_f(x32), seed=0)
print(f"float32, evaluated in float64: difference {wide.difference:.2e}; {wide.notes[-1]}")
assert wide.difference < s32.best_difference
assert wide.tol == (1e-4, 1e-3)

# %% [markdown]
# ## A small network
#
# The same curves for a one-hidden-layer network (tanh, 8 inputs, 16 hidden units, squared
# error over 64 examples) with its backward pass written by hand. The network is computed in
# the dtype of its parameters, so its float32 loss is a float32 number.

# %%
X = rng.standard_normal((64, 8))
Y = rng.standard_normal((64, 1))
net = {
    "W1": 0.5 * rng.standard_normal((8, 16)),
    "b1": 0.1 * rng.standard_normal(16),
    "W2": 0.5 * rng.standard_normal((16, 1)),
    "b2": np.zeros(1),
}


def mlp_loss(p):
    dt = p["W1"].dtype
    H = np.tanh(X.astype(dt) @ p["W1"] + p["b1"])
    r = H @ p["W2"] + p["b2"] - Y.astype(dt)
    return 0.5 * np.sum(r * r) / len(X)


def mlp_grad(p):
    dt = p["W1"].dtype
    H = np.tanh(X.astype(dt) @ p["W1"] + p["b1"])
    r = (H @ p["W2"] + p["b2"] - Y.astype(dt)) / len(X)
    dH = (r @ p["W2"].T) * (1 - H * H)
    return {"W1": X.astype(dt).T @ dH, "b1": dH.sum(0), "W2": H.T @ r, "b2": r.sum(0)}


nets = {dtype: {k: v.astype(dtype) for k, v in net.items()} for dtype in (np.float64, np.float32)}
mlp = {t: gradcheck.step_sweep(mlp_loss, p, mlp_grad(p), seed=0) for t, p in nets.items()}
print(f"{sum(v.size for v in net.values())} parameters")
for dtype, s in mlp.items():
    print(f"{dtype.__name__}: best step {s.best_step:.1e}, difference {s.best_difference:.2e}")
    assert 0.1 < s.best_step / EPS[dtype] ** (1 / 3) < 10

fig, ax = plt.subplots(figsize=(9, 4.5))
plot_sweeps({t.__name__: s for t, s in mlp.items()}, ax)
fig.tight_layout()

# %% [markdown]
# The network's curves have the same shape as the smooth function's, with their bottoms at
# the same steps: the best step depends on the precision far more than on the function.

# %% [markdown]
# ## Four methods
#
# - `central`: `(f(x + h) - f(x - h)) / 2h`, 2 evaluations, error `~h²`; default step
#   `eps^(1/3) · max(1, |x|)`.
# - `forward`: `(f(x + h) - f(x)) / h`, 1 evaluation, error `~h`; default step `eps^(1/2)`.
# - `richardson`: combines central differences at `h` and `h/2` to cancel the `h²` term,
#   4 evaluations, error `~h⁴`; default step `eps^(1/5) · max(1, |x|)`.
# - `complex`: `Im f(x + ih) / h`, 1 evaluation, no subtraction and hence no rounding
#   branch; needs an `f` that accepts complex input.
#
# Each method's V for the network in float64. The complex step has no left branch: its
# curve stays flat at rounding level however small the step. On the right it follows the
# central difference, whose truncation error is of the same size.

# %%
methods = ("central", "forward", "richardson", "complex")
p64 = nets[np.float64]
by_method = {
    m: gradcheck.step_sweep(mlp_loss, p64, mlp_grad(p64), method=m, seed=0) for m in methods
}
fig, ax = plt.subplots(figsize=(9, 4.5))
plot_sweeps(by_method, ax)
ax.set_title("one network, four methods (float64)")
fig.tight_layout()
assert 0.9 < slope(by_method["forward"], 1e-6, 1e-1) < 1.1  # forward: error ~h
assert 3.5 < slope(by_method["richardson"], 1e-2, 1e-1) < 4.5  # richardson: error ~h^4
assert by_method["complex"].differences[-1] < 1e-14  # no rounding branch

# %% [markdown]
# And each method as `gradcheck.check` runs it, at its default step, in both precisions
# (float32 kept in float32 with `evaluate="native"`; by default it would be evaluated in
# float64, and every method would then show the float32 gradient's own rounding alone):

# %%
results, calls = {}, {}
for dtype, p in nets.items():
    print(f"\n{dtype.__name__}")
    print(f"  {'method':12}{'difference':>12}  {'verdict':13}{'evaluations':>12}  step")
    for m in methods:
        r = gradcheck.check(mlp_loss, p, mlp_grad(p), method=m, seed=0, evaluate="native")
        results[dtype, m] = r.difference
        calls[dtype, m] = r.nfev
        print(f"  {m:12}{r.difference:>12.2e}  {r.verdict:13}{r.nfev:>12}  {r.step}")

for dtype in nets:
    d = {m: results[dtype, m] for m in methods}
    assert d["complex"] < d["richardson"] < d["central"] < d["forward"]
    assert calls[dtype, "forward"] < calls[dtype, "central"] < calls[dtype, "richardson"]

# %% [markdown]
# Central differences are the default: two evaluations per coordinate and a bottom of the V
# near `eps^(2/3)`. Forward differences halve the cost but resolve only about `eps^(1/2)`,
# which in float32 may not be enough for a verdict. Richardson buys accuracy with twice the
# evaluations of central differences. The complex step is accurate to rounding whenever `f`
# carries complex numbers through (no `abs`, no `.real`, no conjugation); gradcheck checks
# that it does before trusting it.
