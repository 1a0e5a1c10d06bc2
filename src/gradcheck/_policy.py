"""The numerical policy: every threshold and rule constant of the verdicts, in one place.

Each constant says why it has its value; the passes read them from here (as
``_policy.NAME``, at call time, so a test can change one and see the rule move). See
``shared/reference/numerics.md`` for the sources.
"""

from __future__ import annotations

import numpy as np

F64, F32 = np.dtype(np.float64), np.dtype(np.float32)

# ------------------------------------------------------------------ verdict thresholds
# (pass at or below, fail above) for the relative difference, by the coarser of the
# parameter and loss dtypes; between the two the verdict is "warn".
THRESHOLDS = {F64: (1e-7, 1e-5), F32: (1e-3, 1e-2)}
# A float32 gradient against differences of f evaluated on float64 copies ("auto", f
# following its input's dtype): the differences are float64-accurate, so what is left of a
# correct block's difference is the gradient's own float32 rounding, about sqrt(n) units
# (6e-8 each) for sums of n terms, 6e-5 for a million. A 0.5% error in every entry makes
# 2.5e-3 and a 1% one 5e-3: float32's own (1e-3, 1e-2) would let both through as "warn".
WIDENED_THRESHOLDS = (1e-4, 1e-3)
# The complex step subtracts nothing, so it is held to far tighter thresholds.
COMPLEX_THRESHOLDS = {F64: (1e-10, 1e-8), F32: (1e-5, 1e-3)}
# Default thresholds rise to what the arithmetic can resolve: the pass threshold to
# ADAPT_PASS and the fail threshold to RESOLVE times e_pred, the relative difference that
# rounding noise in f alone could produce. A sum of a million terms rounds a million
# times: its finite differences cannot reach 1e-7.
ADAPT_PASS = 10.0
RESOLVE = 100.0
# When RESOLVE * e_pred exceeds COARSEST, the difference a 5% error in every entry makes
# (0.05 / 2.05), such an error could pass: a block that does not fail is "inconclusive".
COARSEST = 0.05 / 2.05

# ------------------------------------------------------------------ entries
# Per-entry score: |a - b| / (RTOL * (|a| + |b|) + NOISE * (noise of f) * sensitivity);
# above 1 an entry disagrees. RTOL is the relative agreement a correct entry reaches at the
# default step; NOISE the margin over the modelled noise (a model, not a bound).
RTOL = {F64: 1e-5, F32: 1e-3}
NOISE = 10.0
# A block whose entries all lie below what the differences resolve (a derivative 0 by
# symmetry: 1e-15 against 1e-10) agrees when that resolution is under this fraction of the
# largest resolved entries of the check: next to them its values are zero, and a bug
# larger than the resolution would have shown. Where nothing is resolved, noise drowns the
# gradient and the block stays unjudged.
ZERO_AGAINST = 1e-3
# A failing block is wrong throughout, and described as a block rather than by its worst
# entry, when at least this fraction of its checked entries disagree: a missing term or a
# wrong formula moves most entries; a typo in one index moves one.
WIDESPREAD = 0.5
# How many of the worst entries a report keeps.
WORST = 10

# ------------------------------------------------------------------ kinks (refine)
# Smaller steps at which a disagreeing entry is evaluated again, as fractions of the first.
SHRINK = (0.1, 0.01)
# The worst this many disagreeing entries of a block are looked at first (4 evaluations
# each); the rest only if every one of them was a kink: one bug already fails the block.
PER_BLOCK = 64
# A smaller step decides only while the noise it amplifies stays below this fraction of
# the first error, and "agrees at a smaller step" asks the error to fall to this fraction:
# an entry just over the tolerance whose error stays put is a small bug, not a kink.
KINK_TENFOLD = 0.1
# "At a kink": at the first smaller step the one-sided slopes must still differ by at least
# KINK_GAP of their gap at the full step (a jump keeps its size; the f'' h of a smooth f
# shrinks tenfold) and by KINK_SLACK times the slack allowed for rounding.
KINK_GAP = 0.5
KINK_SLACK = 10.0
# An entry that agrees at a smaller step is the truncation error of a curved f, not a
# kink, when its error fell at least this much at a tenth of the step: h^2 predicts 100,
# a kink the step still crosses keeps its error (the slack allows for rounding).
TRUNCATION_FALL = 30.0
# The step is too large for a disagreeing entry (truncation dominates) when its finite
# difference moves at a tenth of the step by more than ENTRY_FAIL times what two values
# may differ by, and then by TRUNCATION_SETTLES times less at a hundredth: it converges
# towards another value, which the difference at a sound step does not do (it moves by
# about h^2 times the third derivative over 6), whatever the analytic side. h^2 predicts
# a hundredfold; a step of 10 on sin, far from that regime, shows ~6.
TRUNCATION_SETTLES = 3.0
# An entry whose score (its |error| over what its noise and RTOL allow) exceeds this, and
# that is no kink, is wrong: it fails its block however little it moves the block's norm
# (one wrong entry among 200 moves it by ~1/400 of the entry's error).
ENTRY_FAIL = 10.0

