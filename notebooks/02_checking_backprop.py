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
# # Checking a hand-written backward pass
#
# The classic gradient-checking exercise: a three-layer network
# LINEAR → RELU → LINEAR → RELU → LINEAR → SIGMOID with a binary cross-entropy cost, its
# backward pass written by hand, and two mistakes planted in it. gradcheck finds them, says
# in which parameter blocks they are, and confirms the fix.

# %%
import matplotlib.pyplot as plt
import numpy as np

import gradcheck

# %% [markdown]
# ## The network
#
# Parameters in a dict `W1, b1, ..., b3`; three examples of four features, drawn as in the
# exercise. The forward and backward passes are written operation for operation as in the
# exercise too, so that its numbers can be reproduced below.

# %%
rng = np.random.RandomState(1)
X = rng.randn(4, 3)
Y = np.array([1, 1, 0])
shapes = {"W1": (5, 4), "b1": (5, 1), "W2": (3, 5), "b2": (3, 1), "W3": (1, 3), "b3": (1, 1)}
params = {name: rng.randn(*shape) for name, shape in shapes.items()}


def relu(z):
    return np.maximum(0, z)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def forward(X, Y, p):
    """The cost and the cache a backward pass needs."""
    m = X.shape[1]
    Z1 = np.dot(p["W1"], X) + p["b1"]
    A1 = relu(Z1)
    Z2 = np.dot(p["W2"], A1) + p["b2"]
    A2 = relu(Z2)
    Z3 = np.dot(p["W3"], A2) + p["b3"]
    A3 = sigmoid(Z3)
    logprobs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1.0 / m * np.sum(logprobs)
    return cost, (A1, A2, A3)


def backward(X, Y, p, cache, planted):
    """Course-style gradients dW1, db1, ... plus the intermediate dZ and dA arrays."""
    m = X.shape[1]
    A1, A2, A3 = cache
    dZ3 = A3 - Y
    dW3 = 1.0 / m * np.dot(dZ3, A2.T)
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(p["W3"].T, dZ3)
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1.0 / m * np.dot(dZ2, A1.T) * (2 if planted else 1)  # planted: twice too large
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(p["W2"].T, dZ2)
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1.0 / m * np.dot(dZ1, X.T)
    db1 = (4.0 if planted else 1.0) / m * np.sum(dZ1, axis=1, keepdims=True)  # planted: 4x
    return {
        "dZ3": dZ3,
        "dW3": dW3,
        "db3": db3,
        "dA2": dA2,
        "dZ2": dZ2,
        "dW2": dW2,
        "db2": db2,
        "dA1": dA1,
        "dZ1": dZ1,
        "dW1": dW1,
        "db1": db1,
    }


def cost(p):
    return forward(X, Y, p)[0]


cost0, cache = forward(X, Y, params)
print(f"cost {cost0:.6f}, {sum(v.size for v in params.values())} parameters")

# %% [markdown]
# ## Check the backward pass with the planted mistakes
#
# `gradcheck.check` takes the cost, the parameters and the gradients as they come: the
# course-style keys `dW1` are matched to `W1`, and the extra `dZ`/`dA` keys are ignored.

# %%
grads = backward(X, Y, params, cache, planted=True)
report = gradcheck.check(cost, params, grads, seed=0)
print(report)

# %% [markdown]
# The check fails, and it says where: exactly the blocks `W2` and `b1`, with their worst
# entries by name. The other blocks pass. A block gradient that is `k` times too large is
# `(k - 1) / (k + 1)` away from the true one (see the first notebook), so the block
# differences themselves tell how wrong each block is:

# %%
assert sorted(report.failing) == ["W2", "b1"]
assert all(report.blocks[name].verdict == "pass" for name in ("W1", "b2", "W3", "b3"))
for name, k in (("W2", 2), ("b1", 4)):
    d = report.blocks[name].difference
    print(f"{name}: difference {d:.6f}, (k - 1)/(k + 1) for k = {k}: {(k - 1) / (k + 1):.6f}")
    assert np.isclose(d, (k - 1) / (k + 1), rtol=1e-6)
print("worst entries:", ", ".join(e.name for e in report.worst[:5]))

# %% [markdown]
# On the left, each block's difference against the pass and fail thresholds; on the right,
# the spread of the per-entry errors `|grad - gradapprox|`. The entries of `W2` and `b1` are
# off by orders of magnitude more than the rounding errors of the others.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
report.plot(ax=left)
report.plot_errors(grads, ax=right)
fig.tight_layout()

# %% [markdown]
# ## Fix the mistakes and check again

# %%
fixed = backward(X, Y, params, cache, planted=False)
report_fixed = gradcheck.check(cost, params, fixed, seed=0)
print(report_fixed)
assert report_fixed.verdict == "pass"

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
report_fixed.plot(ax=left)
report_fixed.plot_errors(fixed, ax=right)
fig.tight_layout()

# %% [markdown]
# ## The exercise's own numbers
#
# The exercise perturbs every parameter by a fixed `epsilon = 1e-7`. Passing the same `eps`
# makes gradcheck use that step exactly as the exercise does, and it reproduces the
# exercise's numbers, to the last digit where this machine's BLAS rounds the network's matrix
# products as the exercise's machine did (OpenBLAS on an x86-64 CPU with fused multiply-adds
# does). Elsewhere the last digits move, and how many tells what a step of `1e-7` costs: one
# rounding of the loss (an ulp, 4.4e-16 at 2.4) becomes 2.2e-9 in a difference quotient. Were
# each of the 94 losses rounded one ulp otherwise, the first number, made of the planted
# errors, would still agree to 1e-7 of itself; the second, made mostly of such roundings,
# only to 10%.

# %%
course_buggy = gradcheck.check(cost, params, grads, eps=1e-7, seed=0)
course_fixed = gradcheck.check(cost, params, fixed, eps=1e-7, seed=0)
exercise = {"planted": 0.2850931567761623, "fixed": 1.1890913024229996e-07}
for (name, printed), r in zip(exercise.items(), (course_buggy, course_fixed), strict=True):
    print(f"{name}: {r.difference!r} (the exercise: {printed!r}), {r.verdict}")
assert abs(course_buggy.difference / exercise["planted"] - 1) < 1e-7
assert abs(course_fixed.difference / exercise["fixed"] - 1) < 0.1

# %% [markdown]
# With that step the correct gradient lands just above the pass threshold, a `warn`: an
# absolute step of `1e-7` is too small for float64, and rounding error dominates. The
# default step, chosen from the precision and the size of each parameter, is more accurate:

# %%
print(f"eps=1e-7: {course_fixed.difference:.2e}   default step: {report_fixed.difference:.2e}")
assert report_fixed.difference < course_fixed.difference
