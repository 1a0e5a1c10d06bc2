"""Layers with hand-written backward passes, shared by the adapters' tests and benchmarks.

The frameworks are imported inside the factories: importing this module needs neither.
"""

import numpy as np


def layer_norm(x, w, b):
    mu = x.mean(-1, keepdim=True)
    xc = x - mu
    rstd = ((xc * xc).mean(-1, keepdim=True) + 1e-5).rsqrt()
    return xc * rstd * w + b, xc * rstd, rstd


def layer_norm_backward(g, xhat, rstd, w, bug):
    gx = g * w
    dx = gx - gx.mean(-1, keepdim=True)
    if bug != "x":  # the planted bug: the term through the variance is missing
        dx = dx - xhat * (gx * xhat).mean(-1, keepdim=True)
    dw = (g * xhat).sum(0)
    if bug == "w":
        dw = dw * 1.05
    return rstd * dx, dw, g.sum(0)


def torch_layer_norm(bug=None):
    """LayerNorm over the last axis as a torch Function that vmap can run (setup_context).

    ``bug``: "x" (dx misses the term through the variance) or "w" (dw 5% too large).
    """
    import torch

    class LayerNorm(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x, weight, bias):
            return layer_norm(x, weight, bias)[0]

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, weight, bias = inputs
            _, xhat, rstd = layer_norm(x, weight, bias)
            ctx.save_for_backward(xhat, rstd, weight)

        @staticmethod
        def backward(ctx, g):
            xhat, rstd, weight = ctx.saved_tensors
            return layer_norm_backward(g, xhat, rstd, weight, bug)

    return LayerNorm


def torch_linear_gelu(bug=None):
    """A fused Linear+GELU (tanh form) as a torch Function; ``bug="cubic"``: 0.13 for
    3 * 0.044715 in the derivative of the cubic term."""
    import torch

    class LinearGelu(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x, weight):
            return torch.nn.functional.gelu(x @ weight.T, approximate="tanh")

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            x, weight = ctx.saved_tensors
            z = x @ weight.T
            k = (2 / torch.pi) ** 0.5
            t = torch.tanh(k * (z + 0.044715 * z**3))
            c = 0.13 if bug == "cubic" else 3 * 0.044715
            gz = g * (0.5 * (1 + t) + 0.5 * z * (1 - t**2) * k * (1 + c * z**2))
            return gz @ weight, gz.T @ x

    return LinearGelu


def jax_layer_norm(bug=None):
    """LayerNorm over the last axis with a jax custom_vjp; ``bug``: "n" drops a 1/n, "w"
    makes dw 5% too large."""
    import jax

    def stats(x):
        xc = x - x.mean(-1, keepdims=True)
        rstd = jax.lax.rsqrt((xc * xc).mean(-1, keepdims=True) + 1e-5)
        return xc * rstd, rstd

    @jax.custom_vjp
    def f(x, w):
        return stats(x)[0] * w

    def fwd(x, w):
        xhat, rstd = stats(x)
        return xhat * w, (xhat, rstd, w)

    def bwd(res, g):
        xhat, rstd, w = res
        n = xhat.shape[-1]
        gx = g * w
        proj = (gx * xhat).sum(-1, keepdims=True) / (1 if bug == "n" else n)
        dw = (g * xhat).sum(0) * (1.05 if bug == "w" else 1.0)
        return rstd * (gx - gx.sum(-1, keepdims=True) / n - xhat * proj), dw

    f.defvjp(fwd, bwd)
    return f


# --- low-precision kernels: bf16 in and out, the arithmetic in float32 ----------------------------
# ``bug`` plants one mistake in the backward: "scale" (dx 2% too large), "zero" (dx all zero),
# "nan" (one entry NaN), "self" (dx is the reference's own autograd result), "bf16" (the
# row sum accumulated one term at a time in the input's dtype).


def torch_softmax(x):
    """The reference: torch's own softmax over the last axis, in the input's dtype."""
    return x.softmax(-1)


def torch_layer_norm_reference(x, weight, bias):
    import torch

    return torch.nn.functional.layer_norm(x, x.shape[-1:], weight, bias, eps=1e-5)


def jax_softmax(x):
    """The reference: jax's own softmax over the last axis, in the input's dtype."""
    import jax

    return jax.nn.softmax(x, axis=-1)


