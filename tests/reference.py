"""Slow, obviously-correct reference implementations the library is tested against.

Every coordinate is perturbed on a fresh deep copy of the parameters, f is evaluated, and the
norms are Python's ``math.hypot`` over Python floats: no buffers, no kernels, no shortcuts.
"""

from __future__ import annotations

import copy
import math

import numpy as np


def leaves(tree, prefix=()):
    """(path, array) pairs in the order gradcheck lays blocks out."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, (*prefix, key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from leaves(value, (*prefix, i))
    else:
        yield prefix, tree


def get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def reference_gradapprox(f, params, *, eps=None, method="central"):
    """Finite-difference gradient, one deep copy of params per evaluation.

    eps=None: h = eps_dtype**(1/3) * max(1, |x|) (central) or **(1/2) (forward), the
    perturbed values rounded to the parameter dtype, divided by the step they span.
    eps given: x +- eps, divided by 2*eps (central) or eps (forward).
    """
    out = []
    f0 = f(params)
    for path, arr in leaves(params):
        arr = np.asarray(arr)
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        loss_dtype = np.asarray(f0).dtype
        coarse = max(np.finfo(dtype).eps, np.finfo(loss_dtype).eps)
        for flat in range(arr.size):
            where = np.unravel_index(flat, arr.shape)
            x = float(arr[where])
            if eps is None:
                h = coarse ** (1 / 3 if method == "central" else 1 / 2) * max(1.0, abs(x))
            else:
                h = eps
            xp = float(dtype.type(x + h))
            xm = float(dtype.type(x - h)) if method == "central" else x
            fp = _evaluate_at(f, params, path, where, xp)
            fm = _evaluate_at(f, params, path, where, xm) if method == "central" else f0
            width = (xp - xm) if eps is None else (2 * eps if method == "central" else eps)
            out.append((float(fp) - float(fm)) / width)
    return np.array(out)


def _evaluate_at(f, params, path, where, value):
    trial = copy.deepcopy(params)
    if path:
        get(trial, path)[where] = value
    else:
        trial[where] = value
    return f(trial)


def flat(tree, like):
    """Flatten ``tree`` in the block order of ``like`` (d-prefixed keys allowed)."""
    parts = []
    for path, _ in leaves(like):
        node = tree
        for key in path:
            if isinstance(node, dict) and key not in node:
                key = "d" + key
            node = node[key]
        parts.append(np.asarray(node, dtype=np.float64).reshape(-1))
    return np.concatenate(parts)


def reference_norm(v) -> float:
    return math.hypot(*(float(x) for x in np.asarray(v, dtype=np.float64).reshape(-1)))


def reference_relative_difference(a, b) -> float:
    a = [float(x) for x in np.asarray(a, dtype=np.float64).reshape(-1)]
    b = [float(x) for x in np.asarray(b, dtype=np.float64).reshape(-1)]
    num = math.hypot(*(x - y for x, y in zip(a, b, strict=True)))
    den = math.hypot(*a) + math.hypot(*b)
    if num == 0 and den == 0:
        return 0.0
    return num / den


def reference_richardson(f, params):
    """Richardson extrapolation of central differences, one deep copy per evaluation.

    h = eps**(1/5) * max(1, |x|); D(h) and D(h/2) are central differences over the width
    the stored values span; the estimate is (4 D(h/2) - D(h)) / 3.
    """
    out = []
    for path, arr in leaves(params):
        arr = np.asarray(arr)
        eps = np.finfo(arr.dtype).eps
        for flat_index in range(arr.size):
            where = np.unravel_index(flat_index, arr.shape)
            x = float(arr[where])
            h = eps ** (1 / 5) * max(1.0, abs(x))
            d = []
            for step in (h, h / 2):
                xp, xm = float(arr.dtype.type(x + step)), float(arr.dtype.type(x - step))
                fp = _evaluate_at(f, params, path, where, xp)
                fm = _evaluate_at(f, params, path, where, xm)
                d.append((float(fp) - float(fm)) / (xp - xm))
            out.append((4 * d[1] - d[0]) / 3)
    return np.array(out)


def reference_complex_step(f, params, h=1e-20):
    """Im f(x + ih) / h per coordinate, on complex deep copies of the parameters."""
    out = []
    for path, arr in leaves(params):
        arr = np.asarray(arr)
        for flat_index in range(arr.size):
            where = np.unravel_index(flat_index, arr.shape)
            trial = copy.deepcopy(params)
            if path:
                parent = get(trial, path[:-1])
                parent[path[-1]] = parent[path[-1]].astype(np.complex128)
                get(trial, path)[where] += 1j * h
            else:
                trial = trial.astype(np.complex128)
                trial[where] += 1j * h
            out.append(float(np.imag(f(trial))) / h)
    return np.array(out)


def reference_directional(f, x, lo, hi, plus, minus):
    """f(x with x[lo:hi] = plus) - f(x with x[lo:hi] = minus), on fresh copies of the flat
    vector x, and the displacement ``plus - minus`` the difference spans."""
    at_plus, at_minus = np.array(x, dtype=np.float64), np.array(x, dtype=np.float64)
    at_plus[lo:hi], at_minus[lo:hi] = plus, minus
    span = np.asarray(plus, dtype=np.float64) - np.asarray(minus, dtype=np.float64)
    return float(f(at_plus)) - float(f(at_minus)), span
