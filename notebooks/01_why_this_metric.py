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
# # Why this metric
#
# gradcheck compares the gradient you wrote, `grad`, with a finite-difference estimate,
# `gradapprox`, and sums the comparison up in one number:
#
# $$\text{difference} = \frac{\lVert grad - gradapprox \rVert_2}
#   {\lVert grad \rVert_2 + \lVert gradapprox \rVert_2}$$
#
# This notebook shows, one question at a time, why it is this number and not a simpler one.
# Every number below is computed, not typed in.

# %%
import matplotlib.pyplot as plt
import numpy as np

import gradcheck

rng = np.random.default_rng(0)


def norm(v):
    """The 2-norm (Euclidean length) of an array."""
    return float(np.sqrt(np.sum(np.square(v))))


# %% [markdown]
# ## 1. One number, not a vector
#
# `abs(grad - gradapprox)` gives one error per parameter. A check needs a single number, so
# the errors have to be summed up. Three candidates: the largest error, the mean of the
# absolute errors, and the 2-norm (the length of the error vector).
#
# Take 1000 parameters and two ways of being wrong: every entry off by a little, or one entry
# off by a lot.

# %%
n = 1000
spread = np.full(n, 1e-3)  # every entry off by 1e-3
single = np.zeros(n)
single[0] = 1.0  # one entry off by 1

measures = {
    "max |error|": lambda e: float(np.max(np.abs(e))),
    "mean |error|": lambda e: float(np.mean(np.abs(e))),
    "2-norm of error": norm,
}
for name, measure in measures.items():
    print(f"{name:>16}: spread {measure(spread):.3g}   single {measure(single):.3g}")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
x = np.arange(len(measures))
ax.bar(x - 0.2, [m(spread) for m in measures.values()], 0.4, label="every entry off by 1e-3")
ax.bar(x + 0.2, [m(single) for m in measures.values()], 0.4, label="one entry off by 1")
ax.set_xticks(x, list(measures))
ax.set_yscale("log")
ax.set_ylabel("error measure")
ax.legend()
fig.tight_layout()

# %% [markdown]
# The mean cannot tell the two apart: it divides the single large error by the number of
# entries. The maximum sees only one entry and ignores the rest. The 2-norm counts every entry
# and weights large errors more. It is also a length, so dividing it by the lengths of the
# gradients gives a true relative length: for any unit direction `v`, the error of the
# predicted change `v · grad` is at most that length.

# %% [markdown]
# ## 2. Relative to what?
#
# Two ways to make an error relative:
#
# - the **relative change** from a reference, `‖a - ref‖ / ‖ref‖`
#   (`gradcheck.relative_change(a, ref)`);
# - the **relative difference**, `‖a - b‖ / (‖a‖ + ‖b‖)`
#   (`gradcheck.relative_difference(a, b)`).
#
# The relative change needs one side to be the truth. In a gradient check neither side is:
# the analytic gradient is what is under test, and the finite-difference one carries
# truncation and rounding errors. The relative difference treats both alike.
#
# A gradient that is `k` times too large, measured both ways:

# %%
g = rng.standard_normal(5)
print(" k   difference   change from g   change from k*g")
for k in (2, 4):
    d = gradcheck.relative_difference(k * g, g)
    print(
        f"{k:2d}   {d:10.4f}   {gradcheck.relative_change(k * g, g):13.4f}"
        f"   {gradcheck.relative_change(g, k * g):15.4f}"
    )
    assert np.isclose(d, (k - 1) / (k + 1))  # the relative difference of k*g and g

# %% [markdown]
# The relative difference gives one answer, `(k - 1) / (k + 1)`, whichever way round; the
# relative change gives two, depending on which side you call the reference. A doubled
# gradient is 1/3 away and a quadrupled one 3/5: you will meet these two numbers again in the
# second notebook.
#
# When one side is zero, the relative difference is 1, its largest value, whatever the size
# of the other side; the relative change is 1 or infinite depending on the reference:

# %%
zero = np.zeros_like(g)
print("difference        ", gradcheck.relative_difference(zero, g))
print("change from g     ", gradcheck.relative_change(zero, g))
print("change from zero  ", gradcheck.relative_change(g, zero))

# %% [markdown]
# Across many factors `c`: the relative difference is symmetric in `c` and `1/c` and never
# exceeds 1; the relative change is neither. Close to `c = 1` the difference is about half of
# the change.

# %%
c = np.logspace(-2, 2, 201)
diff = [gradcheck.relative_difference(ci * g, g) for ci in c]
change_from_g = [gradcheck.relative_change(ci * g, g) for ci in c]
change_from_cg = [gradcheck.relative_change(g, ci * g) for ci in c]

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(c, diff, label="relative difference")
ax.loglog(c, change_from_g, "--", label="relative change, reference g")
ax.loglog(c, change_from_cg, ":", label="relative change, reference c·g")
ax.set_xlabel("c (the gradient under test is c·g)")
ax.legend()
fig.tight_layout()

near = 1 + 1e-4
print(
    "near c = 1: difference / change =",
    gradcheck.relative_difference(near * g, g) / gradcheck.relative_change(near * g, g),
)

# %% [markdown]
# Use the relative change when you do have a trusted reference, say a gradient from a
# verified implementation that you are porting. For a gradient check, use the difference.

# %% [markdown]
# ## 3. Scale
#
# A raw error is in the units of the gradient. A difference of length 1 is negligible
# between vectors of length one million, and total between vectors of length 0.75:

