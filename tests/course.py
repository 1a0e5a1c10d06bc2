"""Models written the way course solutions write them: objects that hold their parameters.

``FullyConnectedNet`` follows the classic assignment's API: ``model.params`` is a dict,
``model.loss(X, y)`` returns ``(loss, grads)`` and caches the forward pass on ``self``. The
loss a student checks is ``def f(p): model.params = p; return model.loss(X, y)[0]``, so
every call of ``f`` writes into the one shared model: two threads calling it at once race.
"""

from __future__ import annotations

import itertools
import time

import numpy as np


class FullyConnectedNet:
    """affine-ReLU layers and a softmax loss, with an L2 penalty; state kept on ``self``."""

    def __init__(self, dims, reg=0.1, seed=0, bug=None, pause=0.0):
        rng = np.random.default_rng(seed)
        self.reg = reg
        # Seconds the forward pass waits after each layer (as one that logs, or reads from
        # a loader, would): a thread switch between taking the parameters and using them.
        self.pause = pause
        self.bug = bug  # None, or the name of a gradient the backward pass gets wrong
        self.n_layers = len(dims) - 1
        self.params = {}
        for i, (a, b) in enumerate(itertools.pairwise(dims), start=1):
            self.params[f"W{i}"] = rng.standard_normal((a, b)) / np.sqrt(a)
            self.params[f"b{i}"] = 0.1 * rng.standard_normal(b)
        self.cache = {}

    def loss(self, X, y):
        # The forward pass reads self.params at every layer and caches on self, as the
        # course's solutions do.
        h = X
        for i in range(1, self.n_layers + 1):
            z = h @ self.params[f"W{i}"] + self.params[f"b{i}"]
            self.cache[i] = (h, z)
            h = np.maximum(z, 0) if i < self.n_layers else z
            if self.pause:
                time.sleep(self.pause)
        shifted = h - h.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        n = X.shape[0]
        loss = -logp[np.arange(n), y].mean()
        for i in range(1, self.n_layers + 1):
            loss += 0.5 * self.reg * np.sum(self.params[f"W{i}"] ** 2)
        dh = np.exp(logp)
        dh[np.arange(n), y] -= 1
        dh /= n
        grads = {}
        for i in range(self.n_layers, 0, -1):
            h_in, z = self.cache[i]
            if i < self.n_layers:
                dh = dh * (z > 0)
            grads[f"W{i}"] = h_in.T @ dh + self.reg * self.params[f"W{i}"]
            grads[f"b{i}"] = dh.sum(axis=0)
            dh = dh @ self.params[f"W{i}"].T
        if self.bug is not None:
            grads[self.bug] = grads[self.bug] * 1.1
        return loss, grads


def course_problem(dims=(60, 50, 40, 10), n=30, seed=0, bug=None, pause=0.0):
    """``(f, params, grads)`` as a student writes them for ``FullyConnectedNet``."""
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((n, dims[0]))
    y = rng.integers(0, dims[-1], n)
    model = FullyConnectedNet(dims, seed=seed, bug=bug, pause=pause)
    params = {k: v.copy() for k, v in model.params.items()}
    _, grads = model.loss(X, y)

    def f(p):
        model.params = p
        return model.loss(X, y)[0]

    return f, params, grads
