"""The classic exercise's seeded case, as the exercise's own machine evaluated it.

The course prints two differences for its 3-layer network with ``epsilon = 1e-7``:
0.2850931567761623 (the backward pass with its two planted mistakes) and
1.1890913024229996e-07 (fixed). They come from 94 evaluations of the loss and from the
gradient of the backward pass, all made of matrix products, which BLAS computes in an order
(and with or without fused multiply-adds) of the CPU kernel's choosing. One ulp of one loss
moves the second number in its fifth digit: eps = 1e-7 divides each rounding error of the
loss by 2e-7. OpenBLAS's Haswell and Zen kernels (fused multiply-adds) give the course's
values; its Sandybridge kernel (``OPENBLAS_CORETYPE=Sandybridge``) rounds one of the 94
losses one ulp away and gives 0.285093156780699 and 1.189041787877932e-07.

So the tests separate what is exact from what the machine decides: given these values (the
losses at ``theta +- 1e-7 e_i`` and both gradients, as recorded with OpenBLAS's Haswell
kernel, bit for bit the course's), gradcheck's own arithmetic must give the course's two
numbers exactly, on any machine; what this machine's BLAS computes is compared with what the
course loop computes on the same machine.
"""

from __future__ import annotations

import numpy as np

from gradcheck import _demo

KEYS = ("W1", "b1", "W2", "b2", "W3", "b3")
EPS = 1e-7
COURSE_BUGGY = 0.2850931567761623
COURSE_FIXED = 1.1890913024229996e-07


def _floats(text: str) -> tuple[float, ...]:
    """The numbers in ``text``, each written as Python's repr writes it (exact)."""
    return tuple(float(word) for word in text.split())


# The loss at theta + EPS e_i and theta - EPS e_i, i in the order of KEYS (the course's
# dictionary_to_vector), and the gradients of the fixed and the planted backward pass.
LOSS_PLUS = _floats("""
    2.4078333524866014 2.4078332419311836 2.4078334074305072
    2.407833256149314 2.4078333878668765 2.407833381260851
    2.4078333910228396 2.4078333821600957 2.407833393750394
    2.407833384294622 2.4078333947070716 2.4078333804749636
    2.4078333844966067 2.4078333686958944 2.4078333923492363
    2.407833370728003 2.407833389834357 2.407833389834357
    2.407833389834357 2.407833389834357 2.4078334531251744
    2.4078333935595 2.4078333834330556 2.4078333988799194
    2.407833389834357 2.407833389834357 2.407833389834357
    2.407833389834357 2.407833389834357 2.407833389834357
    2.407833389834357 2.407833389834357 2.407833389834357
    2.407833389834357 2.407833389834357 2.4078334814145235
    2.4078333922859145 2.4078333790364033 2.407833480116265
    2.407833389834357 2.407833389834357 2.407833389834357
    2.4078334095976857 2.407833389834357 2.407833389834357
    2.4078336142385997 2.4078334110600847""")
LOSS_MINUS = _floats("""
    2.4078334271821493 2.407833537737565 2.4078333722382412
    2.407833523519421 2.40783339180187 2.4078333984078957
    2.4078333886459067 2.4078333975086506 2.4078333859183196
    2.407833395374092 2.4078333849616422 2.4078333991937506
    2.40783339517214 2.407833410972853 2.40783338731951
    2.407833408940745 2.407833389834357 2.407833389834357
    2.407833389834357 2.407833389834357 2.407833326543585
    2.407833386109279 2.407833396235658 2.4078333807888277
    2.407833389834357 2.407833389834357 2.407833389834357
    2.407833389834357 2.407833389834357 2.407833389834357
    2.407833389834357 2.407833389834357 2.407833389834357
    2.407833389834357 2.407833389834357 2.4078332982541832
    2.4078333873828317 2.407833400632311 2.4078332995525074
    2.407833389834357 2.407833389834357 2.407833389834357
    2.407833370070998 2.407833389834357 2.407833389834357
    2.407833165430146 2.4078333686086""")