# %%
a_big = np.array([1e6, 0.0])
b_big = np.array([1e6, 1.0])
# Two vectors of length 0.75 whose difference has length 1: an angle t with
# 2 * 0.75 * sin(t / 2) = 1.
t = 2 * np.arcsin(1 / 1.5)
a_small = 0.75 * np.array([1.0, 0.0])
b_small = 0.75 * np.array([np.cos(t), np.sin(t)])
for a, b in ((a_big, b_big), (a_small, b_small)):
    print(
        f"lengths {norm(a):9.3g} and {norm(b):9.3g}:  ‖a - b‖ = {norm(a - b):.3g}, "
        f"relative difference = {gradcheck.relative_difference(a, b):.3g}"
    )

# %% [markdown]
# Dividing by the lengths makes the number scale-free: multiplying both gradients by the same
# factor (a loss summed over the batch instead of averaged, or in other units) changes the
# raw error but not the difference, so one threshold serves every model.

# %%
scales = np.logspace(-6, 6, 25)
g_approx = g + 1e-6 * rng.standard_normal(g.size)
raw = [norm(s * g - s * g_approx) for s in scales]
rel = [gradcheck.relative_difference(s * g, s * g_approx) for s in scales]

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(scales, raw, label="‖grad - gradapprox‖")
ax.loglog(scales, rel, label="relative difference")
ax.set_xlabel("scale of the loss")
ax.legend()
fig.tight_layout()
print("relative difference over all scales: from", min(rel), "to", max(rel))

# %% [markdown]
# ## 4. The one-dimensional case
#
# With a single parameter, `abs(grad - gradapprox)`, the 2-norm and the mean absolute error
# are the same number, and the difference is `|a - b| / (|a| + |b|)`. For `f(x) = x³` at
# `x = 2` the derivative is 12; a hand-written 12.5 is off by about 2%:

# %%
x0 = np.array(2.0)
report = gradcheck.check(lambda x: x**3, x0, np.array(12.5))
by_hand = abs(12.5 - 12.0) / (12.5 + 12.0)
print(f"gradcheck: {report.difference:.6g} ({report.verdict}), by hand: {by_hand:.6g}")
assert np.isclose(report.difference, by_hand, rtol=1e-6)

# %% [markdown]
# As the answer `b` varies against a true value of 1, the difference is 0 at `b = 1` and
# reaches 1, its maximum, as soon as `b` is zero or has the wrong sign:

# %%
b_values = np.linspace(-3, 3, 601)
d_values = [gradcheck.relative_difference(1.0, b) for b in b_values]

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(b_values, d_values)
ax.axvline(1.0, color="gray", ls=":")
ax.set_xlabel("b (the true value is 1)")
ax.set_ylabel("|1 - b| / (1 + |b|)")
fig.tight_layout()

# %% [markdown]
# ## 5. Dilution: one wrong entry among many
#
# A norm over all `n` entries shares out a single mistake. One entry wrong by a typical
# entry's size moves the difference by only about `1 / (2 √n)`; the mean absolute error
# dilutes it even more, by about `1 / n`.

# %%
sizes = 10 ** np.arange(1, 7)
d_one, mean_one = [], []
for size in sizes:
    g_n = rng.standard_normal(size)
    wrong = g_n.copy()
    wrong[0] += np.sqrt(np.mean(g_n**2))  # one entry off by a typical entry's size
    d_one.append(gradcheck.relative_difference(wrong, g_n))
    mean_one.append(np.mean(np.abs(wrong - g_n)) / np.mean(np.abs(g_n)))
    print(f"n = {size:>9,}: difference {d_one[-1]:.2e}, 1/(2√n) = {1 / (2 * np.sqrt(size)):.2e}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(sizes, d_one, "o-", label="relative difference")
ax.loglog(sizes, 1 / (2 * np.sqrt(sizes)), "k:", label="1 / (2√n)")
ax.loglog(sizes, mean_one, "s-", label="mean |error| / mean |grad|")
for tol, style, text in ((1e-5, "--", "float64 fail"), (1e-2, "-.", "float32 fail")):
    ax.axhline(tol, color="tab:red", ls=style, label=f"{text} > {tol:g}")
ax.set_xlabel("n, entries")
ax.legend(fontsize="small")
fig.tight_layout()
print(f"a float32 check stops failing it from n = {1 / (4 * 1e-2**2):,.0f} on")

# %% [markdown]
# From a few thousand entries on, a float32 check would not fail such a mistake on the
# global number. That is why gradcheck judges every parameter block on its own, and fails
# the check as soon as one block fails. Here one bias entry of a linear layer is off by a
# small amount, hidden among ten thousand weights:

# %%
X = rng.standard_normal((100, 30))
T = rng.standard_normal((100, 30))
params = {"W": 0.1 * rng.standard_normal((100, 100)), "b": 0.1 * rng.standard_normal(100)}


def loss(p):
    r = p["W"] @ X + p["b"][:, None] - T
    return 0.5 * np.sum(r * r)


r = params["W"] @ X + params["b"][:, None] - T
grads = {"W": r @ X.T, "b": r.sum(axis=1)}
grads["b"][3] += 0.01  # the mistake
print(f"the mistake is {0.01 / abs(grads['b'][3]):.2%} of that entry\n")

report = gradcheck.check(loss, params, grads, seed=0)
print(report)
lo, hi = report.tol
print(f"\nOn the global number alone: {'pass' if report.difference <= lo else 'warn'}.")
assert lo < report.difference <= hi
assert report.failing == ("b",)

# %%
ax = report.plot()
ax.figure.tight_layout()

# %% [markdown]
# The global difference lies between the two thresholds; the block `b` is clearly above the
# fail line, so the check fails and names `b`.
