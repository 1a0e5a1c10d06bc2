"""Train a small MLP with SGD and a hand-written backward pass, under a gradcheck.Monitor.

    python examples/train_with_monitor.py                   # correct gradient all along
    python examples/train_with_monitor.py --switch-at 600   # a bug switches on at step 600

The network is LINEAR -> TANH -> LINEAR -> TANH -> LINEAR -> SOFTMAX with cross-entropy,
trained on minibatches of a synthetic 3-class problem. Every ``--every`` steps the monitor
checks every block (one in rotation when the budget is short) on the current minibatch, and
the script prints
what the monitor cost: the time spent inside ``monitor.step`` over the time spent training,
both measured here with ``time.perf_counter``.

``--switch-at S`` plants a bug from step S on: the output layer's gradient is no longer
divided by the batch size (a sum where the loss takes a mean), which scales every block's
gradient. The monitor fails the first check after S, checks again at once, and alerts.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings

import numpy as np

import gradcheck

SIZES = (20, 64, 64, 3)  # inputs, two hidden layers, classes


def make_data(n: int = 4096, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(X, Y)``: ``n`` points in ``SIZES[0]`` dimensions and one-hot labels."""
    rng = np.random.default_rng(seed)
    classes = SIZES[-1]
    centers = rng.standard_normal((classes, SIZES[0])) * 0.4
    labels = rng.integers(0, classes, n)
    X = centers[labels] + rng.standard_normal((n, SIZES[0]))
    return X, np.eye(classes)[labels]


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    """Return the weights ``W1, b1, W2, b2, W3, b3`` (Glorot-scaled, zero biases)."""
    rng = np.random.default_rng(seed)
    params = {}
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(SIZES), start=1):
        params[f"W{k}"] = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        params[f"b{k}"] = np.zeros(fan_out)
    return params


def _forward(params, X):
    A1 = np.tanh(X @ params["W1"] + params["b1"])
    A2 = np.tanh(A1 @ params["W2"] + params["b2"])
    Z3 = A2 @ params["W3"] + params["b3"]
    Z3 = Z3 - Z3.max(axis=1, keepdims=True)
    logp = Z3 - np.log(np.exp(Z3).sum(axis=1, keepdims=True))
    return A1, A2, logp


def loss(params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> float:
    """Mean cross-entropy of the network on ``(X, Y)``."""
    return float(-(Y * _forward(params, X)[2]).sum() / len(X))


def loss_and_grads(params, X, Y, *, bug: bool = False):
    """The loss and its hand-written gradient; ``bug=True`` forgets to average dZ3."""
    A1, A2, logp = _forward(params, X)
    m = len(X)
    dZ3 = (np.exp(logp) - Y) / (1 if bug else m)
    dA2 = dZ3 @ params["W3"].T
    dZ2 = dA2 * (1 - A2**2)
    dA1 = dZ2 @ params["W2"].T
    dZ1 = dA1 * (1 - A1**2)
    grads = {
        "dW3": A2.T @ dZ3,
        "db3": dZ3.sum(axis=0),
        "dW2": A1.T @ dZ2,
        "db2": dZ2.sum(axis=0),
        "dW1": X.T @ dZ1,
        "db1": dZ1.sum(axis=0),
    }
    return float(-(Y * logp).sum() / m), grads


def train(
    steps: int = 2000,
    *,
    monitor: gradcheck.Monitor | None = None,
    switch_at: int | None = None,
    batch: int = 256,
    lr: float = 0.1,
    seed: int = 0,
) -> dict:
    """Train with SGD for ``steps`` steps, calling ``monitor.step`` after each backward pass.

    Returns
    -------
    dict
        ``first_loss`` and ``last_loss`` (minibatch), ``accuracy`` on all the data,
        ``train_seconds`` (the loop without the monitor) and ``monitor_seconds`` (inside
        ``monitor.step``), both measured with ``time.perf_counter``, and ``params``.
    """
    X, Y = make_data(seed=seed)
    params = init_params(seed)
    rng = np.random.default_rng(seed + 1)
    monitor_seconds = 0.0
    losses = []
    started = time.perf_counter()
    for step in range(1, steps + 1):
        rows = rng.choice(len(X), batch, replace=False)
        Xb, Yb = X[rows], Y[rows]
        value, grads = loss_and_grads(
            params, Xb, Yb, bug=switch_at is not None and step >= switch_at
        )
        losses.append(value)
        if monitor is not None:
            entered = time.perf_counter()
            monitor.step(step, lambda p, Xb=Xb, Yb=Yb: loss(p, Xb, Yb), params, grads)
            monitor_seconds += time.perf_counter() - entered
        for name in params:
            params[name] = params[name] - lr * grads[f"d{name}"]
    total = time.perf_counter() - started
    predicted = _forward(params, X)[2].argmax(axis=1)
    return {
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "accuracy": float((predicted == Y.argmax(axis=1)).mean()),
        "train_seconds": total - monitor_seconds,
        "monitor_seconds": monitor_seconds,
        "params": params,
    }


def main(argv: list[str] | None = None) -> int:
    """Train under a monitor and print what it found and what it cost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--budget", type=float, default=0.05)
    parser.add_argument("--switch-at", type=int, default=None)
    parser.add_argument("--csv", default=None, help="write the monitor's history here")
    args = parser.parse_args(argv)

    monitor = gradcheck.Monitor(
        every=args.every, budget=args.budget, sample=16, directions=2, on_alert="warn", seed=0
    )
    with warnings.catch_warnings(record=True) as alerts:
        warnings.simplefilter("always", gradcheck.GradientAlert)
        result = train(args.steps, monitor=monitor, switch_at=args.switch_at)
    overhead = result["monitor_seconds"] / result["train_seconds"]

    print(
        f"{args.steps} SGD steps: minibatch loss {result['first_loss']:.3f} -> "
        f"{result['last_loss']:.3f}, accuracy {result['accuracy']:.1%}"
    )
    print(f"{'step':>6}  {'block':<5}  {'checked':>7}  {'difference':>10}  verdict")
    for h in monitor.history():
        print(
            f"{h['step']:>6}  {h['block']:<5}  {h['checked']:>7}  {h['difference']:>10.2e}  "
            f"{h['verdict']}{'  (reduced)' if h['reduced'] else ''}"
        )
    for alert in alerts:
        print(f"ALERT: {str(alert.message).splitlines()[0]}")
    print(
        f"training {result['train_seconds']:.3f} s, monitor {result['monitor_seconds']:.4f} s "
        f"in {monitor.checks} checks ({monitor.deferred} put off by the budget): "
        f"overhead {overhead:.2%} (budget {args.budget:.0%})"
    )
    if args.csv:
        monitor.to_csv(args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
