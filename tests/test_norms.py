"""relative_difference and relative_change: properties, known answers, extreme magnitudes, and
the per-block norms of check() where a naive norm overflows or underflows."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import gradcheck
from gradcheck import relative_change, relative_difference

from .reference import flat, reference_norm, reference_relative_difference

U = np.finfo(np.float64).eps / 2  # unit roundoff


# Finite floats of any magnitude in [1e-300, 1e300], zeros, and ordinary numbers: the
# magnitudes spread evenly over the decades instead of crowding near 0 or 1e300.
_decades = st.builds(
    lambda m, e, s: s * m * 10.0**e,
    st.floats(1.0, 9.99),
    st.integers(-300, 299),
    st.sampled_from([1.0, -1.0]),
)
_ordinary = st.floats(-10.0, 10.0).filter(lambda x: x == 0 or abs(x) >= 1e-300)
EXTREME = st.one_of(st.just(0.0), _ordinary, _decades)
# Any finite float up to 1e300 in magnitude, subnormals included.
FINITE = st.one_of(EXTREME, st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False))
# Any finite float at all, up to the largest (where a - b and the norms overflow).
ANY = st.one_of(FINITE, st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def pairs(draw, elements=EXTREME, max_size=40):
    """Two arrays of one shape: independent, relatively perturbed, or a few entries changed."""
    a = np.array(draw(st.lists(elements, min_size=1, max_size=max_size)))
    mode = draw(st.sampled_from(["independent", "relative", "few"]))
    if mode == "independent":
        b = np.array(draw(st.lists(elements, min_size=a.size, max_size=a.size)))
    elif mode == "relative":
        e = draw(st.lists(st.floats(-1e-3, 1e-3), min_size=a.size, max_size=a.size))
        with np.errstate(over="ignore"):
            b = a * (1.0 + np.array(e))
        b = np.where(np.isfinite(b), b, a)  # near the largest float, keep the entry
    else:
        b = a.copy()
        for i in draw(st.lists(st.integers(0, a.size - 1), min_size=1, max_size=3)):
            b[i] = draw(elements)
    if draw(st.booleans()):
        a, b = b, a
    return a, b


# ---------------------------------------------------------------- properties


@given(pairs(elements=ANY))
def test_symmetric_exactly(ab):
    a, b = ab
    assert relative_difference(a, b) == relative_difference(b, a)


@given(pairs(elements=ANY))
def test_bounded_between_zero_and_one(ab):
    a, b = ab
    d = relative_difference(a, b)
    assert 0.0 <= d <= 1.0
    if np.array_equal(a, b):
        assert d == 0.0


@given(pairs(elements=FINITE))
def test_agrees_with_the_hypot_reference(ab):
    a, b = ab
    expected = reference_relative_difference(a, b)
    assert relative_difference(a, b) == pytest.approx(expected, rel=1e-13, abs=0)


@given(pairs(), st.data())
def test_invariant_under_power_of_two_scaling(ab, data):
    a, b = ab
    magnitudes = np.abs(np.concatenate([a, b]))
    nonzero = magnitudes[magnitudes > 0]
    if nonzero.size == 0:
        k = data.draw(st.integers(-900, 900))
    else:
        # Keep every scaled entry normal (so the scaling is exact) and finite; norms and
        # differences may overflow.
        low = -1021 - math.frexp(nonzero.min())[1]
        high = 1024 - math.frexp(nonzero.max())[1]
        assume(low <= high)
        k = data.draw(st.integers(max(-900, low), min(900, high)))
    sa, sb = np.ldexp(a, k), np.ldexp(b, k)
    assert np.array_equal(np.ldexp(sa, -k), a)  # the scaling is exact
    assert np.array_equal(np.ldexp(sb, -k), b)
    d = relative_difference(a, b)
    assert relative_difference(sa, sb) == pytest.approx(d, rel=1e-13, abs=0)


@given(pairs(), st.floats(1e-3, 1e3))
def test_invariant_under_positive_scaling(ab, c):
    a, b = ab
    sa, sb = c * a, c * b
    # Rounding c * x moves each entry by half an ulp, so the difference of nearly equal
    # arrays moves by about u in absolute terms.
    d = relative_difference(a, b)
    assert relative_difference(sa, sb) == pytest.approx(d, rel=1e-12, abs=8 * U)


@given(pairs(elements=FINITE))
def test_relative_change_agrees_with_the_hypot_reference(ab):
    a, ref = ab
    num, den = reference_norm(a - ref), reference_norm(ref)
    expected = 0.0 if num == 0 else (math.inf if den == 0 else num / den)
    assert relative_change(a, ref) == pytest.approx(expected, rel=1e-13, abs=0)


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (0,)])
def test_both_zero_is_zero(shape):
    assert relative_difference(np.zeros(shape), np.zeros(shape)) == 0.0
    assert relative_change(np.zeros(shape), np.zeros(shape)) == 0.0


@pytest.mark.parametrize("scale", [1.0, 1e-300, 1e300, 5e-324])
def test_exactly_one_zero_is_one(scale):
    x = scale * np.array([3.0, -4.0, 1.0])
    assert relative_difference(x, np.zeros(3)) == 1.0
    assert relative_difference(np.zeros(3), x) == 1.0


@pytest.mark.parametrize("scale", [1.0, 1e-300, 1e-160, 1e150, 1e300])
def test_negated_is_one(scale):
    a = scale * np.array([0.5, -1.25, 3.0, 7.0])
    assert relative_difference(a, -a) == 1.0
    assert relative_change(-a, a) == 2.0


def test_opposite_directions_give_exactly_one():
    # ||a - b|| = ||a|| + ||b|| exactly when b = -3a; the documented answer is 1.
    a = np.array([1.0, 1.0])
    assert relative_difference(a, -3.0 * a) <= 1.0


@pytest.mark.parametrize("e", [2.0**-20, 2.0**-3, -(2.0**-5), 1.0, 3.0])
def test_relative_scaling_gives_e_over_two_plus_e(e):
    # Small integers times (1 + e) with e a power of two are exact, so the answer is exact:
    # ||e b|| / (|1 + e| ||b|| + ||b||) = |e| / (2 + e) for e > -1.
    b = np.array([3.0, -1.0, 2.0, 5.0])
    a = (1.0 + e) * b
    assert relative_difference(a, b) == pytest.approx(abs(e) / (2.0 + e), rel=1e-14, abs=0)
    assert relative_change(a, b) == pytest.approx(abs(e), rel=1e-14, abs=0)


def test_relative_scaling_by_a_general_factor():
    rng = np.random.default_rng(7)
    b = rng.standard_normal(50)
    e = 1e-6
    assert relative_difference((1 + e) * b, b) == pytest.approx(e / (2 + e), rel=1e-8, abs=0)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_extreme_vectors_where_a_naive_norm_fails(scale):
    a = np.full(4, scale)
    b = 1.5 * a
    # |1 - 1.5| / (1 + 1.5) per entry, and all entries alike.
    assert relative_difference(a, b) == pytest.approx(0.2, rel=1e-15, abs=0)
    assert relative_difference(b, a) == pytest.approx(0.2, rel=1e-15, abs=0)
    assert relative_change(b, a) == pytest.approx(0.5, rel=1e-15, abs=0)
    # Why it matters: the plain 2-norm squares first and overflows (inf) or underflows (0),
    # so the textbook formula gives NaN here.
    with np.errstate(all="ignore"):
        norms = [np.linalg.norm(a - b), np.linalg.norm(a), np.linalg.norm(b)]
        assert norms == ([np.inf] * 3 if scale > 1 else [0.0] * 3)
        assert math.isnan(norms[0] / (norms[1] + norms[2]))


@pytest.mark.parametrize("where", ["a", "b", "both"])
@pytest.mark.parametrize("n", [1, 3, 5000])
def test_nan_anywhere_is_nan(where, n):
    a = np.linspace(1.0, 2.0, n)
    b = a * 1.5
    a[-1] = 1e300  # huge values do not hide the NaN
    if where in ("a", "both"):
        a[n // 2] = np.nan
    if where in ("b", "both"):
        b[0] = np.nan
    assert math.isnan(relative_difference(a, b))
    assert math.isnan(relative_difference(b, a))
    assert math.isnan(relative_change(a, b))


@pytest.mark.parametrize(
    ("a", "b"),
    [([np.inf], [1.0]), ([np.inf], [np.inf]), ([np.inf], [-np.inf]), ([np.inf, 1.0], [0.0, 1.0])],
)
def test_infinite_entries_give_nan(a, b):
    # Observed behaviour: any infinite entry makes the ratio inf/inf or NaN (inf - inf), so
    # the result is NaN, quietly (no RuntimeWarning, which -W error would turn into a raise).
    assert math.isnan(relative_difference(a, b))
    assert math.isnan(relative_difference(b, a))


def test_relative_change_of_infinite_entries():
    # Observed: an infinite `a` against a finite reference is inf; an infinite reference
    # gives inf/inf = NaN, and numpy warns "invalid value encountered in scalar divide" for
    # it (the same unguarded division as test_relative_change_that_overflows_gives_no_warning).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert relative_change([np.inf, 0.0], [1.0, 0.0]) == math.inf
        assert math.isnan(relative_change([1.0, 0.0], [np.inf, 0.0]))
        assert math.isnan(relative_change([np.inf], [np.inf]))


@pytest.mark.parametrize("mag", [1e308, np.finfo(np.float64).max, 2.0**1023])
def test_differences_that_overflow_stay_bounded(mag):
    # a - b overflows to inf although a and b are finite (once a bug: d came out inf).
    a, b = np.array([mag, 0.0]), np.array([-mag, 0.0])
    assert relative_change(a, b) == 2.0  # ||2a|| / ||a||
    assert relative_difference(a, b) == 1.0
    assert relative_difference(a, 0.5 * a) == pytest.approx(1 / 3, rel=1e-15, abs=0)


@pytest.mark.parametrize("n", [1, 4, 5000])
def test_norms_that_overflow_give_the_right_ratio_without_warnings(n):
    # ||a|| + ||b|| (or ||a|| itself) passes the largest float: the ratio is still right,
    # and no RuntimeWarning escapes (an error under -W error; once a bug).
    a = np.full(n, 1.5e308)
    b = np.full(n, 0.5e308)
    assert relative_difference(a, b) == pytest.approx(0.5, rel=1e-14, abs=0)
    assert relative_change(a, b) == pytest.approx(2.0, rel=1e-14, abs=0)
    a[0] = -a[0]
    expected = reference_relative_difference(a / 2.0**64, b / 2.0**64)
    assert relative_difference(a, b) == pytest.approx(expected, rel=1e-13, abs=0)


def test_relative_change_that_overflows_gives_no_warning():
    # np.errstate(divide="ignore") covers division by zero only, not overflow: the result is
    # the right inf, with "overflow encountered in scalar divide" (an error under -W error).
    assert relative_change([1e300], [1e-300]) == math.inf


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0, 1e-200], [1.0, 0.0]),  # returns 0.0 for different arrays
        ([1e-100, 1e-160], [1e-100, 2e-160]),  # 4.99997e-61 instead of 5e-61
    ],
)
def test_differences_that_underflow_next_to_normal_entries_are_kept(a, b):
    expected = reference_relative_difference(a, b)
    assert expected > 0
    assert relative_difference(a, b) == pytest.approx(expected, rel=1e-13, abs=0)


# ---------------------------------------------------------------- long vectors

CHUNK = 4096  # the norm kernel sums plainly per chunk of this many entries
SCALES = {"zero": 0.0, "huge": 1e250, "tiny": 1e-250, "plain": 1.0}


def _chunked(n, kinds, differs, seed):
    """A vector of n entries whose successive 4096-entry chunks cycle through ``kinds``:
    exact zeros, ~1e250, ~1e-250, ~1, or "mixed" (every entry its own decade, 1e-300..1e300).
    ``b`` is ``a`` perturbed by ~1e-3 relative in the chunks whose kind is in ``differs``.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n)
    b = a.copy()
    for c, start in enumerate(range(0, n, CHUNK)):
        s = slice(start, min(start + CHUNK, n))
        kind = kinds[c % len(kinds)]
        if kind == "mixed":
            a[s] *= 10.0 ** rng.integers(-300, 300, s.stop - s.start)
        else:
            a[s] *= SCALES[kind]
        b[s] = a[s]
        if kind in differs:
            b[s] = a[s] * (1.0 + 1e-3 * rng.standard_normal(s.stop - s.start))
    return a, b


