"""Train a 1.86M-parameter MLP (784-1024-1024-10) under a gradcheck.Monitor, a bug planted.

    python examples/train_large_with_monitor.py                   # correct gradient all along
    python examples/train_large_with_monitor.py --switch-at 700   # db2 loses its 1/n at 700

The network and its hand-written backward pass are those of ``train_with_monitor.py``
(TANH hidden layers, softmax cross-entropy), at the size of an MNIST MLP, trained with SGD on
minibatches of 32 from a synthetic 10-class problem. ``--switch-at S`` plants the bug of
issue 13: from step S on, the gradient of the second hidden layer's bias is a sum over the
minibatch where the loss takes a mean (it loses its 1/n). The script prints when the
monitor alerted, how many checks it made, and its overhead: the time inside
``monitor.step`` over the time spent training, both measured with ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import gradcheck

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_with_monitor import _forward, loss, loss_and_grads

SIZES = (784, 1024, 1024, 10)


def make_data(n: int = 2048, seed: int = 0, sizes=SIZES):
    """``(X, Y)``: ``n`` points around one center per class, and one-hot labels."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((sizes[-1], sizes[0])) * 0.1
    labels = rng.integers(0, sizes[-1], n)
    X = centers[labels] + rng.standard_normal((n, sizes[0])) * 0.5
    return X, np.eye(sizes[-1])[labels]


def init_params(seed: int = 0, sizes=SIZES) -> dict[str, np.ndarray]:
    """``W1, b1, W2, b2, W3, b3``: Glorot-scaled weights, zero biases."""
    rng = np.random.default_rng(seed)
    params = {}
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{k}"] = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        params[f"b{k}"] = np.zeros(fan_out)
    return params


def train(steps, monitor, *, switch_at=None, batch=32, lr=0.05, seed=0, sizes=SIZES):
    """SGD for ``steps`` steps under ``monitor``; the time inside and outside it."""
    X, Y = make_data(seed=seed, sizes=sizes)
    params = init_params(seed, sizes)
    rng = np.random.default_rng(seed + 1)
    inside = 0.0
    started = time.perf_counter()
    for step in range(1, steps + 1):
        rows = rng.choice(len(X), batch, replace=False)
        Xb, Yb = X[rows], Y[rows]
        _, grads = loss_and_grads(params, Xb, Yb)
        if switch_at is not None and step >= switch_at:
            grads["db2"] = grads["db2"] * batch  # the bug: a sum, not a mean
        entered = time.perf_counter()
        monitor.step(step, lambda p, Xb=Xb, Yb=Yb: loss(p, Xb, Yb), params, grads)
        inside += time.perf_counter() - entered
        for name in params:
            params[name] = params[name] - lr * grads[f"d{name}"]
    total = time.perf_counter() - started
    accuracy = float((_forward(params, X)[2].argmax(axis=1) == Y.argmax(axis=1)).mean())
    return {"train_seconds": total - inside, "monitor_seconds": inside, "accuracy": accuracy}


def main(argv: list[str] | None = None) -> int:
    """Train under a monitor and print when it alerted and what it cost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--budget", type=float, default=0.05)
    parser.add_argument("--switch-at", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=1024, help="width of both hidden layers")
    args = parser.parse_args(argv)
    sizes = (784, args.hidden, args.hidden, 10)
    monitor = gradcheck.Monitor(
        every=args.every, budget=args.budget, sample=16, directions=2, on_alert="warn", seed=0
    )
    with warnings.catch_warnings(record=True) as alerts:
        warnings.simplefilter("always", gradcheck.GradientAlert)
        result = train(args.steps, monitor, switch_at=args.switch_at, sizes=sizes)
    n = sum(w * b + b for w, b in itertools.pairwise(sizes))
    overhead = result["monitor_seconds"] / result["train_seconds"]
    print(f"{n:,} parameters, {args.steps} SGD steps, accuracy {result['accuracy']:.1%}")
    for h in monitor.history():
        if h["verdict"] != "pass" or h["block"] == "W1":
            print(f"  step {h['step']:>5}  {h['block']:<3} {h['verdict']:<12} {h['why']}")
    for alert in monitor.alerts:
        print(f"ALERT at step {alert['step']}: block {alert['block']}")
    print(
        f"training {result['train_seconds']:.2f} s, monitor {result['monitor_seconds']:.3f} s "
        f"in {monitor.checks} checks ({monitor.deferred} put off by the budget): "
        f"overhead {overhead:.2%} (budget {args.budget:.0%})"
    )
    return 0 if not alerts or args.switch_at is not None else 1


if __name__ == "__main__":
    sys.exit(main())
