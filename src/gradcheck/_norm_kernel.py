"""The norm kernel: (||a||, ||b||, ||a - b||) per segment in one pass, overflow-safe.

It is plain Python over indexable inputs, with no numba import: ``_compare`` runs it as it is
on small inputs (no compile, and the same IEEE arithmetic gives the same bits) and through
``_jit.compiled`` on large ones.
"""

from __future__ import annotations

import math

# Blue's thresholds and power-of-two scale factors for binary64 (Anderson, ACM TOMS 44(1),
# Algorithm 978, with the constants as corrected in Reference-LAPACK PR #559): squares of
# values in [TSML, TBIG] neither overflow nor underflow; others are scaled exactly.
TSML = 2.0**-511
TBIG = 2.0**486
SSML = 2.0**537
SBIG = 2.0**-538
# A chunk's plain sums of squares are trusted when they land in [FAST_LO, FAST_HI]: at most
# CHUNK squares below TSML**2 can have underflowed, 2**-50 of FAST_LO, and FAST_HI = TBIG**2
# keeps Blue's middle accumulator from overflowing however many chunks are added.
CHUNK = 4096
FAST_LO = 2.0**-960
FAST_HI = 2.0**972


def segment_norms(a, b, offsets, out):
    """out[s] = (||a||, ||b||, ||a - b||) over a[offsets[s]:offsets[s + 1]].

    Squares are written ``x * x``, never ``x ** 2``: Python's ``**`` calls C ``pow``, which
    may round differently from the multiplication numba emits.

    Plain float64 sums of squares per chunk of CHUNK elements; a chunk whose sums leave the
    safe range (huge, tiny, zero, inf or NaN entries) is summed again with Blue's three
    scaled accumulators. ``out`` is a float64 array of shape (len(offsets) - 1, 3).
    """
    # acc[r] = (small, medium, big) accumulators of a (r=0), b (r=1) and a - b (r=2).
    acc = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    for s in range(len(offsets) - 1):
        for r in range(3):
            acc[r][0] = 0.0
            acc[r][1] = 0.0
            acc[r][2] = 0.0
        lo = offsets[s]
        hi = offsets[s + 1]
        for c0 in range(lo, hi, CHUNK):
            c1 = min(c0 + CHUNK, hi)
            sa = 0.0
            sb = 0.0
            sd = 0.0
            for i in range(c0, c1):
                x = a[i]
                y = b[i]
                t = x - y
                sa += x * x
                sb += y * y
                sd += t * t
            # sd must clear FAST_LO as well: squares of differences below ~1e-154 underflow
            # even when the entries themselves are ordinary.
            if FAST_LO <= sa <= FAST_HI and FAST_LO <= sb <= FAST_HI and FAST_LO <= sd <= FAST_HI:
                acc[0][1] += sa
                acc[1][1] += sb
                acc[2][1] += sd
                continue
            # Exact zeros add nothing to any accumulator, and a sparse gradient (rows of an
            # embedding no example uses) has chunks of nothing else: skip those (the loop
            # stops at the first entry that is not zero, NaN included).
            zeros = sa == 0.0 and sb == 0.0
            i = c0
            while zeros and i < c1:
                zeros = a[i] == 0.0 and b[i] == 0.0
                i += 1
            if zeros:
                continue
            for i in range(c0, c1):
                for r in range(3):
                    v = a[i] if r == 0 else (b[i] if r == 1 else a[i] - b[i])
                    av = abs(v)
                    if av > TBIG:
                        scaled = av * SBIG
                        acc[r][2] += scaled * scaled
                    elif av < TSML:
                        if acc[r][2] == 0.0:
                            scaled = av * SSML
                            acc[r][0] += scaled * scaled
                    else:
                        # NaN lands here too and propagates through the medium sum.
                        acc[r][1] += av * av
        for r in range(3):
            asml = acc[r][0]
            amed = acc[r][1]
            abig = acc[r][2]
            if amed != amed:
                norm = amed
            elif abig > 0.0:
                norm = math.sqrt(abig + (amed * SBIG) * SBIG) / SBIG
            elif asml > 0.0:
                ys = math.sqrt(asml) / SSML
                norm = ys
                if amed > 0.0:
                    ym = math.sqrt(amed)
                    big = max(ym, ys)
                    small = min(ym, ys)
                    ratio = small / big
                    norm = big * math.sqrt(1.0 + ratio * ratio)
            else:
                norm = math.sqrt(amed)
            out[s, r] = norm