# ------------------------------------------------------------------ noise of f
# f(params) repeated may move by this many times its rounding u |f0| before the check calls
# f nondeterministic; below, the spread is noise like any other (the thresholds follow it).
NONDETERMINISTIC = 100.0
# ECnoise: points on the line (the middle one is params itself), attempts at a usable
# spacing, the first spacing per dtype (relative to max |x|), and the factor a spacing moves
# by between attempts, which is also the ratio of the confirming finer line: noise keeps its
# level at a spacing this much smaller, a kink or an unresolved trend does not.
NOISE_POINTS = 9
NOISE_ATTEMPTS = 3
NOISE_FIRST_SPACING = {F64: 1e-9, F32: 1e-3}
NOISE_RESPACE = 100.0
# The table's levels count as noise when three in a row agree within this factor...
ECNOISE_AGREE = 4.0
# ... and a line along which f moves by more than this fraction of |f| is not noise,
# unless f changes sign on it (``_noise.crosses_zero``): f ~ 0 where the terms of a sum
# cancel (sum(x**3) at points symmetric about 0), and no line is flat against it, while
# its rounding is set by the terms (~1e-15, not u |f0| ~ 1e-29). The rule left the probe
# without a reading there, and a correct gradient failed.
ECNOISE_FLAT = 0.1
# The probe's line spans at most this many entries (the first of the blocks in scope):
# enough for f's noise to show, few enough that writing the points costs nothing next to f.
NOISE_SPAN = 4096
# The probe's cost at most, in evaluations: the repeats and every line it may draw.
NOISE_MOST = 2 + (NOISE_POINTS - 1) * (NOISE_ATTEMPTS + 1)

# ------------------------------------------------------------------ parallel evaluation
# Values of f from worker threads count only where a serial evaluation gives them again to
# this many units in the last place of the larger of the two: a pure f on its own copy of
# theta, with BLAS on one thread in both, gives the same bits, while an f that shares state
# between calls (model.params = p; model.loss(X, y)) mixes up the perturbations and is off
# by the step times a derivative, ~1e-6 relative at least. The slack covers kernels that
# sum in an order of their own (a framework's threaded reductions).
REPRODUCE_ULPS = 64
# Besides every entry that disagrees (up to PER_BLOCK per block, those the kink pass would
# examine), this many of the worst-scoring entries of a parallel run are evaluated again
# serially, so that a passing check too has seen its parallel values reproduced.
REPRODUCE_MOST = 16

# ------------------------------------------------------------------ steps
# A user's step divides by its nominal width wherever the stored values span it to this
# relative accuracy (float64 near |x| ~ 1 is ~1e-9 off), else by the width actually taken.
NOMINAL_WIDTH = 1e-8
# The complex step takes no difference, so it can be tiny: small enough that h^2 terms
# vanish, large enough that the imaginary parts stay clear of underflow.
COMPLEX_STEP = {F64: 1e-20, F32: 1e-10}
# Complex-safety self-test: a complex-safe f gives the same Im f / h (to this rtol) at a
# step this many times smaller, on this many of the largest entries.
COMPLEX_SELF_TEST = (1e-3, 1e-6, 3)

