"""The verdict rules, asked of the judge directly."""

import numpy as np
import pytest

from gradcheck import _policy
from gradcheck._judge import Judge
from gradcheck._results import BlockResult, Note, Verdict

F64 = np.dtype(np.float64)


def _block(verdict):
    return BlockResult(
        name="W",
        shape=(1,),
        size=1,
        checked=1,
        difference=0.0,
        verdict=verdict,
        norm_analytic=1.0,
        norm_numeric=1.0,
        norm_error=0.0,
        max_abs_error=0.0,
        max_abs_error_at=None,
        nonfinite=(),
        tol=(1e-7, 1e-5),
    )


def test_the_allowance_is_a_relative_tolerance_plus_the_noise():
    judge = Judge.build(F64, "central", None, noise_f=1e-16)
    a, b, fd = np.array([2.0, -1.0]), np.array([1.0, 1.0]), np.array([1e-9, 0.0])
    want = _policy.RTOL[F64] * (np.abs(a) + np.abs(b)) + _policy.NOISE * fd
    np.testing.assert_array_equal(judge.allowance(a, b, fd), want)
    scores = judge.scores(a, b, fd)
    np.testing.assert_array_equal(scores, np.abs(a - b) / want)
    assert judge.scores(np.array([np.nan]), np.array([1.0]), np.array([0.0]))[0] == np.inf
    assert judge.scores(np.array([0.0]), np.array([0.0]), np.array([0.0]))[0] == 0.0


def test_fixed_thresholds_are_shown_as_given_and_adaptive_ones_rise_with_the_noise():
    fixed = Judge.build(F64, "central", (0.5, 2.0), noise_f=1.0)
    assert fixed.block(0.7, 100.0, 1.0, 1.0) == (Verdict.WARN, (0.5, 2.0))
    adaptive = Judge.build(F64, "central", None, noise_f=1.0)
    tol = _policy.THRESHOLDS[F64]
    e_pred = 1e-4  # the noise bound 2e-4 over the norms' sum 2
    verdict, shown = adaptive.block(1e-6, 2e-4, 1.0, 1.0)
    assert shown == (max(tol[0], _policy.ADAPT_PASS * e_pred), _policy.RESOLVE * e_pred)
    assert verdict == Verdict.PASS
    # NaN fails, whatever the thresholds.
    assert adaptive.block(np.nan, 0.0, 1.0, 1.0)[0] == Verdict.FAIL


def test_the_complex_steps_directions_are_held_to_real_thresholds():
    judge = Judge.build(F64, "complex", None, noise_f=0.0)
    assert judge.tol == _policy.COMPLEX_THRESHOLDS[F64]
    assert judge.for_directions("complex").tol == _policy.THRESHOLDS[F64]
    user = Judge.build(F64, "complex", (1e-3, 1e-2), noise_f=0.0)
    assert user.for_directions("complex").tol == (1e-3, 1e-2)


def test_a_directional_pair_fails_beyond_twice_the_noise():
    judge = Judge.build(F64, "central", None, noise_f=1e-3)
    assert not judge.disagrees(1.0, 1.0 + 1e-3)  # within 2 * noise_f
    assert judge.disagrees(1.0, 2.0)


@pytest.mark.parametrize(
    ("coordinates", "directions", "want"),
    [
        ("untested", "fail", "fail"),
        ("pass", "untested", "pass"),
        ("warn", "pass", "warn"),
        ("untested", "untested", "pass"),
    ],
)
def test_a_blocks_verdict_is_the_worse_of_what_looked_at_it(coordinates, directions, want):
    assert Judge.combined(Verdict(coordinates), Verdict(directions)) == want


def test_the_final_verdict_is_the_worst_block_lifted_by_a_notes_floor():
    blocks = [_block("pass"), _block("warn")]
    assert Judge.final(blocks, ()) == Verdict.WARN
    floor = Note("f is not deterministic", floor=Verdict.INCONCLUSIVE)
    assert Judge.final(blocks, (floor,)) == Verdict.INCONCLUSIVE
    assert Judge.final([*blocks, _block("fail")], (floor,)) == Verdict.FAIL
