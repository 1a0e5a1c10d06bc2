"""Verdicts on a small corpus of real-world style gradients, correct and buggy.

Run from the repository root with the gradcheck to try on the path:

    PYTHONPATH=src python tools/verdict_corpus.py

Each row: the case, whether its gradient is right, the verdict, the failing blocks, the
entries the directional search named, what a check that fails nowhere could have missed
(the largest factor on a block that would still pass, the largest median one-entry error,
and how many of its negative controls failed), and the first words of the failing (or
unjudged) block's sentence.
"""

from __future__ import annotations

import numpy as np

import gradcheck

RNG = np.random.default_rng(0)
X = RNG.standard_normal((30, 12))
Y = RNG.standard_normal((30, 3))
REG = 0.1
P_MLP = {"W1": RNG.standard_normal((12, 10)) * 0.3, "W2": RNG.standard_normal((10, 3)) * 0.3}


def mlp_loss(p):
    out = np.tanh(X @ p["W1"]) @ p["W2"]
    l2 = np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2)
    return 0.5 * np.sum((out - Y) ** 2) + 0.5 * REG * l2


def mlp_grad(p, *, l2=True, slope=None, entry=False):
    h = np.tanh(X @ p["W1"])
    d = h @ p["W2"] - Y
    s = 1 - h**2 if slope is None else slope(h)
    g = {"W1": X.T @ (d @ p["W2"].T * s), "W2": h.T @ d}
    if l2:
        g = {k: v + REG * p[k] for k, v in g.items()}
    if entry:
        g["W1"][3, 8] *= 1.1
    return g


BN_G = RNG.standard_normal((16, 5))
P_BN = {
    "x": RNG.standard_normal((16, 5)),
    "gamma": RNG.standard_normal(5),
    "beta": RNG.standard_normal(5),
}


def bn_loss(p):
    x = p["x"]
    xhat = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    return float(np.sum((p["gamma"] * xhat + p["beta"]) * BN_G))


def bn_grad(p, *, wrong_dx=False):
    x = p["x"]
    n = x.shape[0]
    inv = 1 / np.sqrt(x.var(0) + 1e-5)
    xhat = (x - x.mean(0)) * inv
    dxhat = BN_G * p["gamma"]
    last = 0 if wrong_dx else xhat * np.sum(dxhat * xhat, 0)
    dx = inv / n * (n * dxhat - dxhat.sum(0) - last)
    return {"x": dx, "gamma": np.sum(BN_G * xhat, 0), "beta": BN_G.sum(0)}


A = RNG.standard_normal((8, 8))
B = RNG.standard_normal(8)
X0 = RNG.standard_normal(8)


def ls_loss(x):
    return 0.5 * float(np.sum((A @ x - B) ** 2))


T = np.linspace(-np.pi, np.pi, 2000)


def p3(z):
    return 0.5 * (5 * z**3 - 3 * z)


def leg_loss(p):
    return float(np.sum((p["a"] + p["b"] * p3(p["c"] + p["d"] * T) - np.sin(T)) ** 2))


def leg_grad(p):
    z = p["c"] + p["d"] * T
    r = 2 * (p["a"] + p["b"] * p3(z) - np.sin(T))
    dz = r * p["b"] * 0.5 * (15 * z**2 - 3)
    parts = (r[::-1].sum(), (r * p3(z)).sum(), dz[::-1].sum(), (dz * T).sum())
    return {k: np.array(v) for k, v in zip("abcd", parts, strict=True)}


P_LEG = {"a": np.array(0.0), "b": np.array(-1.0), "c": np.array(0.0), "d": np.array(0.3)}
M = RNG.standard_normal((6, 6))
P_ADJ = {"W": RNG.standard_normal((6, 6))}


def adj_loss(p):
    return float(np.sum(M @ p["W"] @ M.T * M))  # d/dW = M^T M M, whose transpose is not it


S = RNG.standard_normal(5)
LOGITS = RNG.standard_normal((10, 4))
LABELS = RNG.integers(0, 4, 10)


def ce_loss(z):
    z = z - z.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(10), LABELS]))


def ce_grad(z):
    e = np.exp(z - z.max(1, keepdims=True))
    g = e / e.sum(1, keepdims=True)
    g[np.arange(10), LABELS] -= 1
    return g / 10


