"""Test models with hand-written gradients, in the forms each engine takes."""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest

# Under NUMBA_DISABLE_JIT=1 (the kernels covered as plain Python) a jitted f is a plain
# function: tests that tell the two apart cannot run.
needs_jit = pytest.mark.skipif(
    os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"),
    reason="NUMBA_DISABLE_JIT=1: jitted and plain functions are the same",
)

# A small tanh MLP, 6 inputs -> 5 hidden -> 1 output, squared error over 4 samples.
N_IN, N_HID, N_SAMPLES = 6, 5, 4
SHAPES = {"W1": (N_HID, N_IN), "b1": (N_HID,), "W2": (1, N_HID), "b2": (1,)}


def mlp_data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_IN, N_SAMPLES))
    y = rng.standard_normal(N_SAMPLES)
    params = {k: rng.standard_normal(s) * 0.5 for k, s in SHAPES.items()}
    return X, y, params


def mlp_loss(p, X, y):
    h = np.tanh(p["W1"] @ X + p["b1"][:, None])
    out = (p["W2"] @ h)[0] + p["b2"][0]
    return 0.5 * np.sum((out - y) ** 2)


def mlp_grad(p, X, y):
    h = np.tanh(p["W1"] @ X + p["b1"][:, None])
    r = (p["W2"] @ h)[0] + p["b2"][0] - y
    dh = p["W2"].T @ r[None, :] * (1 - h**2)
    return {
        "dW1": dh @ X.T,
        "db1": dh.sum(axis=1),
        "dW2": (h @ r)[None, :],
        "db2": np.array([r.sum()]),
    }


def mlp_batched(P, X, y):
    """P: dict of (B, ...) arrays -> (B,) losses."""
    h = np.tanh(np.einsum("bij,jk->bik", P["W1"], X) + P["b1"][:, :, None])
    out = np.einsum("bij,bjk->bik", P["W2"], h)[:, 0, :] + P["b2"]
    return 0.5 * np.sum((out - y) ** 2, axis=1)


def mlp_flat_factory(X, y):
    """A jitted loss of the flat parameter vector (blocks in W1, b1, W2, b2 order)."""
    n1 = N_HID * N_IN

    @numba.njit
    def loss(theta):
        W1 = theta[:n1].reshape((N_HID, N_IN))
        b1 = theta[n1 : n1 + N_HID]
        W2 = theta[n1 + N_HID : n1 + 2 * N_HID]
        b2 = theta[n1 + 2 * N_HID]
        total = 0.0
        for s in range(X.shape[1]):
            out = b2
            for j in range(N_HID):
                z = b1[j]
                for i in range(N_IN):
                    z += W1[j, i] * X[i, s]
                out += W2[j] * np.tanh(z)
            total += 0.5 * (out - y[s]) ** 2
        return total

    return loss


def flatten(p):
    return np.concatenate([np.asarray(p[k]).reshape(-1) for k in SHAPES])


def quad_data(n=7, seed=1):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    A = M @ M.T + n * np.eye(n)
    b = rng.standard_normal(n)
    x = rng.standard_normal(n)
    return A, b, x


def quad_loss(x, A, b):
    return 0.5 * x @ A @ x + b @ x


def quad_grad(x, A, b):
    return A @ x + b


@numba.njit
def cubic_flat(theta):
    s = 0.0
    for i in range(theta.size):
        s += theta[i] ** 3 + np.sin(theta[i]) * (i + 1)
    return s


def cubic_grad(theta):
    return 3 * theta**2 + np.cos(theta) * np.arange(1, theta.size + 1)


class Separable:
    """A cheap large model: 0.5 * sum(c x^2) + 0.5 * (u . x)^2 over blocks W and b.

    One evaluation reads every parameter (about 1 ms for a million), and the gradient
    c x + (u . x) u is known exactly, so bugs can be planted where a test wants them.
    """

    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.c = {k: rng.uniform(0.5, 2.0, n) for k, n in sizes.items()}
        scale = np.sqrt(sum(sizes.values()))
        self.u = {k: rng.standard_normal(n) / scale for k, n in sizes.items()}
        self.params = {k: rng.standard_normal(n) for k, n in sizes.items()}

    def loss(self, p):
        s = sum(p[k] @ self.u[k] for k in p)
        return 0.5 * sum(self.c[k] @ (p[k] * p[k]) for k in p) + 0.5 * s * s

    def grad(self, p=None):
        p = self.params if p is None else p
        s = sum(p[k] @ self.u[k] for k in p)
        return {k: self.c[k] * p[k] + s * self.u[k] for k in p}
