"""Benchmark workloads: each loss in the three forms gradcheck's engines take, with a
hand-written gradient.

- ``loss(params)``: plain numpy on a dict of arrays (the Python engine, the course loop, and
  through ``flat_numpy`` every peer that wants a function of one flat vector);
- ``flat``: a ``numba.njit`` loss of one flat float64 vector (the numba engine);
- ``batched(P)``: every array of ``P`` has a leading batch axis; one loss per row (the
  batched engine).

``grad(params)`` is the gradient under test, written by hand; ``tests/test_workloads.py``
checks it, and checks that the three forms agree, so the benchmarks time correct code.

Factories only decorate the jitted loss; numba compiles it on its first call, so importing
this module (pytest imports it for doctests) costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from gradcheck import _demo

Params = dict[str, np.ndarray]


class Workload:
    """One loss with its hand-written gradient, in every form the contenders take."""

    def __init__(
        self,
        name: str,
        description: str,
        params: Params,
        loss: Callable[[Params], float],
        grad: Callable[[Params], dict[str, np.ndarray]],
        batched: Callable[[Params], np.ndarray],
        flat: Any,
    ):
        self.name = name
        self.description = description
        self.params = params
        self.loss = loss
        self.grad = grad
        self.batched = batched
        self.flat = flat
        self.keys = tuple(params)
        self.shapes = {k: params[k].shape for k in self.keys}
        sizes = [params[k].size for k in self.keys]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n = int(self.offsets[-1])

    def __repr__(self) -> str:
        return f"Workload({self.name!r}, n={self.n})"

    def theta(self) -> np.ndarray:
        """The parameters as one new flat vector, blocks in ``params`` order."""
        return np.concatenate([self.params[k].reshape(-1) for k in self.keys])

    def unflatten(self, x: np.ndarray) -> Params:
        """Views of the flat vector ``x`` in the structure of ``params`` (no copy)."""
        return {
            k: x[a:b].reshape(self.shapes[k])
            for k, a, b in zip(self.keys, self.offsets[:-1], self.offsets[1:], strict=True)
        }

    def flat_numpy(self, x: np.ndarray) -> float:
        """The numpy loss as a function of one flat vector: what scipy and the rest take."""
        return float(self.loss(self.unflatten(x)))

    def flat_grad(self, x: np.ndarray | None = None) -> np.ndarray:
        """The hand-written gradient at ``x`` (default: ``params``) as one flat vector."""
        g = self.grad(self.params if x is None else self.unflatten(x))
        # Course-style keys (dW1) are accepted as the checker accepts them.
        return np.concatenate([np.asarray(g.get(k, g.get("d" + k))).reshape(-1) for k in self.keys])


# --- the course network: gradcheck._demo, 47 parameters -------------------------------------


def course_net() -> Workload:
    """The classic 3-layer network of the demo (LINEAR-RELU x2, LINEAR-SIGMOID), 47 parameters."""
    X, Y, params = _demo.example()
    Yf = Y.astype(np.float64)
    n_x, m = X.shape
    h1, h2 = params["W1"].shape[0], params["W2"].shape[0]

    def loss(p):
        return _demo.loss(X, Y, p)

    def grad(p):
        return _demo.backward(X, Y, _demo.forward(X, Y, p)[1])

    def batched(P):
        A1 = np.maximum(0, P["W1"] @ X + P["b1"])
        A2 = np.maximum(0, P["W2"] @ A1 + P["b2"])
        A3 = 1 / (1 + np.exp(-(P["W3"] @ A2 + P["b3"])))
        logprobs = -np.log(A3) * Yf - np.log(1 - A3) * (1 - Yf)
        return logprobs.sum(axis=(1, 2)) / m

    # Offsets of the blocks W1 b1 W2 b2 W3 b3 (the order of `params`) in the flat vector.
    w1, b1 = 0, h1 * n_x
    w2 = b1 + h1
    b2 = w2 + h2 * h1
    w3 = b2 + h2
    b3 = w3 + h2

    # Loops, not np.dot: at these sizes an allocation costs more than the arithmetic.
    @numba.njit
    def flat(theta):
        a1 = np.empty(h1)
        a2 = np.empty(h2)
        total = 0.0
        for s in range(m):
            for j in range(h1):
                z = theta[b1 + j]
                for i in range(n_x):
                    z += theta[w1 + j * n_x + i] * X[i, s]
                a1[j] = max(0.0, z)
            for j in range(h2):
                z = theta[b2 + j]
                for i in range(h1):
                    z += theta[w2 + j * h1 + i] * a1[i]
                a2[j] = max(0.0, z)
            z = theta[b3]
            for i in range(h2):
                z += theta[w3 + i] * a2[i]
            a3 = 1 / (1 + np.exp(-z))
            total += -np.log(a3) * Yf[s] - np.log(1 - a3) * (1 - Yf[s])
        return total / m

    return Workload("course net", "3-layer ReLU net of the demo", params, loss, grad, batched, flat)


# --- MLP with tanh hidden layers and softmax cross-entropy ----------------------------------


def mlp(sizes: tuple[int, int, int, int], batch: int, *, name: str, seed: int = 0) -> Workload:
    """MLP ``sizes[0]-sizes[1]-sizes[2]-sizes[3]``, tanh, softmax cross-entropy over ``batch``."""
    d0, d1, d2, d3 = sizes
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, d0))
    y = rng.integers(0, d3, size=batch)
    onehot = np.eye(d3)[y]
    params = {}
    for k, (a, b) in enumerate([(d0, d1), (d1, d2), (d2, d3)], start=1):
        params[f"W{k}"] = rng.standard_normal((a, b)) / np.sqrt(a)
        params[f"b{k}"] = 0.1 * rng.standard_normal(b)

    def forward(p):
        H1 = np.tanh(X @ p["W1"] + p["b1"])
        H2 = np.tanh(H1 @ p["W2"] + p["b2"])
        Z = H2 @ p["W3"] + p["b3"]
        Z = Z - Z.max(axis=1, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
        return H1, H2, logp

    def loss(p):
        return -np.sum(forward(p)[2] * onehot) / batch

    def grad(p):
        H1, H2, logp = forward(p)
        dZ3 = (np.exp(logp) - onehot) / batch
        dZ2 = (dZ3 @ p["W3"].T) * (1 - H2**2)
        dZ1 = (dZ2 @ p["W2"].T) * (1 - H1**2)
        return {
            "W1": X.T @ dZ1,
            "b1": dZ1.sum(axis=0),
            "W2": H1.T @ dZ2,
            "b2": dZ2.sum(axis=0),
            "W3": H2.T @ dZ3,
            "b3": dZ3.sum(axis=0),
        }

    def batched(P):
        # (batch, d0) @ (B, d0, d1) -> (B, batch, d1): one GEMM per row of the stack.
        H1 = np.tanh(X @ P["W1"] + P["b1"][:, None, :])
        H2 = np.tanh(H1 @ P["W2"] + P["b2"][:, None, :])
        Z = H2 @ P["W3"] + P["b3"][:, None, :]
        Z = Z - Z.max(axis=2, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(axis=2, keepdims=True))
        return -np.sum(logp * onehot, axis=(1, 2)) / batch

    o = np.cumsum([0, d0 * d1, d1, d1 * d2, d2, d2 * d3, d3])

    # np.dot on contiguous views calls BLAS, as the numpy version does.
    @numba.njit
    def flat(theta):
        W1 = theta[o[0] : o[1]].reshape((d0, d1))
        W2 = theta[o[2] : o[3]].reshape((d1, d2))
        W3 = theta[o[4] : o[5]].reshape((d2, d3))
        H1 = np.tanh(np.dot(X, W1) + theta[o[1] : o[2]])
        H2 = np.tanh(np.dot(H1, W2) + theta[o[3] : o[4]])
        Z = np.dot(H2, W3) + theta[o[5] : o[6]]
        total = 0.0
        for s in range(batch):
            top = Z[s].max()
            acc = 0.0
            for k in range(d3):
                acc += np.exp(Z[s, k] - top)
            total += top + np.log(acc) - Z[s, y[s]]
        return total / batch

    description = f"MLP {d0}-{d1}-{d2}-{d3}, tanh, softmax CE, batch {batch}"
    return Workload(name, description, params, loss, grad, batched, flat)


# --- logistic regression: many weights, few samples -----------------------------------------


def logistic(n_weights: int, n_samples: int, *, name: str = "logistic", seed: int = 0) -> Workload:
    """Mean logistic loss ``log(1 + exp(-y x.w))`` of ``n_samples`` labelled points."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_weights)) / np.sqrt(n_weights)
    y = np.where(rng.random(n_samples) < 0.5, -1.0, 1.0)
    params = {"w": rng.standard_normal(n_weights)}

    def loss(p):
        return np.mean(np.logaddexp(0.0, -y * (X @ p["w"])))

    def grad(p):
        margin = y * (X @ p["w"])
        # d/dm log(1 + exp(-m)) = -1 / (1 + exp(m))
        return {"w": X.T @ (-y / (1 + np.exp(margin))) / n_samples}

    def batched(P):
        return np.logaddexp(0.0, -y * (P["w"] @ X.T)).mean(axis=1)

    @numba.njit
    def flat(theta):
        margin = y * np.dot(X, theta)
        total = 0.0
        for s in range(n_samples):
            total += np.logaddexp(0.0, -margin[s])
        return total / n_samples

    description = f"logistic regression, {n_weights:,} weights, {n_samples} samples"
    return Workload(name, description, params, loss, grad, batched, flat)