# ------------------------------------------------------------------ sampling
# Each block (or pool of small blocks) gets at least this many sampled coordinates when the
# total allows: one coordinate misses a bug touching 1% of a block 99 times in 100, four
# already shrink that to 0.96 and leave the rest of the total to share by need.
SAMPLE_FLOOR = 4
# Blocks of up to this many entries (biases) are sampled whole while that takes at most half
# of what the floors left: a bias costs little, and a wrong entry in it is found for sure.
WHOLE_BLOCK = 32
# A budget that left a block so thinly checked that a bug in BUDGET_FRACTION of its entries
# would have gone unseen with probability above BUDGET_MISS (BlockResult.miss_probability)
# cannot call it a pass: the check is "inconclusive" and says what it could have missed.
# 1% of a block wrong is the smallest bug a user asks a spot check to see; above even odds
# of missing it, the check did not look.
BUDGET_FRACTION = 0.01
BUDGET_MISS = 0.5

# ------------------------------------------------------------------ what a check could miss
# The smallest errors a block's check would have caught (BlockResult.reach) are bounds from
# the judge's own rules; they are stated this much above the bound, so that an error of
# exactly the stated size fails the block through the rounding of the comparison too.
REACH_MARGIN = 1.01
# "A fraction of the entries wrong": each off by this much of its own value. 1% is the
# smallest error a user asks a check to see in a spot check, and it is far above what a
# float64 entry's own allowance (~1e-4 relative) lets through.
REACH_ERROR = 0.01
# ... caught with at least this probability: the smallest such fraction is reported. One
# miss in twenty is what a user can live with in a check run every few hundred steps.
REACH_PROBABILITY = 0.95
# Random directions weigh entries by max(1, |x_i|): the chance they miss a few wrong
# entries is averaged over this many evenly ranked weights of the block (a bug in this
# many entries or more is taken at their root mean square, which a sum of that many
# weights is near).
REACH_QUANTILES = 16
# ... read from at most about this many evenly strided entries of the block.
REACH_SPREAD_SAMPLE = 4096
# A green check's time left under a budget goes to more directions per block, up to this
# many in all: past it, a block's figures barely move (the chance to miss a fraction falls
# like a power of k of an already small number) while each round costs 2 evaluations a block.
MORE_DIRECTIONS = 32

# ------------------------------------------------------------------ diagnosis
# "A wrong factor" only when one factor explains the gradient to FACTOR_RESIDUAL of |grad|
# and differs from 1 by more than FACTOR_MIN; "sign flipped" within SIGN_TOL of -1;
# "transposed" when the transpose matches to TRANSPOSE_TOL.
FACTOR_RESIDUAL = 0.05
FACTOR_MIN = 0.01
# ... and leaves at most this fraction of the error itself unexplained.
FACTOR_EXPLAINS = 0.25
SIGN_TOL = 0.05
# "An added multiple of the parameter" (a regularisation term left out or added) when the
# best multiple c x of the parameter leaves at most this fraction of the error unexplained:
# a left-out c x leaves only the differences' own error.
MULTIPLE_EXPLAINS = 0.05
TRANSPOSE_TOL = 0.05