@pytest.mark.parametrize("n", [3 * CHUNK + 123, 9 * CHUNK + 17])
@pytest.mark.parametrize(
    ("kinds", "differs"),
    [
        (("zero", "huge", "tiny", "plain"), ("huge", "tiny", "plain")),
        (("plain", "huge", "tiny", "zero"), ("huge",)),
        (("zero", "huge", "plain"), ("plain",)),  # small differences next to huge norms
        (("zero", "tiny", "plain"), ("tiny",)),  # ~1e-255: only the tiny chunks differ
        (("tiny", "zero"), ("tiny",)),
        (("plain", "zero"), ("plain",)),
        (("mixed", "plain", "zero"), ("mixed", "plain")),
    ],
)
def test_long_vectors_with_mixed_chunks(n, kinds, differs):
    a, b = _chunked(n, kinds, differs, seed=n)
    expected = reference_relative_difference(a, b)
    assert expected > 0
    assert relative_difference(a, b) == pytest.approx(expected, rel=1e-13, abs=0)
    assert relative_difference(b, a) == relative_difference(a, b)
    num, den = reference_norm(a - b), reference_norm(b)
    assert relative_change(a, b) == pytest.approx(num / den, rel=1e-13, abs=0)


@pytest.mark.parametrize("n", [3 * CHUNK + 123, 9 * CHUNK + 17])
def test_long_equal_vectors_are_zero_apart(n):
    a, b = _chunked(n, ("mixed", "zero", "huge", "tiny", "plain"), (), seed=2)
    assert np.array_equal(a, b)
    assert relative_difference(a, b) == 0.0
    assert relative_change(a, b) == 0.0


