"""The built-in example: the classic 3-layer network with a hand-written backward pass.

LINEAR -> RELU -> LINEAR -> RELU -> LINEAR -> SIGMOID, binary cross-entropy averaged over the
batch, parameters as a dict ``W1, b1, W2, b2, W3, b3`` and course-style gradients
``dW1, db1, ...`` that also carry the intermediate ``dZ*``/``dA*`` arrays a hand-written
backward pass produces (the checker ignores keys it does not need).

``backward(..., planted=True)`` contains the two mistakes of the classic exercise: ``dW2`` is
twice what it should be and ``db1`` four times.
"""

from __future__ import annotations

import numpy as np

__all__ = ["backward", "example", "forward", "loss"]


def example() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Return ``(X, Y, params)``: 3 examples of 4 features, their labels, seeded parameters.

    The draw order and seed are those of the public course test case, so a check configured
    like the course (``eps=1e-7``) prints the course's numbers.
    """
    rng = np.random.RandomState(1)
    X = rng.randn(4, 3)
    Y = np.array([1, 1, 0])
    shapes = {"W1": (5, 4), "b1": (5, 1), "W2": (3, 5), "b2": (3, 1), "W3": (1, 3), "b3": (1, 1)}
    params = {name: rng.randn(*shape) for name, shape in shapes.items()}
    return X, Y, params


def _relu(z):
    return np.maximum(0, z)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def forward(X, Y, params):
    """Return ``(cost, cache)`` for the network at ``params``."""
    m = X.shape[1]
    W1, b1, W2, b2, W3, b3 = (params[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    Z1 = np.dot(W1, X) + b1
    A1 = _relu(Z1)
    Z2 = np.dot(W2, A1) + b2
    A2 = _relu(Z2)
    Z3 = np.dot(W3, A2) + b3
    A3 = _sigmoid(Z3)
    logprobs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1.0 / m * np.sum(logprobs)
    return cost, (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3)


def loss(X, Y, params):
    """Return the cost alone: the ``f`` a gradient check differentiates."""
    return forward(X, Y, params)[0]


def backward(X, Y, cache, *, planted=False):
    """Hand-written gradients of the cost; ``planted=True`` keeps the exercise's two mistakes."""
    m = X.shape[1]
    _, A1, _, _, _, A2, W2, _, _, A3, W3, _ = cache
    dZ3 = A3 - Y
    dW3 = 1.0 / m * np.dot(dZ3, A2.T)
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(W3.T, dZ3)
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1.0 / m * np.dot(dZ2, A1.T) * (2 if planted else 1)
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(W2.T, dZ2)
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1.0 / m * np.dot(dZ1, X.T)
    db1 = (4.0 if planted else 1.0) / m * np.sum(dZ1, axis=1, keepdims=True)
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


def course_loop(loss, theta, grad, *, unflatten=None, coords=None, eps: float = 1e-7) -> float:
    """The classic exercise's gradient check, as the course writes it: the yardstick.

    Two fresh copies of theta per coordinate, each rebuilt into the dictionary by
    ``unflatten`` (identity when None), a central difference with the absolute step ``eps``,
    and the relative difference by ``np.linalg.norm``. ``coords`` restricts it to those
    coordinates (to time it on a part of a large model).
    """
    rebuild = unflatten if unflatten is not None else (lambda v: v)
    idx = range(theta.size) if coords is None else coords
    approx = np.empty(len(idx))
    for j, i in enumerate(idx):
        theta_plus = np.copy(theta)
        theta_plus[i] = theta_plus[i] + eps
        j_plus = loss(rebuild(theta_plus))
        theta_minus = np.copy(theta)
        theta_minus[i] = theta_minus[i] - eps
        j_minus = loss(rebuild(theta_minus))
        approx[j] = (j_plus - j_minus) / (2 * eps)
    g = np.asarray(grad, dtype=np.float64)[np.asarray(idx, dtype=np.int64)]
    return float(np.linalg.norm(g - approx) / (np.linalg.norm(g) + np.linalg.norm(approx)))


def course_vectors(params: dict, grads: dict):
    """``(theta, grad, unflatten)``: a course-style dict and its ``d``-keyed gradients as the
    course's ``dictionary_to_vector`` lays them out.
    """
    keys = list(params)
    shapes = [params[k].shape for k in keys]
    theta = np.concatenate([params[k].reshape(-1) for k in keys])
    grad = np.concatenate([grads[f"d{k}"].reshape(-1) for k in keys])
    bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes]).tolist()
    spans = list(zip(keys, shapes, bounds[:-1], bounds[1:], strict=True))

    def unflatten(v):
        return {k: v[a:b].reshape(s) for k, s, a, b in spans}

    return theta, grad, unflatten
