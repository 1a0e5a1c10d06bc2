"""float32 models with hand-written gradients, and their planted bugs (the verdicts issue)."""

from __future__ import annotations

import numpy as np

F32 = np.float32
SQRT_2_PI = F32(np.sqrt(2 / np.pi))


def gelu_layer(seed=0, bug=None):
    """Fused linear + tanh-GELU, x 16x32, W 32x24, b 24, projected on a fixed cotangent.

    ``bug``: None, "W" (dW 10% too large), "W2x" (dW doubled), "x-entry" (one entry of dx
    10% off). Returns (f, params, grads).
    """
    rng = np.random.default_rng(seed)
    params = {
        "x": rng.standard_normal((16, 32)).astype(F32),
        "W": (rng.standard_normal((32, 24)) / np.sqrt(32)).astype(F32),
        "b": (0.1 * rng.standard_normal(24)).astype(F32),
    }
    c = rng.standard_normal((16, 24)).astype(F32)

    def f(p):
        z = p["x"] @ p["W"] + p["b"]
        u = SQRT_2_PI * (z + F32(0.044715) * z**3)
        out = F32(0.5) * z * (F32(1) + np.tanh(u))
        return (c * out).sum()

    z = params["x"] @ params["W"] + params["b"]
    u = SQRT_2_PI * (z + F32(0.044715) * z**3)
    t = np.tanh(u)
    dout_dz = F32(0.5) * (F32(1) + t) + F32(0.5) * z * (F32(1) - t * t) * SQRT_2_PI * (
        F32(1) + F32(3 * 0.044715) * z * z
    )
    dz = c * dout_dz
    grads = {"x": dz @ params["W"].T, "W": params["x"].T @ dz, "b": dz.sum(axis=0)}
    if bug == "W":
        grads["W"] = grads["W"] * F32(1.1)
    elif bug == "W2x":
        grads["W"] = grads["W"] * F32(2)
    elif bug == "x-entry":
        grads["x"] = grads["x"].copy()
        grads["x"][3, 5] *= F32(1.1)
    return f, params, grads


def tanh_mlp(seed=0, bug=None):
    """A 64-48-10 tanh MLP with softmax cross-entropy, batch 32, float32.

    ``bug``: None, "W1" (dW1 10% too large), "W1-2x" (doubled), "W1-entry" (one entry 10%
    off).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((32, 64)).astype(F32)
    y = rng.integers(0, 10, 32)
    params = {
        "W1": (rng.standard_normal((64, 48)) / 8).astype(F32),
        "b1": np.zeros(48, dtype=F32),
        "W2": (rng.standard_normal((48, 10)) / 7).astype(F32),
        "b2": np.zeros(10, dtype=F32),
    }

    def f(p):
        h = np.tanh(X @ p["W1"] + p["b1"])
        s = h @ p["W2"] + p["b2"]
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return -logp[np.arange(32), y].mean()

    h = np.tanh(X @ params["W1"] + params["b1"])
    s = h @ params["W2"] + params["b2"]
    e = np.exp(s - s.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    ds = prob.copy()
    ds[np.arange(32), y] -= 1
    ds /= F32(32)
    dh = ds @ params["W2"].T
    dz = dh * (F32(1) - h * h)
    grads = {"W1": X.T @ dz, "b1": dz.sum(0), "W2": h.T @ ds, "b2": ds.sum(0)}
    if bug == "W1":
        grads["W1"] = grads["W1"] * F32(1.1)
    elif bug == "W1-2x":
        grads["W1"] = grads["W1"] * F32(2)
    elif bug == "W1-entry":
        grads["W1"] = grads["W1"].copy()
        grads["W1"][7, 3] *= F32(1.1)
    return f, params, grads


def rnn(seed=0, bug=None, steps=6):
    """A vanilla tanh RNN (input 8, hidden 16, 6 steps) with a squared loss, float32.

    ``bug``: None or "Wx" (dWx doubled).
    """
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((steps, 4, 8)).astype(F32)
    target = rng.standard_normal((4, 16)).astype(F32)
    params = {
        "Wx": (rng.standard_normal((8, 16)) / 3).astype(F32),
        "Wh": (rng.standard_normal((16, 16)) / 4).astype(F32),
        "b": (0.1 * rng.standard_normal(16)).astype(F32),
    }

    def forward(p):
        h = np.zeros((4, 16), dtype=F32)
        hs = [h]
        for t in range(steps):
            h = np.tanh(xs[t] @ p["Wx"] + h @ p["Wh"] + p["b"])
            hs.append(h)
        return hs

    def f(p):
        h = forward(p)[-1]
        return F32(0.5) * ((h - target) ** 2).sum()

    hs = forward(params)
    dh = hs[-1] - target
    g = {k: np.zeros_like(v) for k, v in params.items()}
    for t in reversed(range(steps)):
        dz = dh * (F32(1) - hs[t + 1] ** 2)
        g["Wx"] += xs[t].T @ dz
        g["Wh"] += hs[t].T @ dz
        g["b"] += dz.sum(0)
        dh = dz @ params["Wh"].T
    if bug == "Wx":
        g["Wx"] = g["Wx"] * F32(2)
    return f, params, g
