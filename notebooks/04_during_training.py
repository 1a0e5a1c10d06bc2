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
# # Checking gradients during training
#
# A gradient check before training says the backward pass was right at one point. A bug
# can still appear later: a code path taken only after warm-up, a flag switched by a
# schedule, a shape that changes. `gradcheck.Monitor` spot-checks the gradient while the
# model trains: every `every` steps it checks every parameter block (one in rotation when
# its budget is short), on the minibatch of that step, with a few coordinates and random
# directions; a block that fails is checked again at once, and when it fails again the
# monitor alerts.
#
# Here a small network is trained with SGD and a hand-written backward pass; a switch breaks
# the gradient of one block at a known step, and the monitor finds it. Every number below is
# computed when the notebook runs.

# %%
import itertools
import warnings

import matplotlib.pyplot as plt
import numpy as np

import gradcheck

rng = np.random.default_rng(0)

# %% [markdown]
# ## The network and its backward pass
#
# LINEAR → TANH → LINEAR → TANH → LINEAR → SOFTMAX with a mean cross-entropy loss, on a
# synthetic three-class problem, in minibatches of 64. From step `BREAK_AT` on, the backward
# pass forgets the tanh derivative in the gradient of the second bias, `b2` (a copy-paste
# slip: `dA2` where `dZ2` was meant). Every other block's gradient stays right.

# %%
SIZES = (20, 64, 64, 3)
BREAK_AT = 250
# Minibatches of 64 keep every matrix product below the size at which BLAS starts threads:
# at this size they cost more than they save, and on a busy machine they stall.
STEPS, BATCH, LR = 400, 64, 0.2
LONG = 3000  # steps of the run under a time budget, at the end

centers = 0.5 * rng.standard_normal((3, SIZES[0]))
labels = rng.integers(0, 3, 2048)
X = centers[labels] + rng.standard_normal((labels.size, SIZES[0]))
Y = np.eye(3)[labels]


def init_params():
    params = {}
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(SIZES), start=1):
        params[f"W{k}"] = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        params[f"b{k}"] = np.zeros(fan_out)
    return params


def forward(p, X):
    A1 = np.tanh(X @ p["W1"] + p["b1"])
    A2 = np.tanh(A1 @ p["W2"] + p["b2"])
    Z3 = A2 @ p["W3"] + p["b3"]
    Z3 = Z3 - Z3.max(axis=1, keepdims=True)
    logp = Z3 - np.log(np.exp(Z3).sum(axis=1, keepdims=True))
    return A1, A2, logp


def loss(p, X, Y):
    return -(Y * forward(p, X)[2]).sum() / len(X)


def backward(p, X, Y, broken):
    A1, A2, logp = forward(p, X)
    dZ3 = (np.exp(logp) - Y) / len(X)
    dA2 = dZ3 @ p["W3"].T
    dZ2 = dA2 * (1 - A2**2)
    dA1 = dZ2 @ p["W2"].T
    dZ1 = dA1 * (1 - A1**2)
    return {
        "W1": X.T @ dZ1,
        "b1": dZ1.sum(axis=0),
        "W2": A1.T @ dZ2,
        "b2": (dA2 if broken else dZ2).sum(axis=0),  # the switch
        "W3": A2.T @ dZ3,
        "b3": dZ3.sum(axis=0),
    }


# %% [markdown]
# ## Training under a monitor
#
# The loop is plain SGD. After each backward pass it hands the monitor the step, the loss on
# this minibatch as a function of the parameters, the parameters and the gradient; the
# monitor copies what it needs and never modifies them. Here it checks a block every 10 steps
# with 16 coordinates and 2 random directions, without a time budget (`budget=None`) so that
# every check runs on schedule; a budget is the subject of the last section.
#
# An alert is a `gradcheck.GradientAlert` warning by default (`on_alert="warn"`); the loop
# records them. `on_alert="raise"` would stop the training instead, and a callable
# `on_alert(block, report)` can do anything else.


# %%
def train(monitor, steps=STEPS, break_at=BREAK_AT):
    params = init_params()
    batches = np.random.default_rng(1)
    losses = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gradcheck.GradientAlert)
        for step in range(1, steps + 1):
            rows = batches.choice(len(X), BATCH, replace=False)
            Xb, Yb = X[rows], Y[rows]
            grads = backward(params, Xb, Yb, broken=break_at is not None and step >= break_at)
            losses.append(loss(params, Xb, Yb))
            monitor.step(step, lambda p, Xb=Xb, Yb=Yb: loss(p, Xb, Yb), params, grads)
            params = {name: value - LR * grads[name] for name, value in params.items()}
    return losses, [w.message for w in caught]


monitor = gradcheck.Monitor(every=10, budget=None, sample=16, directions=2, seed=0)
losses, alerts = train(monitor)
print(f"minibatch loss {losses[0]:.3f} at step 1, {losses[-1]:.3f} at step {STEPS}")
print(f"{monitor.checks} checks, {len(alerts)} alert(s)")
assert losses[-1] < 0.5 * losses[0]

