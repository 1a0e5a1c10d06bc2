"""Plots of a report (the optional ``plot`` extra): each block's difference against the
thresholds, and the spread of per-element absolute errors.

matplotlib is imported only when a plot is drawn, never at ``import gradcheck``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _layout

# Bar colours by verdict; the threshold lines use the pass and fail colours.
COLORS = {"pass": "tab:green", "warn": "tab:orange", "inconclusive": "tab:gray", "fail": "tab:red"}
# Bins per decade of the error histogram.
BINS_PER_DECADE = 4
_INSTALL = 'plotting needs matplotlib: pip install "gradcheck[plot]"'
# Inches per bar that report.plot() gives a new figure, and the widest figure it makes; a
# name below its bar (small font, vertical) needs NAME_PITCH inches, and where the axes give
# less, only some names are shown.
BAR_WIDTH = 0.17
MAX_WIDTH = 16.0
NAME_PITCH = 0.13


def plot_report(report: Any, ax: Any = None) -> Any:
    """Draw each block's relative difference against the pass and fail thresholds.

    Parameters
    ----------
    report : Report
        The result of :func:`gradcheck.check`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
        One bar per block on a log scale, coloured by verdict, with the pass and fail
        thresholds and the global difference as horizontal lines; thresholds a block had
        raised to the noise of ``f`` are drawn across its bar.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    TypeError
        ``ax`` is not a matplotlib Axes.
    """
    blocks = list(report.blocks.values())
    # A new figure widens with the number of blocks, up to a screen's width, so that their
    # names fit below the bars.
    new = ax is None
    ax = _axes(ax, width=min(MAX_WIDTH, max(6.4, 1.5 + BAR_WIDTH * len(blocks))))
    from matplotlib.patches import Patch

    diffs = np.array([b.difference for b in blocks], dtype=np.float64)
    tol_pass, tol_fail = report.tol
    shown = np.append(diffs, report.difference)
    shown = shown[np.isfinite(shown) & (shown > 0)]
    # Bars start a decade below the smallest positive difference or threshold: a log axis
    # has no zero. A difference of exactly 0 (or NaN) gets an empty bar and a label.
    low = min(tol_pass, float(shown.min()) if shown.size else tol_pass)
    floor = 10.0 ** (math.floor(math.log10(low)) - 1)
    tops = np.where(np.isfinite(diffs) & (diffs > floor), diffs, floor)
    x = np.arange(len(blocks))
    ax.bar(
        x,
        tops - floor,
        bottom=floor,
        color=[COLORS.get(b.verdict, "tab:gray") for b in blocks],
        edgecolor="black",
        linewidth=0.5,
    )
    for i, d in enumerate(diffs):
        if not d > floor:
            ax.annotate(
                "nan" if math.isnan(d) else f"{d:.3g}", (i, floor), ha="center", va="bottom"
            )
    ax.set_yscale("log")

    lines, raised = _threshold_lines(ax, report, blocks, floor)
    top = max([1.0, tol_fail] + [t[1] for _, t in raised])
    ax.set_ylim(floor, 2.0 * top)  # a relative difference never exceeds 1
    verdicts = [v for v in COLORS if any(b.verdict == v for b in blocks)]
    patches = [Patch(facecolor=COLORS[v], edgecolor="black", label=v) for v in verdicts]
    ax.legend(handles=patches + lines, fontsize="small")

    _block_ticks(ax, blocks)
    ax.set_xlabel("block")
    ax.set_ylabel("relative difference")
    ax.set_title(f"gradcheck: {report.verdict}, difference {report.difference:.3g}")
    return _fit(ax, new)


def _threshold_lines(ax: Any, report: Any, blocks: list, floor: float):
    """The pass and fail thresholds, those raised per block, and the global difference."""
    tol_pass, tol_fail = report.tol
    lines = []
    if tol_pass == tol_fail:
        lines.append(
            ax.axhline(tol_pass, color="black", ls="--", label=f"threshold {tol_pass:.3g}")
        )
    else:
        lines.append(
            ax.axhline(tol_pass, color=COLORS["pass"], ls="--", label=f"pass <= {tol_pass:.3g}")
        )
        lines.append(
            ax.axhline(tol_fail, color=COLORS["fail"], ls="--", label=f"fail > {tol_fail:.3g}")
        )
    # Thresholds raised for a block (to the noise of f) are drawn across its own bar.
    raised = [
        (i, b.tol)
        for i, b in enumerate(blocks)
        if all(math.isfinite(t) for t in b.tol) and tuple(b.tol) != (tol_pass, tol_fail)
    ]
    for k, colour in ((0, COLORS["pass"]), (1, COLORS["fail"])):
        if raised:
            lines.append(
                ax.hlines(
                    [t[k] for _, t in raised],
                    [i - 0.45 for i, _ in raised],
                    [i + 0.45 for i, _ in raised],
                    colors=colour,
                    linewidth=2.5,
                    label=f"{('pass', 'fail')[k]}, raised for the noise of f",
                )
            )
    if math.isfinite(report.difference) and report.difference > floor:
        lines.append(
            ax.axhline(
                report.difference,
                color="black",
                ls=":",
                label=f"all blocks together {report.difference:.3g}",
            )
        )
    return lines, raised


def _block_ticks(ax: Any, blocks: list) -> None:
    """Name the bars: all of them when they fit, else every k-th and every block that does
    not pass (the ones a reader looks for), upright when few, vertical when many.
    """
    x = np.arange(len(blocks))
    if len(blocks) <= 8:
        ax.set_xticks(x, [b.name for b in blocks])
        return
    fig = ax.figure
    inches = ax.get_position().width * fig.get_figwidth()
    every = max(1, math.ceil(len(blocks) * NAME_PITCH / inches))
    marked = [i for i, b in enumerate(blocks) if b.verdict != "pass"]
    if len(marked) > len(blocks) // every:
        marked = []  # more of them than names fit: every k-th, like the others
    # A regular name too close to a marked one would overlap it: the marked one wins.
    regular = [i for i in range(0, len(blocks), every) if all(abs(i - j) >= every for j in marked)]
    shown = sorted({*marked, *regular})
    ax.set_xticks(x[shown], [blocks[i].name for i in shown], rotation=90, fontsize="small")


def _fit(ax: Any, new: bool) -> Any:
    """Lay out a figure the plot made itself, so that no label is cut (the x label under
    vertical block names, the y label left of long tick labels).

    A figure the caller gave is theirs to lay out. No layout engine is set, so a later
    ``tight_layout()`` of their own stays silent.
    """
    if new:
        ax.figure.tight_layout()
    return ax


def plot_errors(report: Any, grad: Any, ax: Any = None) -> Any:
    """Draw a histogram of the per-element absolute errors ``|grad - gradapprox|`` per block.

    Parameters
    ----------
    report : Report
        The result of :func:`gradcheck.check`.
    grad : same structure as the checked ``params``
        The gradient that was checked (the report does not keep it). Course-style keys
        (``dW1`` for ``W1``) and extra keys are accepted as in :func:`gradcheck.check`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
        One step histogram per block with nonzero errors, on log-spaced bins shared by all
        blocks. Coordinates not checked one by one are left out; errors of exactly 0, which a
        log axis cannot show, are counted in the legend, and blocks with nothing to show are
        named in a note.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    TypeError
        ``grad`` is a callable or does not mirror the parameters; ``ax`` is not an Axes.
    ValueError
        ``grad`` has a block of the wrong shape.
    """
    errors = abs_errors(report, grad)
    ax = _axes(ax)

    positive = [e[np.isfinite(e) & (e > 0)] for e in errors.values()]
    everything = np.concatenate(positive)
    if everything.size:
        lo = math.floor(math.log10(everything.min()))
        hi = max(math.ceil(math.log10(everything.max())), lo + 1)
    else:
        lo, hi = -16, 0
    edges = np.logspace(lo, hi, BINS_PER_DECADE * (hi - lo) + 1)
    empty = []
    for (name, err), pos in zip(errors.items(), positive, strict=True):
        # What a log axis cannot show, said in words: exact zeros, and NaN or inf where the
        # gradient itself is not finite.
        notes = [f"{err.size} checked"]
        zeros = int(np.count_nonzero(err == 0))
        nonfinite = int(np.count_nonzero(~np.isfinite(err)))
        notes += [f"{zeros} exactly 0"] * bool(zeros) + [f"{nonfinite} not finite"] * bool(
            nonfinite
        )
        if not pos.size:
            empty.append(f"{name} ({', '.join(notes)})")
            continue
        counts, _ = np.histogram(pos, bins=edges)
        ax.stairs(counts, edges, label=f"{name} ({', '.join(notes)})", linewidth=1.5)
    if len(empty) < len(errors):
        ax.legend(fontsize="small")
    if empty:
        ax.annotate(
            "not shown: " + ", ".join(empty),
            (0.01, 0.99),
            xycoords="axes fraction",
            va="top",
            fontsize="small",
        )
    ax.set_xscale("log")
    ax.set_xlabel("|grad - gradapprox| per element")
    ax.set_ylabel("entries")
    ax.set_title("absolute errors by block")
    return ax


def abs_errors(report: Any, grad: Any) -> dict[str, np.ndarray]:
    """``|grad - gradapprox|`` of the checked entries, flattened, per block name.

    Parameters
    ----------
    report : Report
        The result of :func:`gradcheck.check`.
    grad : same structure as the checked ``params``
        The gradient that was checked.

    Returns
    -------
    dict of str to ndarray
        For every block of the report, in order, the float64 absolute errors of its checked
        entries (unchecked entries, NaN in ``report.gradapprox``, are left out).

    Raises
    ------
    TypeError
        ``grad`` is a callable or does not mirror the parameters.
    ValueError
        ``grad`` has a block of the wrong shape or lacks one.
    """
    if grad is None or callable(grad):
        raise TypeError(
            "`grad` must be the gradient values in the structure of params (the report does "
            f"not keep them), got {type(grad).__name__}: call your gradient function first"
        )
    out = {}
    for name, path, approx in _layout.leaves(report.gradapprox):
        leaf = _layout.lookup(grad, path, what="grad")
        g = _layout.as_real_array(leaf, what=f"grad for `{name}`")
        if g.shape != approx.shape:
            raise ValueError(
                f"`grad` for block `{name}` has shape {g.shape}, "
                f"but the parameter has shape {approx.shape}"
            )
        approx = approx.reshape(-1)
        checked = ~np.isnan(approx)
        out[name] = np.abs(g.reshape(-1).astype(np.float64)[checked] - approx[checked])
    return out


def _axes(ax: Any, width: float | None = None) -> Any:
    """``ax``, or the axes of a new figure ``width`` inches wide; refuse anything that is not
    an Axes.
    """
    try:
        import matplotlib.axes
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    if ax is None:
        import matplotlib.pyplot as plt

        size = None if width is None else (width, plt.rcParams["figure.figsize"][1])
        return plt.subplots(figsize=size)[1]
    if not isinstance(ax, matplotlib.axes.Axes):
        raise TypeError(f"`ax` must be a matplotlib Axes, got {type(ax).__name__}: {ax!r:.80}")
    return ax


def plot_step_sweep(
    sweep: Any, ax: Any = None, label: str | None = None, thresholds: bool = True
) -> Any:
    """Draw the relative difference against the step, log-log, the best step marked.

    Parameters
    ----------
    sweep : StepSweep
        The result of :func:`gradcheck.step_sweep`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.
    label : str, optional
        The curve's legend entry; default: the method.
    thresholds : bool
        Draw the sweep's pass and fail thresholds, unless the axes has them already.

    Returns
    -------
    matplotlib.axes.Axes
        The curve; the best step starred when it passes, else marked as the smallest
        difference reached (no step to use: the gradient disagrees whatever the step).
    """
    new = ax is None
    ax = _axes(ax)
    shown = np.isfinite(sweep.differences) & (sweep.differences > 0)
    ax.loglog(sweep.steps[shown], sweep.differences[shown], "o-", label=label or sweep.method)
    # No step passes: the bottom of the curve is not a step to use, and a star would read
    # as one. The gradient is what disagrees.
    marker, size, colour, text = (
        ("*", 14, "tab:red", f"best: h = {sweep.best_step:.1e}")
        if sweep.passes
        else (
            "x",
            10,
            "black",
            f"smallest: {sweep.best_difference:.2g}, no step passes (a wrong gradient?)",
        )
    )
    ax.loglog(
        [sweep.best_step],
        [sweep.best_difference],
        marker,
        markersize=size,
        color=colour,
        label=text,
    )
    if thresholds and sweep.tol is not None:
        # The thresholds also keep the log axis a few decades tall, so it has labelled
        # ticks even when the curve is flat (a wrong gradient). Sweeps sharing an axes
        # with the same thresholds draw them once.
        tol_pass, tol_fail = sweep.tol
        drawn = {line.get_label() for line in ax.get_lines()}
        lines = [(tol_pass, COLORS["pass"], f"pass <= {tol_pass:.3g}")]
        if tol_fail != tol_pass:
            lines.append((tol_fail, COLORS["fail"], f"fail > {tol_fail:.3g}"))
        for value, colour, label in lines:
            if label not in drawn:
                ax.axhline(value, color=colour, ls="--", label=label)
    ax.set_xlabel("step h")
    ax.set_ylabel("relative difference")
    ax.set_title("rounding (left) against truncation (right)")
    ax.legend(fontsize="small")
    return _fit(ax, new)


def plot_monitor(monitor: Any, ax: Any = None) -> Any:
    """Draw each block's difference against the training step, failures and alerts marked.

    Parameters
    ----------
    monitor : Monitor
        A monitor that has run checks.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    history = monitor.history()
    # Exact agreement has no place on a log axis: draw it at the bottom of what is shown.
    positive = [h["difference"] for h in history if h["difference"] > 0]
    floor = min(positive) / 10 if positive else 1e-17
    for name in dict.fromkeys(h["block"] for h in history):
        rows = [h for h in history if h["block"] == name]
        steps = np.array([h["step"] for h in rows])
        diffs = np.array([h["difference"] for h in rows], dtype=float)
        diffs = np.where(np.isfinite(diffs) & (diffs > 0), diffs, floor)
        failed = np.array([h["verdict"] == "fail" for h in rows])
        ax.semilogy(steps, diffs, "o-", label=name)
        ax.semilogy(steps[failed], diffs[failed], "x", color="black", markersize=10)
    if history and monitor.last_report is not None:
        fail = monitor.last_report.tol[1]
        ax.axhline(fail, color=COLORS["fail"], ls="--", label=f"fail > {fail:.3g}")
    for alert in monitor.alerts:
        ax.axvline(alert["step"], color=COLORS["fail"], ls=":", label=f"alert: {alert['block']}")
    ax.set_xlabel("training step")
    ax.set_ylabel("relative difference (x: failed)")
    ax.set_title(f"gradcheck monitor: {len(history)} checks, {len(monitor.alerts)} alerts")
    if history:
        ax.legend(fontsize="small")
    return ax


