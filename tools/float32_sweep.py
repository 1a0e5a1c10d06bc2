"""Verdicts over check seeds on the float32 models of the verdicts issue, correct and buggy.

    python tools/float32_sweep.py [SEEDS]        # default 30

Prints, per model and planted bug, how many seeds gave each verdict, and each block's.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import models32

import gradcheck

CASES = [
    ("gelu", models32.gelu_layer, [None, "W", "W2x", "x-entry"]),
    ("mlp", models32.tanh_mlp, [None, "W1", "W1-2x", "W1-entry"]),
    ("rnn", models32.rnn, [None, "Wx"]),
]


def main(seeds: int) -> None:
    for name, make, bugs in CASES:
        for bug in bugs:
            f, params, grads = make(0, bug)
            verdicts, blocks = collections.Counter(), collections.Counter()
            for s in range(seeds):
                r = gradcheck.check(f, params, grads, seed=s)
                verdicts[r.verdict] += 1
                blocks.update((n, b.verdict) for n, b in r.blocks.items())
            print(f"{name:5s} {bug!s:9s} {dict(verdicts)}  {sorted(blocks.items())}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
