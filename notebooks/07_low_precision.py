# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Low precision: checking a bf16 kernel against a float64 reference
#
# Most hand-written backward passes today are fused kernels that run in bf16 or fp16. A
# finite-difference check cannot reach them in their own dtype. This notebook shows why,
# what can be checked instead (the kernel's error against a float64 truth, relative to what
# the reference itself reaches in bf16), and uses `gradcheck.torch.compare` on a fused
# layer norm whose backward accumulates its weight and bias gradients in bf16 (it fails)
# and in float32 (it passes). Every number is computed when the notebook runs.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import gradcheck.torch

torch.manual_seed(0)

# %% [markdown]
# ## Why finite differences cannot check bf16
#
# bf16 keeps 8 significant bits: its unit roundoff is `2⁻⁸ ≈ 3.9e-3`. A step smaller than
# that, relative to `x`, leaves `x` unchanged, and a larger one leaves the two values of `f`
# agreeing in only a few bits. The central difference of `sin` at `x = 1`, in three dtypes,
# over a range of steps:

# %%
x0 = 1.0
steps = np.logspace(-6, 0, 61)
curves = {}
for dtype in (torch.float64, torch.float32, torch.bfloat16):
    x = torch.tensor(x0, dtype=dtype)
    errors = []
    for h in steps:
        hx = torch.tensor(h, dtype=dtype)
        up, down = x + hx, x - hx
        taken = (up - down).double().item()  # the step actually taken, after rounding
        diff = (torch.sin(up) - torch.sin(down)).double().item()
        errors.append(abs(diff / taken - math.cos(x0)) / math.cos(x0) if taken else np.nan)
    curves[str(dtype).removeprefix("torch.")] = np.array(errors)

unit = torch.finfo(torch.bfloat16).eps / 2
one = torch.tensor(1.0, dtype=torch.bfloat16)
print(f"bf16 unit roundoff {unit:.2e}; in bf16, 1 + 1e-3 == 1 is {bool(one + 1e-3 == one)}")
for name, err in curves.items():
    print(
        f"{name:9} best relative error {np.nanmin(err):.1e} at step {steps[np.nanargmin(err)]:.1e}"
    )
assert np.nanmin(curves["bfloat16"]) > 1e-3  # no step resolves the derivative to 0.1%

# %%
fig, ax = plt.subplots(figsize=(8, 4))
for name, err in curves.items():
    ax.loglog(steps, err, label=name)
ax.axhline(unit, color="grey", ls=":", label="bf16 unit roundoff")
ax.set_xlabel("step h")
ax.set_ylabel("relative error of the central difference")
ax.set_title("d/dx sin(x) at x = 1")
ax.legend()
fig.tight_layout()

# %% [markdown]
# At bf16 the best step still leaves an error of a few tenths of a percent, and a check
# needs far better than that to tell a bug from rounding. (Steps that leave `x` unchanged
# are not drawn.) So fused-kernel test suites do something else: they run the kernel in
# bf16, a **reference** in higher precision (the truth), and the reference **itself in
# bf16** (the baseline), and require the kernel's error to be within a small factor of the
# baseline's: 2x for outputs and 2-3x for gradients in flash-attention's tests.
#
# ## The baseline ratio
#
# `gradcheck.torch.compare(fn, reference, inputs)` does this: the truth is `reference` in
# float64 (forward, and the vector-Jacobian product on a seeded cotangent), the baseline is
# `reference` in bf16, the kernel is `fn` in bf16; every run sees the same inputs (rounded
# to bf16 once) and the same cotangent. For each output and each input's gradient it
# reports the kernel's relative RMS error, the baseline's, and their **ratio**: 1 means the
# kernel is as accurate as the framework's own ops in bf16, 0.5 twice as accurate, 10 ten
# times worse. The baseline is what makes the number meaningful: a bf16 result is never
# exact (rounding the truth to bf16 alone costs a relative error of about 2e-3), and the
# question is whether the kernel loses more than bf16 has to.
#
# The subject: a layer norm over the last axis, with weight and bias, written as one
# `torch.autograd.Function` whose forward and `dx` compute in float32. Its `dweight` and
# `dbias` sum over every row of the batch, one row at a time, as a kernel that loops over
# the batch would, and the running sums are kept in `acc`: bf16 or float32. (`dx_scale`
# plants a bug for later.)


# %%
def fused_layer_norm(acc, dx_scale=1.0):
    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias):
            xf = x.float()
            xc = xf - xf.mean(-1, keepdim=True)
            rstd = torch.rsqrt((xc * xc).mean(-1, keepdim=True) + 1e-5)
            xhat = xc * rstd
            ctx.save_for_backward(xhat, rstd, weight)
            return (xhat * weight.float() + bias.float()).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            xhat, rstd, weight = ctx.saved_tensors
            gf = g.float()
            gx = gf * weight.float()
            dx = rstd * (gx - gx.mean(-1, keepdim=True) - xhat * (gx * xhat).mean(-1, keepdim=True))
            rows_w = (gf * xhat).reshape(-1, g.shape[-1]).to(acc)
            rows_b = gf.reshape(-1, g.shape[-1]).to(acc)
            dw, db = torch.zeros_like(rows_w[0]), torch.zeros_like(rows_b[0])
            for i in range(rows_w.shape[0]):  # one row at a time, the sums kept in `acc`
                dw, db = dw + rows_w[i], db + rows_b[i]
            return (dx * dx_scale).to(g.dtype), dw.to(g.dtype), db.to(g.dtype)

    return LayerNorm.apply


