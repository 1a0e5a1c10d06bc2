"""Options: the one validator of a check's keyword arguments, and the frozen record it gives.

``check``, ``Monitor``, the command line and the pytest plugin all build their options here,
so a value is refused with the same message wherever it comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from numbers import Integral, Real
from typing import Any

import numpy as np

from ._plan import METHODS

ENGINES = ("auto", "python", "numba", "batched", "dask")
EVALUATE = ("auto", "float64", "native")


@dataclass(frozen=True)
class Options:
    """A check's options, validated; see :func:`gradcheck.check` for each."""

    eps: float | None = None
    method: str = "central"
    seed: int | None = None
    engine: str = "auto"
    batched: bool = False
    tol: tuple[float, float] | None = None  # (pass, fail); None: the dtype's defaults
    sample: int | float | None = None
    directions: int | None = None
    localize: int = 8
    budget: float | None = None
    client: Any = None
    progress: bool | None = None
    noise: bool = True
    evaluate: str = "auto"  # float32 parameters: "auto", "float64" or "native"
    workers: int | None = None  # threads for the python engine; None: every core if it pays


NAMES = frozenset(f.name for f in fields(Options))


def validate(**given: Any) -> Options:
    """Check each option and return them as :class:`Options`; unknown names are refused.

    Raises
    ------
    TypeError
        An unknown option, or ``batched``/``progress``/``noise`` of the wrong type.
    ValueError
        Any other bad value; the message names the option and shows the value.
    """
    unknown = sorted(set(given) - NAMES)
    if unknown:
        from ._habits import refuse_unknown

        refuse_unknown({k: given[k] for k in unknown}, sorted(NAMES))
    o = Options(**given)
    _method_and_engine(o)
    _positive("eps", o.eps)
    _positive("budget", o.budget, what="a positive number of seconds")
    _integer("seed", o.seed, low=0, optional=True)
    if o.directions is not None and (
        isinstance(o.directions, bool) or not isinstance(o.directions, Integral) or o.directions < 1
    ):
        raise ValueError(f"`directions` must be a positive integer or None, got {o.directions!r}")
    _integer("localize", o.localize, low=0)
    if o.workers is not None and (
        isinstance(o.workers, bool) or not isinstance(o.workers, Integral) or o.workers < 1
    ):
        raise ValueError(
            f"`workers` must be a positive integer (1: serial) or None (every core when the "
            f"check is long enough), got {o.workers!r}"
        )
    _sample(o.sample)
    if o.progress is not None and not isinstance(o.progress, bool):
        raise TypeError(f"`progress` must be True, False or None, got {o.progress!r}")
    if o.evaluate not in EVALUATE:
        raise ValueError(f"`evaluate` must be one of {EVALUATE}, got {o.evaluate!r}")
    if not isinstance(o.noise, bool):
        raise TypeError(f"`noise` must be True or False, got {o.noise!r}")
    seed = None if o.seed is None else int(o.seed)
    workers = None if o.workers is None else int(o.workers)
    return replace(o, seed=seed, tol=_tol(o.tol), workers=workers)


def _method_and_engine(o: Options) -> None:
    if o.method not in METHODS:
        raise ValueError(f"`method` must be one of {sorted(METHODS)}, got {o.method!r}")
    if o.engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {ENGINES}, got {o.engine!r}")
    if not isinstance(o.batched, bool):
        raise TypeError(f"`batched` must be True or False, got {o.batched!r}")
    if o.engine == "batched" and not o.batched:
        raise ValueError("engine='batched' needs batched=True: `f` must take a stack of vectors")
    if o.method == "complex" and (o.batched or o.engine not in ("auto", "python")):
        raise ValueError(
            "method='complex' runs in the python engine (f evaluated at complex points), "
            f"not engine={o.engine!r}{' with batched=True' if o.batched else ''}"
        )
    if o.batched and o.engine not in ("auto", "batched"):
        raise ValueError(f"batched=True runs in the batched engine, not engine={o.engine!r}")


def _positive(name: str, value: Any, what: str = "a positive finite number or None") -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < math.inf:
        raise ValueError(f"`{name}` must be {what}, got {value!r}")


def _integer(name: str, value: Any, *, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        if name == "seed":
            raise ValueError(f"`seed` must be a non-negative integer or None, got {value!r}")
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}")


def _sample(sample: Any) -> None:
    if sample is None:
        return
    is_int = isinstance(sample, Integral) and not isinstance(sample, bool)
    is_frac = isinstance(sample, float) and 0 < sample <= 1
    if not (is_int and sample > 0) and not is_frac:
        raise ValueError(
            "`sample` must be a positive int, a float in (0, 1] or None, "
            f"got {sample!r} (an int: how many coordinates; a float: what fraction)"
        )


def _tol(tol: Any) -> tuple[float, float] | None:
    """``tol`` as a (pass, fail) pair, or None for the dtype's defaults."""
    if tol is None:
        return None
    pair = tol if isinstance(tol, tuple) else (tol, tol)
    ok = len(pair) == 2 and all(
        isinstance(t, Real) and not isinstance(t, bool) and 0 < t < np.inf for t in pair
    )
    if not ok or pair[0] > pair[1]:
        raise ValueError(
            f"`tol` must be a positive number or a (pass, fail) pair with pass <= fail, got {tol!r}"
        )
    return (float(pair[0]), float(pair[1]))


def parse_seed(text: str) -> int:
    """A seed written as text (the command line, an ini file): a non-negative integer.

    Raises ``ValueError`` with the message the callers show.
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"must be a non-negative integer, got {text!r}")
    return value