CASES = [
    ("course MLP", True, lambda: (mlp_loss, P_MLP, mlp_grad(P_MLP), {})),
    ("course MLP, L2 missing", False, lambda: (mlp_loss, P_MLP, mlp_grad(P_MLP, l2=False), {})),
    ("course MLP, one entry 10% off", False,
     lambda: (mlp_loss, P_MLP, mlp_grad(P_MLP, entry=True), {})),
    ("course MLP, tanh' = 1 - h", False,
     lambda: (mlp_loss, P_MLP, mlp_grad(P_MLP, slope=lambda h: 1 - h), {})),
    ("course MLP, tanh' = 1 - h, directions", False,
     lambda: (mlp_loss, P_MLP, mlp_grad(P_MLP, slope=lambda h: 1 - h),
              {"directions": 4, "sample": 8})),
    ("course MLP, dW2 off everywhere, directions", False,
     lambda: (mlp_loss, P_MLP, {**mlp_grad(P_MLP), "W2": 1.3 * mlp_grad(P_MLP)["W2"] + 0.1},
              {"directions": 4, "sample": 2})),
    ("batch norm", True, lambda: (bn_loss, P_BN, bn_grad(P_BN), {})),
    ("batch norm, dx misses its last term", False,
     lambda: (bn_loss, P_BN, bn_grad(P_BN, wrong_dx=True), {})),
    ("least squares adjoint", True, lambda: (ls_loss, X0, A.T @ (A @ X0 - B), {})),
    ("least squares, A for A^T", False, lambda: (ls_loss, X0, A @ (A @ X0 - B), {})),
    ("matrix adjoint", True, lambda: (adj_loss, P_ADJ, {"W": M.T @ M @ M}, {})),
    ("matrix adjoint, transposed", False, lambda: (adj_loss, P_ADJ, {"W": (M.T @ M @ M).T}, {})),
    ("Legendre at a symmetric zero", True, lambda: (leg_loss, P_LEG, leg_grad(P_LEG), {})),
    ("Legendre, explicit default tol", True,
     lambda: (leg_loss, P_LEG, leg_grad(P_LEG), {"tol": (1e-7, 1e-5)})),
    ("sum(sin(x)), eps=10", True,
     lambda: (lambda x: float(np.sin(x).sum()), S, np.cos(S), {"eps": 10.0})),
    ("sum(sin(x)), eps=10, gradient doubled", False,
     lambda: (lambda x: float(np.sin(x).sum()), S, 2 * np.cos(S), {"eps": 10.0})),
    ("softmax cross-entropy", True, lambda: (ce_loss, LOGITS, ce_grad(LOGITS), {})),
    ("softmax cross-entropy, sign flipped", False,
     lambda: (ce_loss, LOGITS, -ce_grad(LOGITS), {})),
]  # fmt: skip


def _reach(r) -> str:
    """What a check that fails nowhere could have missed: the largest factor of its blocks
    that would pass, and the largest median entry error; its negative controls caught.
    """
    blocks = [b for b in r.blocks.values() if b.reach is not None and b.verdict != "fail"]
    if not blocks or r.failing:
        return "-"
    factor = max((b.reach.factor for b in blocks if b.reach.factor == b.reach.factor), default=0)
    entries = [b.reach.entry for b in blocks if b.reach.entry == b.reach.entry]
    controls = [c for b in blocks for c in b.controls]
    caught = sum(c.verdict == "fail" for c in controls)
    entry = f"{100 * max(entries):.2g}%" if entries else "-"
    return f"{factor:.2g} / {entry} / {caught}/{len(controls)}"


def main() -> None:
    rows = [
        (
            "case",
            "gradient",
            "verdict",
            "failing",
            "named",
            "factor / entry / control",
            "what the report says",
        )
    ]
    for name, right, make in CASES:
        f, params, grad, options = make()
        r = gradcheck.check(f, params, grad, seed=0, control=True, **options)
        said = [b.diagnosis for b in r.blocks.values() if b.diagnosis and b.verdict != "pass"]
        text = (said[0] if said else (r.notes[0] if r.notes else "-"))[:80]
        named = ",".join(n for b in r.blocks.values() for n in b.localized[:2]) or "-"
        verdict = "right" if right else "wrong"
        failing = ",".join(r.failing) or "-"
        rows.append((name, verdict, r.verdict, failing, named, _reach(r), text))
    widths = [max(len(row[c]) for row in rows) for c in range(6)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[6])


if __name__ == "__main__":
    main()
