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
# # Checking a model with a million parameters
#
# A full check perturbs every parameter twice: `2n` evaluations of the loss. For a million
# parameters that is two million evaluations, far too many to run after every change to a
# backward pass. This notebook shows the three ways gradcheck makes a large check cheap:
#
# - `sample=`: check a random, stratified subset of coordinates one by one;
# - `directions=`: compare the gradient along a few random directions per block, and when a
#   block fails, search for the wrong entries (`localize=`);
# - `budget=`: say how many seconds you can spend and let gradcheck choose.
#
# Every number below is computed when the notebook runs.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import gradcheck

rng = np.random.default_rng(0)

# %% [markdown]
# ## The model
#
# A loss over five parameter blocks, one million parameters in all: each block has a
# quadratic term and a linear term, and two couplings tie the biases to the weights. It is
# cheap to evaluate (timed below) and its gradient is easy to write, which makes the
# comparison with a full check possible. The sums use `np.einsum` rather than BLAS, so one
# evaluation runs on one core: multithreaded BLAS can stall badly when another process keeps
# a core busy, and the timings below would then measure that instead.

# %%
shapes = {"W1": (1000, 500), "W2": (500, 900), "W3": (200, 249), "b1": (180,), "b2": (20,)}
params = {name: 0.1 * rng.standard_normal(shape) for name, shape in shapes.items()}
curvature = {name: 1.0 + i for i, name in enumerate(shapes)}
linear = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
n = sum(p.size for p in params.values())
print(f"{n:,} parameters in {len(params)} blocks")


def dot(a, b):
    """The sum of a * b over all entries, on one core."""
    return float(np.einsum("i,i->", a.reshape(-1), b.reshape(-1)))


def loss(p):
    total = sum(0.5 * curvature[k] * dot(x, x) + dot(linear[k], x) for k, x in p.items())
    r = p["b1"] + p["W1"][:180].mean(axis=1)  # b1 coupled to row means of W1
    s = dot(p["b2"], p["W3"][:20, 0])  # b2 coupled to a column of W3
    return total + 0.5 * dot(r, r) + 0.5 * s * s


def gradient(p):
    g = {k: curvature[k] * x + linear[k] for k, x in p.items()}
    r = p["b1"] + p["W1"][:180].mean(axis=1)
    g["b1"] += r
    g["W1"][:180] += r[:, None] / p["W1"].shape[1]
    s = dot(p["b2"], p["W3"][:20, 0])
    g["b2"] += s * p["W3"][:20, 0]
    g["W3"][:20, 0] += s * p["b2"]
    return g


correct = gradient(params)

# %% [markdown]
# Two mistakes are planted in a copy of the gradient: 1% of the entries of `W2` (scattered,
# as an indexing bug would leave them) lose their linear term, and the gradient of the small
# bias `b2` has its sign flipped.