def torch_lowprec_softmax(bug=None):
    """Softmax over the last axis as a torch Function computing in float32."""
    import torch

    class Softmax(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.softmax(x.float(), -1).to(x.dtype)
            ctx.save_for_backward(x, y)
            return y

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            if bug == "self":
                with torch.enable_grad():
                    x = x.detach().requires_grad_(True)
                    return torch.autograd.grad(torch_softmax(x), x, g)
            if bug == "bf16":
                p, s = g * y, torch.zeros_like(y[..., :1])
                for j in range(p.shape[-1]):
                    s = s + p[..., j : j + 1]
                return y * (g - s)
            gf, yf = g.float(), y.float()
            dx = yf * (gf - (gf * yf).sum(-1, keepdim=True))
            dx = {"scale": 1.02 * dx, "zero": 0 * dx}.get(bug, dx)
            if bug == "nan":
                dx[(0,) * dx.dim()] = float("nan")
            return dx.to(g.dtype)

    return Softmax.apply


def torch_lowprec_layer_norm(bug=None):
    """LayerNorm over the last axis (weight and bias) as a torch Function computing in
    float32; ``bug`` as above for dx, and "w" (dx uses 1 for the weight, so it does not
    depend on it) or "none" (no gradient for the bias).
    """
    import torch

    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias):
            y, xhat, rstd = layer_norm(x.float(), weight.float(), bias.float())
            ctx.save_for_backward(xhat, rstd, weight)
            return y.to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            xhat, rstd, weight = ctx.saved_tensors
            w = torch.ones_like(weight) if bug == "w" else weight
            gf = g.float().reshape(-1, g.shape[-1])
            xh, rs = xhat.reshape(gf.shape), rstd.reshape(-1, 1)
            dx, dw, db = layer_norm_backward(gf, xh, rs, w.float(), None)
            dx = {"scale": 1.02 * dx, "zero": 0 * dx}.get(bug, dx)
            if bug == "nan":
                dx[0, 0] = float("nan")
            db = None if bug == "none" else db.to(g.dtype)
            return dx.reshape(g.shape).to(g.dtype), dw.to(g.dtype), db

    return LayerNorm.apply


def jax_lowprec_softmax(bug=None):
    """Softmax over the last axis as a jax custom_vjp computing in float32 (bugs as above)."""
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def softmax(x):
        return jax.nn.softmax(x.astype(jnp.float32), axis=-1).astype(x.dtype)

    def fwd(x):
        y = softmax(x)
        return y, (x, y)

    def bwd(res, g):
        x, y = res
        if bug == "self":
            return jax.vjp(jax_softmax, x)[1](g)
        gf, yf = g.astype(jnp.float32), y.astype(jnp.float32)
        dx = yf * (gf - (gf * yf).sum(-1, keepdims=True))
        dx = {"scale": 1.02 * dx, "zero": 0 * dx}.get(bug, dx)
        if bug == "nan":
            dx = dx.at[(0,) * dx.ndim].set(jnp.nan)
        return (dx.astype(g.dtype),)

    softmax.defvjp(fwd, bwd)
    return softmax
def _gelu_slope(lib, x):
    """The derivative of the tanh form of GELU, in ``lib`` (torch or jax.numpy)."""
    k = (2 / np.pi) ** 0.5
    t = lib.tanh(k * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


def torch_gelu(error=0.0, pin=False):
    """The tanh form of GELU as a torch Function whose backward is ``error`` (relative) off
    in every entry; ``pin``: the forward computes in float32 whatever it is given."""
    import torch

    class Gelu(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            z = x.float() if pin else x
            k = (2 / np.pi) ** 0.5
            return 0.5 * z * (1 + torch.tanh(k * (z + 0.044715 * z**3)))

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * _gelu_slope(torch, x) * (1 + error)

    return Gelu


def jax_gelu(error=0.0):
    """The tanh form of GELU as a jax custom_vjp whose backward is ``error`` (relative) off."""
    import jax
    import jax.numpy as jnp

    def value(x):
        k = (2 / np.pi) ** 0.5
        return 0.5 * x * (1 + jnp.tanh(k * (x + 0.044715 * x**3)))

    @jax.custom_vjp
    def gelu(x):
        return value(x)

    def fwd(x):
        return value(x), x

    def bwd(x, g):
        return (g * _gelu_slope(jnp, x) * (1 + error),)

    gelu.defvjp(fwd, bwd)
    return gelu