# ------------------------------------------------------------------ Taylor test
# The remainder |f(x + h d) - f(x) - h <g, d>| of a right gradient falls like h^2 and of a
# wrong one like h; its observed rate needs no threshold on the remainder itself.
# The sweep's first step (d is scaled entrywise by max(1, |x|), so h is relative), the
# factor between steps (halving: pyadjoint's), and the most steps a sweep takes.
TAYLOR_FIRST_STEP = 0.5
TAYLOR_RATIO = 2.0
TAYLOR_MOST_STEPS = 60
# A remainder counts as above rounding when it exceeds this many units of the rounding of
# the two values of f it subtracts: 100 units leave it at most ~1% of rounding, which moves
# a rate between halved steps by ~0.03.
TAYLOR_FLOOR = 100.0
# The sweep stops after this many steps in a row at or below rounding: smaller steps only
# sink deeper into it.
TAYLOR_STOP_AFTER = 3
# A converging range: this many consecutive rates (between halved steps) that agree within
# TAYLOR_RATE_BAND of each other and fall at least TAYLOR_RATE_LEAST (a remainder that does
# not fall is rounding, not truncation). Three rates span eight-fold in h.
TAYLOR_WINDOW = 3
TAYLOR_RATE_BAND = 0.2
TAYLOR_RATE_LEAST = 0.5
# A range's rate within this of the expected order (2; 3 with an hvp) passes; within it of
# one less fails (the derivative is wrong along the direction); anything else is
# inconclusive.
TAYLOR_VERDICT_BAND = 0.3
# A rate-1 remainder is a kink, not a wrong gradient, when the even part
# |f(x + h d) + f(x - h d) - 2 f(x)| / 2 (which a smooth f makes O(h^2)) also falls like h
# (its rate below 2 - this) and is at least this share of the remainder.
TAYLOR_KINK_RATE = 0.5
TAYLOR_KINK_SHARE = 0.25
# The signed remainders the noise probe reads (ECnoise) are shifted by this many times their
# size: enough for ECnoise's flatness rule, and the shift's own float64 rounding stays far
# below them.
TAYLOR_NOISE_SHIFT = 100.0
# ------------------------------------------------------------------ low precision (compare)
# A kernel in bf16 / fp16 / float32 is judged against what the framework's own ops reach in
# the same dtype (the reference run in it), not against finite differences, which cannot
# resolve anything at bf16. The kernel's relative RMS error may be this many times the
# baseline's: the public practice of fused-kernel suites (flash-attention's: 2x for
# outputs, 2-3x for gradients).
COMPARE_FACTOR = {"output": 2.0, "gradient": 3.0}
# Each RMS error is estimated from the result's n entries: for errors like normal noise
# its relative spread is 1 / sqrt(2 n), so the log of the ratio of two equally accurate
# results spreads by 1 / sqrt(n). The factor is widened to factor * exp(RATIO_Z / sqrt(n)):
# 1.03x at 8,192 entries, 2.1x at 16, where torch's own bf16 attention (1x1x4x4) reached a
# ratio of 3.7 against the plain reference in bf16 on one seed of six.
RATIO_Z = 3.0
# No result stored in a dtype beats the truth rounded to it, so the baseline's error counts
# as at least that; and as at least this many units of roundoff, so that a reference that is
# exactly right (a copy, a max, values the dtype holds exactly) leaves the kernel a few
# roundings of slack instead of a ratio of infinity.
EXACT_FLOOR = 0.25
# Systematic error: the slope <g_k, g_t> / <g_t, g_t> - 1 of the kernel's result on the
# truth. Rounding error scatters around the truth; a bug (a wrong factor, a sum that loses
# its small terms) leans along it, and the ratio rule lets a 2% scale error through (a
# ratio of 2.7 on a bf16 softmax). The kernel's slope may be SLOPE_FACTOR times the
# baseline's own (or the baseline's spread, when its slope is near 0 by chance) plus
# SLOPE_Z times its own spread. The spread comes from the data: errors of fused kernels are
# correlated along the reduced (last) axis, each row sharing its sums, so it is estimated
# from the scatter of the rows' slopes, and is at least what independent entries give,
# error / sqrt(entries). Measured on bf16 softmax and layer norm (8 shapes from 1x16 to
# 8x4x64x64, 6 seeds, two bf16 formulations judged against each other): a correct
# formulation reached 2.7 spreads beyond SLOPE_FACTOR times the other's, a 2% scale error
# is 10 or more.
SLOPE_FACTOR = 3.0
SLOPE_Z = 4.0
# Dependence: each input is moved (multiplied by 1 + DEPEND_MOVE * u, u uniform in
# [-1, 1], so signs and zeros stay) and the kernel is run again. A result whose truth moves
# by more than DEPEND_RESOLVE times the kernel's error there, while the kernel's moves by
# less than DEPEND_FRACTION of the truth's move, does not depend on that input.
DEPEND_MOVE = 0.5
DEPEND_RESOLVE = 10.0
DEPEND_FRACTION = 0.1
# The reference's own float64 gradient is checked by finite differences coordinate by
# coordinate up to this many inputs' entries; beyond, along REFERENCE_DIRECTIONS random
# directions per input (2 evaluations each, whatever its size, and a search that names the
# wrong entries when one fails): a wrong formula shows along any direction. Measured on
# attention (3 inputs of 2x4x128x64, float64, one thread): 1.0 s along 4 directions, 4.9 s
# for a sample of 256 coordinates.
REFERENCE_ENTRIES = 256
REFERENCE_DIRECTIONS = 4
# Non-finite entries named in a note, at most.
NONFINITE_SHOWN = 5
