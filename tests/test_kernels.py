"""Kernels against their plain-Python selves and the reference."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck import _jit, _norm_kernel

from . import models
from .reference import reference_norm

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
magnitudes = st.sampled_from([1.0, 1e-200, 1e200, 2.0**-1070, 1e300])


@models.needs_jit
@given(
    hnp.arrays(np.float64, st.integers(1, 300), elements=finite),
    st.data(),
    magnitudes,
)
def test_compiled_norms_equal_the_python_loop_bitwise(a, data, scale):
    a = a / max(1.0, np.abs(a).max()) * scale
    b = data.draw(hnp.arrays(np.float64, a.shape, elements=finite))
    b = b / max(1.0, np.abs(b).max()) * scale
    cuts = sorted(data.draw(st.lists(st.integers(0, a.size), max_size=4)))
    offsets = np.array([0, *cuts, a.size], dtype=np.int64)
    compiled = np.empty((offsets.size - 1, 3))
    plain = np.empty_like(compiled)
    _jit.compiled("segment_norms")(a, b, offsets, compiled)
    _norm_kernel.segment_norms(a.tolist(), b.tolist(), offsets.tolist(), plain)
    np.testing.assert_array_equal(compiled, plain)
    for s in range(offsets.size - 1):
        lo, hi = offsets[s], offsets[s + 1]
        expected = [reference_norm(a[lo:hi]), reference_norm(b[lo:hi])]
        np.testing.assert_allclose(compiled[s, :2], expected, rtol=1e-13)


def test_nan_and_inf_propagate():
    out = np.empty((1, 3))
    kernel = _jit.compiled("segment_norms")
    kernel(np.array([1.0, np.nan]), np.array([1.0, 2.0]), np.array([0, 2]), out)
    assert np.isnan(out[0, 0])
    assert out[0, 1] == np.hypot(1.0, 2.0)
    assert np.isnan(out[0, 2])
    kernel(np.array([1.0, np.inf]), np.array([1.0, 2.0]), np.array([0, 2]), out)
    assert out[0, 0] == np.inf
    assert out[0, 2] == np.inf