GRAD_FIXED = _floats("""
    -0.37347778780965 -1.4790321603097862 0.17596142534290177
    -1.3368503644957601 -0.01967513615719457 -0.08573553401542801
    0.011884652345551057 -0.07674312151045774 0.03916037129037356
    -0.05539734986948789 0.04872714728071104 -0.093593934454497
    -0.05337777545025736 -0.21138458326994772 0.025148562394954707
    -0.19106383537598332 0.0 0.0
    0.0 0.0 0.6329078719756231
    0.03725139800240675 -0.06401301304995109 0.09045575231968896
    0.0 0.0 0.0
    0.0 0.0 0.0
    0.0 0.0 0.0
    0.0 0.0 0.9158016518786495
    0.02451547591517728 -0.10797953784637067 0.9028189091398682
    0.0 0.0 0.0
    0.1976334252390789 0.0 0.0
    2.244042377990228 0.212257527082733""")
GRAD_PLANTED = _floats("""
    -0.37347778780965 -1.4790321603097862 0.17596142534290177
    -1.3368503644957601 -0.01967513615719457 -0.08573553401542801
    0.011884652345551057 -0.07674312151045774 0.03916037129037356
    -0.05539734986948789 0.04872714728071104 -0.093593934454497
    -0.05337777545025736 -0.21138458326994772 0.025148562394954707
    -0.19106383537598332 0.0 0.0
    0.0 0.0 2.5316314879024926
    0.149005592009627 -0.25605205219980437 0.3618230092787558
    0.0 0.0 0.0
    0.0 0.0 0.0
    0.0 0.0 0.0
    0.0 0.0 1.831603303757299
    0.04903095183035456 -0.21595907569274134 1.8056378182797364
    0.0 0.0 0.0
    0.1976334252390789 0.0 0.0
    2.244042377990228 0.212257527082733""")


def example():
    """``(X, Y, params, theta)``: the seeded case and its parameters as one flat vector."""
    X, Y, params = _demo.example()
    return X, Y, params, np.concatenate([params[k].reshape(-1) for k in KEYS])


def gradient(planted: bool) -> dict:
    """The recorded gradient in the course's ``d``-keyed dictionary."""
    _, _, params, _ = example()
    flat = np.array(GRAD_PLANTED if planted else GRAD_FIXED)
    return {"d" + k: v for k, v in _unflatten(flat, params).items()}


def recorded_loss():
    """The loss as the course's machine evaluated it: at ``theta +- EPS e_i`` the recorded
    value, anywhere else (the noise probe, the kink re-checks, whose values never enter the
    difference) this machine's.
    """
    X, Y, _, theta = example()

    def f(p):
        t = np.concatenate([np.asarray(p[k]).reshape(-1) for k in KEYS])
        moved = np.flatnonzero(t != theta)
        if moved.size == 1:
            i = int(moved[0])
            if t[i] == theta[i] + EPS:
                return LOSS_PLUS[i]
            if t[i] == theta[i] - EPS:
                return LOSS_MINUS[i]
        return _demo.loss(X, Y, p)

    return f


def rounds_like_the_course() -> bool:
    """Whether this machine's BLAS evaluates the loss and both gradients to the recorded
    values, bit for bit (then the course's numbers are this machine's too).
    """
    X, Y, params, theta = example()
    plus, minus = [], []
    for i in range(theta.size):
        for step, out in ((EPS, plus), (-EPS, minus)):
            t = theta.copy()
            t[i] = t[i] + step
            out.append(_demo.loss(X, Y, _unflatten(t, params)))
    cache = _demo.forward(X, Y, params)[1]
    grads = [_demo.backward(X, Y, cache, planted=p) for p in (False, True)]
    flat = [np.concatenate([g["d" + k].reshape(-1) for k in KEYS]) for g in grads]
    return (
        plus == list(LOSS_PLUS)
        and minus == list(LOSS_MINUS)
        and flat[0].tolist() == list(GRAD_FIXED)
        and flat[1].tolist() == list(GRAD_PLANTED)
    )


def _unflatten(t, params):
    out, offset = {}, 0
    for k in KEYS:
        out[k] = t[offset : offset + params[k].size].reshape(params[k].shape)
        offset += params[k].size
    return out