# ---------------------------------------------------------------- relative_change


def test_relative_change_known_answers():
    assert relative_change([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_change([3.0, 4.0], [0.0, 0.0]) == math.inf  # no warning either
    assert relative_change([3.0, 4.0], [0.0, 4.0]) == 0.75  # ||(3, 0)|| / ||(0, 4)||
    assert relative_change([1.1, 0.0], [1.0, 0.0]) == pytest.approx(0.1, rel=1e-12, abs=0)
    assert relative_change([[1.0, 2.0], [2.0, 4.0]], [[0.0, 0.0], [0.0, 4.0]]) == 0.75


def test_relative_change_is_not_symmetric():
    # ||2 - 1|| / ||1|| = 1 but ||1 - 2|| / ||2|| = 0.5; relative_difference gives 1/3 both ways.
    assert relative_change([2.0], [1.0]) == 1.0
    assert relative_change([1.0], [2.0]) == 0.5
    assert relative_difference([2.0], [1.0]) == relative_difference([1.0], [2.0])
    assert relative_difference([2.0], [1.0]) == pytest.approx(1 / 3, rel=1e-15, abs=0)


def test_integer_and_nested_list_inputs_are_real_arrays():
    assert relative_difference([[1, 2], [3, 4]], [[1, 2], [3, 4]]) == 0.0
    assert relative_difference([3, 0], [0, 4]) == pytest.approx(5 / 7, rel=1e-15, abs=0)
    assert relative_difference(2.0, 1.0) == pytest.approx(1 / 3, rel=1e-15, abs=0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("func", "names"),
    [(relative_difference, ("a", "b")), (relative_change, ("a", "reference"))],
)
def test_mismatched_shapes_name_both_arguments(func, names):
    pattern = rf"`{names[0]}` and `{names[1]}` must have the same shape.*\(3,\).*\(1, 3\)"
    with pytest.raises(ValueError, match=pattern):
        func(np.ones(3), np.ones((1, 3)))


@pytest.mark.parametrize(
    "bad", [np.array([1 + 2j]), np.array(["x"]), np.array([True]), [[1.0, 2.0], [3.0]]]
)
@pytest.mark.parametrize(
    ("func", "names"),
    [(relative_difference, ("a", "b")), (relative_change, ("a", "reference"))],
)
def test_non_real_inputs_are_type_errors(func, names, bad):
    with pytest.raises(TypeError, match=f"`{names[0]}` must be a real array"):
        func(bad, np.ones(1))
    with pytest.raises(TypeError, match=f"`{names[1]}` must be a real array"):
        func(np.ones(1), bad)


# ---------------------------------------------------------------- through check()


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_check_block_norms_with_huge_and_tiny_gradients(scale):
    params = {"w": np.array([0.5, -1.25, 2.0, 3.0]), "v": np.array([[1.5, -0.75], [2.5, 1.0]])}

    def f(p):
        return scale * (0.5 * np.sum(p["w"] ** 2) + np.sum(p["v"] ** 3) / 3)

    grad = {"w": scale * params["w"], "v": scale * params["v"] ** 2}
    report = gradcheck.check(f, params, grad)
    assert report.verdict == "pass"
    approx = flat(report.gradapprox, params)
    g = flat(grad, params)
    with np.errstate(all="ignore"):
        naive = np.linalg.norm(g)
    assert naive == (np.inf if scale > 1 else 0.0)  # what a plain 2-norm would have used
    expected = reference_relative_difference(g, approx)
    assert 0 < expected < 1e-9
    assert report.difference == pytest.approx(expected, rel=1e-12, abs=0)
    for name in params:
        block = report.blocks[name]
        assert block.norm_analytic == pytest.approx(reference_norm(grad[name]), rel=1e-14, abs=0)
        assert block.norm_numeric == pytest.approx(
            reference_norm(report.gradapprox[name]), rel=1e-14, abs=0
        )
        ref = reference_relative_difference(grad[name], report.gradapprox[name])
        assert block.difference == pytest.approx(ref, rel=1e-12, abs=0)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_check_fails_a_wrong_sign_at_extreme_scales(scale):
    params = {"w": np.array([0.5, -1.25, 2.0]), "v": np.array([1.5, 3.0])}

    def f(p):
        return scale * 0.5 * (np.sum(p["w"] ** 2) + np.sum(p["v"] ** 2))

    grad = {"w": scale * params["w"], "v": -scale * params["v"]}
    report = gradcheck.check(f, params, grad)
    assert report.failing == ("v",)
    assert report.blocks["v"].difference == pytest.approx(1.0, rel=1e-9, abs=0)
    assert report.blocks["w"].verdict == "pass"