def layer_norm(x, weight, bias):
    """The reference, written plainly: it follows its inputs' dtype."""
    xc = x - x.mean(-1, keepdim=True)
    return xc * torch.rsqrt((xc * xc).mean(-1, keepdim=True) + 1e-5) * weight + bias


d = 64
x = 3 * torch.randn(8, 64, d) + 1  # 512 rows: a batch of 8 sequences of 64 tokens
weight, bias = 1 + 0.1 * torch.randn(d), torch.randn(d)
inputs = (x, weight, bias)

# %% [markdown]
# ### Accumulating in bf16

# %%
bf16_acc = gradcheck.torch.compare(fused_layer_norm(torch.bfloat16), layer_norm, inputs, seed=0)
print(bf16_acc)
assert set(bf16_acc.failing) == {"dweight", "dbias"}

# %% [markdown]
# The output and `dx` are as accurate as the reference's own bf16 ops (ratios below 1: the
# kernel computes them in float32). `dweight` and `dbias` are not: a running sum over 512
# rows grows to tens, where bf16's spacing is a quarter, and each addition rounds by up to
# half of that. torch sums in float32 inside its reductions even on bf16 tensors, so the
# reference's own bf16 gradient is far better, and the kernel's error is many times the
# baseline's. The first line names the failing gradients; each says why under the table.
# The reference's own float64 gradient was first checked by finite differences (the line
# under the header), so the blame does not fall on a wrong reference.
#
# ### Accumulating in float32

# %%
f32_acc = gradcheck.torch.compare(fused_layer_norm(torch.float32), layer_norm, inputs, seed=0)
print(f32_acc)
assert f32_acc.passed

# %% [markdown]
# ## Beyond the ratio: systematic errors
#
# Rounding error scatters around the truth; a bug leans along it. The **slope** of the
# kernel's gradient on the truth, `<g_k, g_t> / <g_t, g_t> - 1`, is 0 for pure noise and
# `s` for a gradient scaled by `1 + s`. compare allows it 3x the baseline's own slope plus
# 4 times the spread that the kernel's rounding gives it (estimated from the rows'
# scatter), so a correct kernel is not failed by chance while a small scale error is. With
# the gradient factor loosened to 20, so that the ratio rule alone would pass almost
# anything, a `dx` that is 2% too large still fails:


# %%
off = gradcheck.torch.compare(
    fused_layer_norm(torch.float32, dx_scale=1.02),
    layer_norm,
    inputs,
    seed=0,
    factor=(2, 20),
    check_reference=False,
)
dx = off.blocks["dx"]
print(off.blocks["dx"].problems)
print(
    f"dx: ratio {dx.ratio:.2f} (allowed {dx.ratio_allowed:.3g}), slope {dx.slope:+.2e} "
    f"(baseline {dx.baseline_slope:+.2e}, allowed {dx.slope_allowed:.2e})"
)
assert off.failing == ("dx",)

# %% [markdown]
# ## What the baseline excuses
#
# The baseline is what the framework's own ops reach in bf16 **on these inputs**. Against
# torch's built-in `layer_norm`, whose bf16 backward on the CPU sums `dweight` and `dbias`
# less accurately than the plain reference's reductions do, the same bf16 accumulation
# comes out within the baseline: a kernel is held to the standard of what it replaces.

# %%
builtin = gradcheck.torch.compare(
    fused_layer_norm(torch.bfloat16),
    lambda x, weight, bias: torch.nn.functional.layer_norm(x, (d,), weight, bias, eps=1e-5),
    inputs,
    seed=0,
    check_reference=False,
)
ratios = {name: round(a.ratio, 2) for name, a in builtin.blocks.items()}
print(builtin.verdict, ratios)

# %%
fig, ax = plt.subplots(figsize=(8, 3.5))
names = list(bf16_acc.blocks)
at = np.arange(len(names))
for k, (label, r) in enumerate(
    [
        ("bf16 sums, plain reference", bf16_acc),
        ("float32 sums, plain reference", f32_acc),
        ("bf16 sums, torch's layer_norm", builtin),
    ]
):
    ax.bar(at + 0.27 * (k - 1), [r.blocks[n].ratio for n in names], 0.27, label=label)
ax.axhline(3, color="grey", ls=":", label="gradients' factor (3)")
ax.set_xticks(at, names)
ax.set_yscale("log")
ax.set_ylabel("error / baseline's error")
ax.legend(fontsize="small")
fig.tight_layout()

# %% [markdown]
# ## In a test suite
#
# `gradcheck.torch.assert_close_to_reference(fn, reference, inputs, **options)` raises an
# `AssertionError` whose message is the report (its first line the headline pytest shows)
# and returns the report when it passes. `dtype=torch.float16` or `torch.float32` runs the
# same comparison in another dtype; `gradcheck.jax.compare` does it for `custom_vjp` rules.

# %%
report = gradcheck.torch.assert_close_to_reference(
    fused_layer_norm(torch.float32), layer_norm, inputs, seed=1, check_reference=False
)
print(report.verdict, f"{report.seconds:.2f} s")