# %% [markdown]
# ## The alert
#
# The warning's first line says which block failed, at which steps, and by how much; the
# rest of it is the failing check's report.

# %%
assert len(alerts) == 1
print(alerts[0])

# %% [markdown]
# ## The history
#
# `monitor.history()` lists every check: its step, block, difference, verdict and cost
# (`monitor.to_csv(path)` writes the same as a CSV file). `monitor.plot()` draws each
# block's difference against the step, failed checks crossed, the fail threshold dashed and
# the alert dotted; we add where the bug switched on:

# %%
history = monitor.history()
fig, ax = plt.subplots(figsize=(9, 4.5))
monitor.plot(ax=ax)
ax.axvline(BREAK_AT, color="gray", ls=":", label=f"switch at step {BREAK_AT}")
ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
alert = monitor.alerts[0]
fig.tight_layout()

# %% [markdown]
# Before the switch every check passes, at the level of rounding error. After it, the next
# check fails `b2`; the monitor then checks `b2` again at once, at the same step, on other
# coordinates and directions (a single failure might be a kink of the loss crossed between
# the two evaluations), and the second failure raises the alert. No other block ever fails.

# %%
before = [h for h in history if h["step"] < BREAK_AT]
after_b2 = [h for h in history if h["step"] >= BREAK_AT and h["block"] == "b2"]
others_after = [h for h in history if h["step"] >= BREAK_AT and h["block"] != "b2"]
first_fail = after_b2[0]["step"]
verdicts_before = sorted({h["verdict"] for h in before})
checks_before = len({h["seed"] for h in before})  # a check of every block: a row per block
print(f"checks before step {BREAK_AT}: {checks_before} ({len(before)} rows), {verdicts_before}")
print(f"b2 after the switch: {[(h['step'], h['verdict']) for h in after_b2]}")
print(f"first failure at step {first_fail}, alert at step {alert['step']} (block {alert['block']})")
assert all(h["verdict"] == "pass" for h in before)
assert all(h["verdict"] == "fail" for h in after_b2)
assert all(h["verdict"] != "fail" for h in others_after)
assert alert["block"] == "b2"
assert alert["step"] == first_fail  # confirmed at once, at the same step
assert first_fail - BREAK_AT < monitor.every  # the first check after the bug

# %% [markdown]
# With every block checked each time, a bug waits at most one interval (`every` steps) for
# the next check; the confirming check runs at once.

# %% [markdown]
# ## What it costs
#
# A check of every block costs some sixty evaluations of the loss, a training step
# about three (a forward pass and a backward pass). On a network this small, checking every
# 10 steps costs more time than the training itself:

# %%
evaluations = sum(h["nfev"] for h in {h["seed"]: h for h in history}.values())
print(
    f"without a budget: {monitor.checks} checks, {evaluations:,} evaluations of the loss for "
    f"{STEPS} training steps; monitor {monitor.monitor_seconds:.3f} s, training "
    f"{monitor.training_seconds:.3f} s: overhead {monitor.overhead:.0%}"
)
assert evaluations > 3 * STEPS

# %% [markdown]
# That is why the monitor has a budget, by default 1% of the training time
# (`budget=0.01`). It measures the time between its calls (the training) and its own, and
# runs a due check only when the time budgeted so far covers it; otherwise it runs a reduced
# check (one random direction) or puts the check off. A longer run, without the bug, with
# `budget=0.05`. What it decides follows the times it measures on this machine, so the
# numbers below change from run to run (more so on a busy machine); the overhead stays near
# the budget.

# %%
budgeted = gradcheck.Monitor(every=10, budget=0.05, sample=16, directions=2, seed=0)
_, budget_alerts = train(budgeted, steps=LONG, break_at=None)
print(
    f"{LONG} steps: {budgeted.checks} checks run, {budgeted.deferred} put off; training "
    f"{budgeted.training_seconds:.3f} s, monitor {budgeted.monitor_seconds:.4f} s: "
    f"overhead {budgeted.overhead:.1%} for a budget of {budgeted.budget:.0%}"
)
# The history has a row per block and check; a check is known by its seed.
reduced = len({h["seed"] for h in budgeted.history() if h["reduced"]})
print(f"{reduced} of the {budgeted.checks} checks were reduced to one random direction")
print("verdicts:", sorted({h["verdict"] for h in budgeted.history()}))
# How many checks a 5% budget affords depends on how fast this machine trains: a fast one
# puts them off (its training steps earn little credit), a slow one runs some. What holds on
# any machine: the monitor looked, and never alerted on a correct gradient.
assert not budget_alerts
assert budgeted.checks + budgeted.deferred >= 1
assert reduced <= budgeted.checks == len({h["seed"] for h in budgeted.history()})

# %% [markdown]
# Under a budget the checks are spaced by what they cost, so a bug can take longer to be
# caught. For a long run, set `every` to what you can afford and keep the budget as a
# safety net.
