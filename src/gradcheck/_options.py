"""Options: the one validator of a check's keyword arguments, and the frozen record it gives.

``check``, ``Monitor``, the command line, the pytest plugin and the framework adapters all
validate here: :func:`validate` for a check's options, and the small rules it is made of
(:func:`is_integer`, :func:`is_real`, :func:`integer`, :func:`positive`, :func:`seed`,
:func:`sample`, :func:`tol`, :func:`parse_seed`) for their own, so a value is refused with the same
message wherever it comes from.
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
    control: bool = False  # plant errors of the reported size in a copy of the gradient


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
    positive("eps", o.eps)
    positive("budget", o.budget, what="a positive number of seconds")
    seed(o.seed)
    integer("directions", o.directions, what="a positive integer or None", optional=True)
    integer("localize", o.localize, low=0, what="an integer >= 0")
    workers = "a positive integer (1: serial) or None (every core when the check is long enough)"
    integer("workers", o.workers, what=workers, optional=True)
    sample(o.sample)
    if o.progress is not None and not isinstance(o.progress, bool):
        raise TypeError(f"`progress` must be True, False or None, got {o.progress!r}")
    if o.evaluate not in EVALUATE:
        raise ValueError(f"`evaluate` must be one of {EVALUATE}, got {o.evaluate!r}")
    if not isinstance(o.noise, bool):
        raise TypeError(f"`noise` must be True or False, got {o.noise!r}")
    if not isinstance(o.control, bool):
        raise TypeError(f"`control` must be True or False, got {o.control!r}")
    return replace(
        o,
        seed=None if o.seed is None else int(o.seed),
        tol=tol(o.tol),
        workers=None if o.workers is None else int(o.workers),
    )


def keywords(options: Options) -> dict[str, Any]:
    """``options`` as the keyword arguments of :func:`gradcheck.check` (no deep copy: a
    client is passed on as it is).
    """
    return {f.name: getattr(options, f.name) for f in fields(options)}


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


def is_integer(value: Any) -> bool:
    """The number rule for integers: an ``Integral`` (numpy's too), and not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """The number rule for reals: a ``Real`` (an integer too), and not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def integer(
    name: str,
    value: Any,
    *,
    low: int = 1,
    what: str = "a positive integer",
    optional: bool = False,
) -> int | None:
    """``value`` as an int of at least ``low`` (None passes when ``optional``).

    Raises ``ValueError``: "`name` must be <what>, got <value>".
    """
    if value is None and optional:
        return None
    if not is_integer(value) or value < low:
        raise ValueError(f"`{name}` must be {what}, got {value!r}")
    return int(value)


def positive(name: str, value: Any, what: str = "a positive finite number or None") -> float | None:
    """``value`` as a positive finite float, or None. Raises ``ValueError`` naming ``what``."""
    if value is None:
        return None
    if not is_real(value) or not 0 < value < math.inf:
        raise ValueError(f"`{name}` must be {what}, got {value!r}")
    return float(value)


def seed(value: Any) -> int | None:
    """A seed: a non-negative integer, or None (one is drawn)."""
    return integer("seed", value, low=0, what="a non-negative integer or None", optional=True)


def sample(value: Any) -> int | float | None:
    """``sample=``: how many coordinates (a positive int), what fraction (a float in
    (0, 1]), or None.
    """
    if value is None:
        return None
    if not (is_integer(value) and value > 0) and not (isinstance(value, float) and 0 < value <= 1):
        raise ValueError(
            "`sample` must be a positive int, a float in (0, 1] or None, "
            f"got {value!r} (an int: how many coordinates; a float: what fraction)"
        )
    return value


def tol(value: Any) -> tuple[float, float] | None:
    """``tol`` as a (pass, fail) pair, or None for the dtype's defaults."""
    if value is None:
        return None
    pair = value if isinstance(value, tuple) else (value, value)
    ok = len(pair) == 2 and all(is_real(t) and 0 < t < np.inf for t in pair)
    if not ok or pair[0] > pair[1]:
        raise ValueError(
            "`tol` must be a positive number or a (pass, fail) pair with pass <= fail, "
            f"got {value!r}"
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
