"""One projection pipeline: a function's vector-Jacobian product checked through scalar
projections, written once over thin backends (numpy in ``_vjp``, torch in ``_torch_backend``,
jax in ``_jax_backend``).

For a fixed cotangent ``c`` the projection ``x -> <c, f(x)>`` is an ordinary scalar loss
whose gradient is ``J(x)^T c``, so :func:`gradcheck.check` tests it unchanged. A wrong
rule differs from ``J^T`` by a nonzero ``E``; a Gaussian ``c`` makes ``E c = 0`` with
probability zero, so one random projection finds any error; more make a small one less
likely to be drawn weak.

The steps, in :func:`check`::

    trace -> cotangents -> analytic and numeric sides -> vmap or loop -> check -> worst

A backend does what only its framework can: the first call (:meth:`Backend.trace`), a
given cotangent validated, the two sides of one projection, the cotangent as the report
records it. A new derivative check that reduces to projections plugs in as a backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, TypeVar

import numpy as np

from . import _check, _options
from ._report import Report
from ._results import Verdict

# The cotangents come from a stream of their own, keyed off the check's seed: gradcheck.check
# spawns its streams (noise, sample, directions) as children 0, 1, 2 of SeedSequence(seed),
# so this key, far from those, keeps the cotangent independent of what they draw.
COTANGENT_STREAM = 0x636F74  # "cot"
# Memory for one vmapped call: the perturbed rows and their outputs, with room for the
# intermediates (four outputs' worth) of a typical layer. Larger stacks are split.
VMAP_BYTES = 64 << 20
# The vmapped and the looped value of f at the inputs may differ by the rounding of a
# differently ordered sum; beyond this many units of the projection's scale, vmap computed
# something else (random ops, state, data-dependent code) and the loop is used.
VMAP_AGREE_ULPS = 1000.0


@dataclass(frozen=True, repr=False)  # Report's one-line repr, not every field
class ProjectedReport(Report):
    """A :class:`Report` of a check through the projection ``<cotangent, f(x)>``.

    Attributes
    ----------
    cotangent : array, structure of arrays, or None
        The cotangent the reported check projected on, as numpy arrays in the structure of
        the function's output; pass it back as ``cotangent=`` (or the same ``seed=``) to
        replay the check. None when a user ``loss`` made the output scalar.
    projections : int
        How many projections were checked; the report is the worst of them.
    """

    cotangent: Any = None
    projections: int = 1


@dataclass(frozen=True)
class Run:
    """The settings of one projection check, validated once and carried to every
    projection.

    ``options`` are the check's, validated (with the seed); ``batched`` is None (try vmap),
    True (require it) or False (never); ``wide``: the function runs on float64 copies;
    ``loss``: a user loss makes the output scalar (no cotangents); ``widen``: the numeric
    side alone may run on float64 copies of float32 inputs, where the function follows
    their dtype ("auto").
    """

    started: float
    cotangent: Any
    projections: int
    seed: int
    batched: bool | None
    wide: bool
    options: _options.Options
    loss: Callable[[Any], Any] | None = None
    widen: bool = False

    @property
    def drawn(self) -> bool:
        # The report says the cotangent came from the seed only when it did.
        return self.cotangent is None and self.loss is None


@dataclass(frozen=True)
class Traced:
    """What the first call tells every projection; a backend extends it with its own."""

    params: Any  # the point gradcheck.check differences at (numpy arrays)
    shapes: list[tuple[int, ...]]  # the projected outputs' shapes: the cotangents'


@dataclass(frozen=True)
class Refusal:
    """Why vmap is not used: the end of the error under ``batched=True`` ("batched=True, but
    ..."), the end of the report's note otherwise ("evaluated point by point: ..."), and
    the exception to chain to the error, if any.
    """

    error: str
    note: str
    cause: BaseException | None = None


@dataclass(frozen=True)
class Vmap:
    """A framework's vmap of the projection: ``call`` takes numpy stacks of points (a dict
    of arrays with a leading row axis) and returns their values; at most ``rows`` rows a
    call, ``pad(part)`` may lengthen a chunk (its extra rows' values are dropped);
    ``refusal(exc, got, want)`` words why it is not used.
    """

    call: Callable[[dict], np.ndarray]
    rows: int
    refusal: Callable[[BaseException | None, Any, Any], Refusal]
    pad: Callable[[dict], dict] | None = None


@dataclass(frozen=True)
class Sides:
    """The two sides of one projection.

    ``analytic``: the gradient under test, arrays by block (or ``grad(x)``); ``f``: the
    projection at one point, numpy in and a ``loss_dtype`` scalar out, which
    :func:`gradcheck.check` differences; ``scale``: ``sum |y| |c|``, the size of the
    projection's terms, which bounds how far a vmapped value may stray; ``vmap``: the
    batched projection where the framework has one (None: ``f`` as it is, batched as the
    options say).
    """

    analytic: Any
    f: Callable[[Any], Any]
    loss_dtype: type = np.float64
    scale: float = 0.0
    vmap: Vmap | None = None


T = TypeVar("T", bound=Traced)


class Backend(Protocol[T]):
    """What a framework does in the pipeline; ``ct`` is a cotangent as float64 arrays, one
    per projected output (None under a user loss).
    """

    def trace(self, run: Run) -> T:
        """The first call at the point, refusing outputs the check cannot project."""
        ...

    def given(self, traced: T, cotangent: Any) -> list[np.ndarray]:
        """The user's cotangent, validated, as float64 arrays of ``traced.shapes``."""
        ...

    def sides(self, traced: T, run: Run, ct: list[np.ndarray] | None) -> Sides:
        """The analytic and numeric sides of the projection on ``ct``."""
        ...

    def record(self, traced: T, ct: list[np.ndarray] | None) -> Any:
        """``ct`` as the report records it: numpy arrays in the output's structure."""
        ...


def check(backend: Backend[Any], run: Run) -> ProjectedReport:
    """The check of ``backend``'s function through ``run.projections`` projections (or its
    user loss), as the worst of their reports.
    """
    traced = backend.trace(run)
    cotangents = _cotangents(run, traced.shapes, lambda: backend.given(traced, run.cotangent))

    def one(ct: list[np.ndarray] | None) -> Report:
        sides = backend.sides(traced, run, ct)
        f, batched, note = _vmap_or_loop(sides, traced.params, run)
        report = _check.run(f, traced.params, sides.analytic, replace(run.options, batched=batched))
        # The note says why vmap was not used.
        return replace(report, notes=(*report.notes, note)) if note else report

    return worst_of(
        one, cotangents, run.started, drawn=run.drawn, record=lambda c: backend.record(traced, c)
    )


def _cotangents(run: Run, shapes: list[tuple[int, ...]], given: Callable[[], Any]) -> list:
    """The cotangent of each projection: ``[None]`` under a user loss, else ``given()``
    (the user's, validated) or ``run.projections`` of them drawn from ``run.seed``.
    """
    if run.loss is not None:
        return [None]
    if run.cotangent is not None:
        return [given()]
    return [draw_like(cotangent_rng(run.seed, k), shapes) for k in range(run.projections)]


# --- seeds, cotangents, the worst of several projections ---------------------------------------


def resolve_seed(seed: Any) -> int:
    """``seed`` validated, or a fresh one drawn when None (passed on to ``check`` too, so the
    report records the seed that made the cotangent).
    """
    if seed is None:
        return int(np.random.default_rng().integers(2**63))
    _options.seed(seed)
    return int(seed)


def validate_projections(projections: Any, cotangent: Any) -> int:
    _options.integer("projections", projections)
    if projections > 1 and cotangent is not None:
        raise ValueError(
            f"`projections`={projections!r} draws that many random cotangents; with a given "
            "`cotangent` there is only one projection"
        )
    return int(projections)


def cotangent_rng(seed: int, k: int) -> np.random.Generator:
    """The generator of projection ``k``'s cotangent for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(COTANGENT_STREAM, k)))


def draw_like(rng: np.random.Generator, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Standard normal float64 arrays of the given shapes, drawn in order."""
    return [rng.standard_normal(shape) for shape in shapes]


def worst_of(
    run_one: Callable[[Any], Report],
    cotangents: list[Any],
    started: float,
    *,
    drawn: bool,
    record: Callable[[Any], Any] = lambda c: c,
) -> ProjectedReport:
    """Check each cotangent with ``run_one`` and return the worst report, recording its
    cotangent (as ``record`` turns it into numpy arrays in the output's structure); ``nfev``
    and ``seconds`` count every projection. ``drawn``: the cotangents were drawn from the
    seed (the report says so), not given.
    """
    reports = [run_one(c) for c in cotangents]
    # The worst verdict, and among equals the largest difference (the last of ties), is the
    # report shown.
    order = sorted(
        range(len(reports)),
        key=lambda i: (Verdict(reports[i].verdict).severity, _order_key(reports[i].difference)),
    )
    pick = order[-1]
    report = reports[pick]
    notes = list(report.notes)
    if drawn:
        notes.append(
            "the output was projected on a random standard normal cotangent drawn from seed "
            f"{report.seed} (report.cotangent)"
        )
    if len(reports) > 1:
        verdicts = ", ".join(r.verdict for r in reports)
        notes.append(
            f"{len(reports)} random projections checked (verdicts: {verdicts}); this report "
            f"is projection {pick + 1}, the worst"
        )
    base = {f.name: getattr(report, f.name) for f in fields(Report)}
    base.update(
        nfev=sum(r.nfev for r in reports),
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )
    return ProjectedReport(**base, cotangent=record(cotangents[pick]), projections=len(reports))


def _order_key(difference: float) -> float:
    # NaN sorts as the worst difference: it never passes.
    return np.inf if difference != difference else difference


# --- the vmap-or-loop decision -----------------------------------------------------------------


def _vmap_or_loop(sides: Sides, params: Any, run: Run) -> tuple[Callable, bool, str | None]:
    """``(f, batched, note)`` for :func:`gradcheck.check`: the framework's vmap where it
    runs and agrees with the one-point projection, else one point at a time.
    """
    if sides.vmap is None:  # numpy: the user's f is batched or not, as the options say
        return sides.f, run.options.batched, None
    many = stacked(sides.vmap, sides.loss_dtype)
    return vmap_or_loop(
        sides.f,
        many,
        params,
        lambda: float(sides.f(params)),
        batched=run.batched,
        tol=VMAP_AGREE_ULPS * float(np.finfo(sides.loss_dtype).eps) * sides.scale,
        refusal=sides.vmap.refusal,
    )


def refused(vmap: str, verb: str, text: str, cause: BaseException | None = None) -> Refusal:
    """Why ``vmap`` cannot be used, in ``text``: "``vmap`` cannot ``verb`` the function:
    ..." under ``batched=True``, "``vmap`` cannot run it (...)" in the note.
    """
    error = f"{vmap} cannot {verb} the function: {text}"
    return Refusal(error, f"{vmap} cannot run it ({_first_sentence(text)})", cause)


def _first_sentence(text: str, limit: int = 240) -> str:
    """``text`` up to the end of its first sentence, and cut at a word (with "…") if that
    is still longer than ``limit``: the note says why, the error under ``batched=True``
    says it all.
    """
    end = text.find(". ")
    text = text if end < 0 else text[: end + 1]
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


def vmap_rows(point: dict, out_numel: int) -> int:
    """Rows per vmapped call that keep one call within :data:`VMAP_BYTES`."""
    n = sum(a.size for a in point.values())
    return max(1, VMAP_BYTES // (8 * (n + 4 * out_numel)))


def stacked(vmap: Vmap, loss_dtype: type) -> Callable[[dict], np.ndarray]:
    """``many(struct)``, the batched f: ``vmap.call`` on chunks of at most ``vmap.rows``
    rows of ``struct``'s stacks, as ``loss_dtype`` values.
    """
    call, rows, pad = vmap.call, vmap.rows, vmap.pad

    def many(struct):
        count = len(next(iter(struct.values())))
        values = np.empty(count)
        for lo in range(0, count, rows):
            part = {k: a[lo : lo + rows] for k, a in struct.items()}
            n = min(rows, count - lo)
            values[lo : lo + n] = call(part if pad is None else pad(part))[:n]
        return values.astype(loss_dtype)

    return many


def vmap_or_loop(
    one: Callable,
    many: Callable,
    point: dict,
    want: Callable[[], float],
    *,
    batched: bool | None,
    tol: float,
    refusal: Callable[..., Refusal],
) -> tuple[Callable, bool, str | None]:
    """``(f, batched, note)``: ``many`` (a vmapped f of stacks) when it runs on two rows of
    ``point`` and agrees with ``want()`` (the one-point value) within ``tol``; else ``one``
    and a note, or a ValueError when ``batched`` is True.

    ``refusal(exc, got, want)`` words the reason: ``exc`` what ``many`` raised (None when
    it ran), ``got`` its values, ``want`` the one-point value (None when ``many`` raised).
    """
    if batched is False:
        return one, False, None
    try:
        got = many({k: np.repeat(a[None], 2, axis=0) for k, a in point.items()})
    except Exception as exc:  # vmap refuses many things (custom Functions, .item(), state)
        reason = refusal(exc, None, None)
    else:
        value = want()
        if all(abs(float(v) - value) <= tol for v in got):
            return many, True, None
        reason = refusal(None, got, value)
    if batched:
        error = ValueError(f"batched=True, but {reason.error}")
        # Chained only where the backend asks (torch does, jax never did): the message
        # already quotes the exception's first line.
        if reason.cause is None:
            raise error
        raise error from reason.cause
    return one, False, f"evaluated point by point: {reason.note}"