def plot_taylor(test: Any, ax: Any = None) -> Any:
    """Draw each direction's Taylor remainders against the step, log-log.

    Parameters
    ----------
    test : TaylorTest
        The result of :func:`gradcheck.taylor_test`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
        One curve per direction (its converging range drawn thick), the rounding level as
        a dotted line, and reference slopes ``h``, ``h^2`` (and ``h^3`` with an hvp)
        through the first direction's range, so a rate reads off as a parallel line.
    """
    ax = _axes(ax)
    anchor = None
    for d in test.directions:
        shown = np.isfinite(d.remainders) & (d.remainders > 0)
        (line,) = ax.loglog(d.steps[shown], d.remainders[shown], ".-", alpha=0.6)
        label = d.name if d.rate != d.rate else f"{d.name}: rate {d.rate:.2f} ({d.verdict})"
        if d.range is not None:
            lo, hi = d.range
            chosen = slice(lo, hi + 1)
            colour = line.get_color()
            ax.loglog(d.steps[chosen], d.remainders[chosen], "o-", lw=3, color=colour, label=label)
            # The reference slopes span the range and a few steps either side: over the
            # whole sweep an h^3 line would stretch the axis by dozens of decades.
            near = d.steps[max(0, lo - 3) : hi + 4]
            anchor = anchor or (float(d.steps[lo]), float(d.remainders[lo]), near)
        else:
            line.set_label(f"{d.name}: no converging range")
    first = test.directions[0]
    ax.loglog(first.steps, first.floor, ":", color="gray", label="rounding level")
    if anchor is not None:
        h0, r0, steps = anchor
        for p, style in zip(range(1, test.order + 1), ("--", "-.", ":"), strict=False):
            reference = r0 * (steps / h0) ** p
            ax.loglog(steps, reference, style, color="black", lw=0.8, label=f"slope {p}")
    ax.set_xlabel("step h")
    ax.set_ylabel("remainder")
    ax.set_title(f"Taylor test: a right derivative falls like h^{test.order}")
    ax.legend(fontsize="small")
    return ax