# %%
buggy = {k: g.copy() for k, g in correct.items()}
wrong_flat = rng.choice(params["W2"].size, params["W2"].size // 100, replace=False)
buggy["W2"].reshape(-1)[wrong_flat] -= linear["W2"].reshape(-1)[wrong_flat]
buggy["b2"] = -buggy["b2"]
rows, cols = np.unravel_index(wrong_flat, shapes["W2"])
wrong_names = {f"W2[{i}, {j}]" for i, j in zip(rows, cols, strict=True)}
print(f"{len(wrong_names):,} wrong entries in W2, and all {buggy['b2'].size} entries of b2")

# %% [markdown]
# ## What a full check would cost
#
# One evaluation of the loss, timed (the median of 20):

# %%
timings = []
for _ in range(20):
    started = time.perf_counter()
    loss(params)
    timings.append(time.perf_counter() - started)
per_eval = float(np.median(timings))
print(f"one evaluation: {per_eval * 1e3:.2f} ms; 2n evaluations: {2 * n * per_eval / 60:.0f} min")

# %% [markdown]
# We do not run the full check here. Instead we run it on a subset: `sample=200` checks 200
# coordinates one by one, exactly as the full check would check all of them, and we scale its
# time per coordinate up to all `n`. This run uses the correct gradient, and passes.

# %%
subset = gradcheck.check(loss, params, correct, sample=200, seed=0)
full_seconds = subset.seconds / subset.checked * n
print(f"{subset.checked:,} coordinates in {subset.seconds:.2f} s, verdict {subset.verdict}")
print(f"a full check, scaled up from that subset: about {full_seconds / 60:.0f} min")
assert subset.verdict == "pass"

# %% [markdown]
# ## `sample=`: a stratified sample of coordinates
#
# `sample=1000` checks 1,000 coordinates of the buggy gradient. The sample is stratified per
# block: blocks of up to 32 entries are checked whole, larger blocks get a share in
# proportion to their size (at least one coordinate each), so the 20-entry bias `b2` is
# never lost among a million weights.

# %%
sampled = gradcheck.check(loss, params, buggy, sample=1000, seed=0)
print(sampled)

# %% [markdown]
# Both mistakes are found, by block. The sign error is named as such. The column
# `P(miss 1%)` is `report.blocks[name].miss_probability(0.01)`: the chance that a bug touching
# 1% of that block's entries fell entirely between the sampled coordinates. For `W2`, with
# a few hundred sampled entries, that chance is small; for a bug touching ten times fewer
# entries it is large:

# %%
assert set(sampled.failing) == {"W2", "b2"}
assert sampled.blocks["b2"].checked == params["b2"].size  # the small bias, whole
assert all(block.checked > 0 for block in sampled.blocks.values())
assert "sign flipped" in sampled.blocks["b2"].diagnosis
w2 = sampled.blocks["W2"]
for p in (0.01, 0.001):
    miss = w2.miss_probability(p)
    print(f"W2, {w2.checked} of {w2.size:,} checked: P(miss a {p:.1%} bug) = {miss:.3g}")
assert w2.miss_probability(0.01) < 0.05 < w2.miss_probability(0.001)
print(
    f"{sampled.nfev:,} evaluations in {sampled.seconds:.2f} s: "
    f"{sampled.seconds / full_seconds:.2%} of the full check's time"
)

# %% [markdown]
# The chance of a miss depends on how many entries of a block were checked and on how much
# of the block a bug touches. Each block of the sampled report, for bugs of every size:

# %%
fractions = np.logspace(-4, -0.5, 60)
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, block in sampled.blocks.items():
    miss = [block.miss_probability(p) for p in fractions]
    label = f"{name} ({block.checked} of {block.size:,})"
    ax.loglog(fractions, np.maximum(miss, 1e-12), label=label)
ax.axvline(0.01, color="gray", ls=":")
ax.set_ylim(1e-6, 1.5)
ax.set_xlabel("fraction of the block's entries a bug touches")
ax.set_ylabel("chance the sample missed it")
ax.legend(fontsize="small")
fig.tight_layout()

# %% [markdown]
# ## `directions=`: every entry at once, then a search
#
# `directions=4` checks no coordinate one by one. For each block it draws 4 random Gaussian
# directions `v` and compares `v · grad` with the finite difference of the loss along `v`:
# two evaluations per direction, whatever the block's size, and every entry of the block
# takes part. When a block fails, gradcheck halves its coordinates and tests each half with a
# direction of its own, recursively, and names the wrong entries it reaches (up to
# `localize=8` per block), unless they fill the stretch it went through: a block wrong
# everywhere is described as such.

# %%
directed = gradcheck.check(loss, params, buggy, directions=4, seed=0)
print(directed)

# %%
assert set(directed.failing) == {"W2", "b2"}
assert directed.checked == 0
for name in ("W2", "b2"):
    print(f"{name}: localised {', '.join(directed.blocks[name].localized)}")
found_w2 = set(directed.blocks["W2"].localized)
assert found_w2
assert found_w2 <= wrong_names  # every entry named is one of the planted ones
# All of b2 is wrong: the entries the search reaches are simply b2's first, so it names
# none and says the error is spread over the block.
assert directed.blocks["b2"].localized == ()
assert "the error is spread over b2" in directed.blocks["b2"].diagnosis
print(
    f"\n{directed.nfev:,} evaluations in {directed.seconds:.2f} s, where checking W2 alone "
    f"coordinate by coordinate costs {2 * params['W2'].size:,} evaluations"
)
assert directed.nfev < sampled.nfev

# %% [markdown]
# The directions say *whether* a block is right at a cost that does not grow with its size;
# the search says *where* it is wrong, at about `4 log2(n)` evaluations per entry named.

# %% [markdown]
# ## `budget=`: as much as fits in a few seconds
#
# With `budget=3.0`, gradcheck times three evaluations of the loss and picks `sample` and
# `directions` so that those evaluations fill about three seconds, then stops each pass at
# the deadline. What fits in three seconds depends on the machine and on what else runs on
# it: here the report says what it checked, and what the budget left out. A planted bug is
# either found or among what the report says was left out; a correct block never fails.

# %%
budget = 3.0
budgeted = gradcheck.check(loss, params, buggy, budget=budget, seed=0)
print(budgeted)
print(
    f"\nchose sample = {budgeted.checked:,} coordinates and directions = {budgeted.directions}"
    f" per block; took {budgeted.seconds:.2f} s for a budget of {budget:g} s"
)
assert set(budgeted.failing) <= {"W2", "b2"}
left_out = [note for note in budgeted.notes if "budget" in note]
assert set(budgeted.failing) == {"W2", "b2"} or left_out, budgeted.notes

# %% [markdown]
# ## Side by side
#
# Each way of checking the buggy gradient, with its cost against the full check's (its time
# scaled up from the subset above; its evaluations, `2n`, exactly):

# %%
runs = {"sample=1000": sampled, "directions=4": directed, f"budget={budget:g}": budgeted}
print(f"{'':14}{'evaluations':>12}{'of full':>9}{'seconds':>9}{'of full':>9}   failing")
print(f"{'full (scaled)':14}{2 * n:>12,}{1:>9.0%}{full_seconds:>9.0f}{1:>9.0%}")
for label, r in runs.items():
    print(
        f"{label:14}{r.nfev:>12,}{r.nfev / (2 * n):>9.2%}{r.seconds:>9.2f}"
        f"{r.seconds / full_seconds:>9.2%}   {', '.join(r.failing)}"
    )
    assert r.nfev < 0.01 * 2 * n

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
sampled.plot(ax=axes[0]).set_title("sample=1000")
directed.plot(ax=axes[1]).set_title("directions=4")
fig.tight_layout()

# %% [markdown]
# The bars of the `directions=4` report are the differences along the directions. Both
# reports fail exactly `W2` and `b2`, for well under a hundredth of the evaluations of a full
# check.