# --- the suite -------------------------------------------------------------------------------

# Sizes of the issue ("full") and small stand-ins that run the same code in seconds ("smoke":
# the normal test run, where every benchmark body runs once, and tests/test_workloads.py).
SIZES: dict[str, dict[str, Callable[[], Workload]]] = {
    "full": {
        "course net": course_net,
        "mlp-small": lambda: mlp((64, 64, 32, 10), 32, name="mlp-small"),
        "mlp-medium": lambda: mlp((784, 128, 64, 10), 64, name="mlp-medium"),
        "logistic": lambda: logistic(20_000, 50),
        # ~1,000,000 parameters: checked by sampling and by directions, not coordinate-wise.
        "large": lambda: mlp((1024, 960, 16, 10), 16, name="large"),
    },
    "smoke": {
        "course net": course_net,
        "mlp-small": lambda: mlp((12, 8, 6, 4), 5, name="mlp-small"),
        "mlp-medium": lambda: mlp((30, 10, 8, 10), 6, name="mlp-medium"),
        "logistic": lambda: logistic(300, 7),
        "large": lambda: mlp((40, 30, 8, 10), 4, name="large"),
    },
}
# The workloads every contender checks whole; "large" is for sampled and directional checks.
NAMES = ("course net", "mlp-small", "mlp-medium", "logistic")
LARGE = "large"


def make(name: str, size: str = "full") -> Workload:
    """Build the workload ``name`` at ``size`` ("full" or "smoke")."""
    return SIZES[size][name]()
