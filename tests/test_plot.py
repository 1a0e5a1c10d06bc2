"""Plots of a report: bars per block against the thresholds, error histograms per block, the
lazy import of matplotlib and the errors a user sees."""

import dataclasses
import itertools
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # headless, and before pyplot is imported
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle, StepPatch

import gradcheck
from gradcheck import _demo, _plot


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def network():
    """The demo network's parameters, its planted and fixed gradients, and its loss."""
    X, Y, params = _demo.example()
    _, cache = _demo.forward(X, Y, params)
    return (
        params,
        _demo.backward(X, Y, cache, planted=True),
        _demo.backward(X, Y, cache),
        lambda p: _demo.loss(X, Y, p),
    )


def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _saved(ax, tmp_path, name):
    path = tmp_path / name
    ax.figure.savefig(path)
    return path.stat().st_size


def test_plot_report_draws_one_bar_per_block_coloured_by_verdict(network, tmp_path):
    params, planted, _, loss = network
    report = gradcheck.check(loss, params, planted, seed=0)
    ax = report.plot()
    bars = _bars(ax)
    assert len(bars) == len(report.blocks) == 6
    assert [t.get_text() for t in ax.get_xticklabels()] == list(report.blocks)
    red = matplotlib.colors.to_rgba(_plot.COLORS["fail"])
    colours = dict(zip(report.blocks, (bar.get_facecolor() for bar in bars), strict=True))
    failing = [name for name, colour in colours.items() if colour == red]
    assert sorted(failing) == sorted(report.failing) == ["W2", "b1"]
    # Bar tops are the block differences on a log axis; the lines are the two thresholds
    # and the global difference.
    for bar, block in zip(bars, report.blocks.values(), strict=True):
        assert bar.get_y() + bar.get_height() == pytest.approx(block.difference)
    assert ax.get_yscale() == "log"
    assert sorted(line.get_ydata()[0] for line in ax.get_lines()) == sorted(
        [*report.tol, report.difference]
    )
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["pass", "fail"]
    assert "fail" in ax.get_title()
    assert _saved(ax, tmp_path, "report.png") > 1000


def test_plot_report_on_given_axes_with_one_threshold_and_a_zero_block(tmp_path):
    # b is unused by f and its gradient is 0: both sides zero, difference exactly 0.
    params = {"w": np.array([1.0, 2.0]), "b": np.array([0.5])}
    grads = {"w": np.array([2.0, 4.0]), "b": np.array([0.0])}
    report = gradcheck.check(lambda p: (p["w"] ** 2).sum(), params, grads, tol=1e-6)
    assert report.blocks["b"].difference == 0.0
    _, axes = plt.subplots(1, 2)
    assert report.plot(ax=axes[1]) is axes[1]
    assert not axes[0].patches
    ax = axes[1]
    bars = _bars(ax)
    assert len(bars) == 2
    assert bars[1].get_height() == 0.0  # no bar for 0 on a log axis, but a label
    assert [t.get_text() for t in ax.texts] == ["0"]
    threshold = [line for line in ax.get_lines() if line.get_ydata()[0] == 1e-6]
    assert len(threshold) == 1
    assert _saved(ax, tmp_path, "zero.svg") > 1000


def test_plot_errors_histograms_every_block_with_nonzero_errors(network, tmp_path):
    params, planted, _, loss = network
    report = gradcheck.check(loss, params, planted, seed=0)
    ax = report.plot_errors(planted)  # course-style keys, extra dZ/dA keys ignored
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    errors = {
        name: np.abs(planted["d" + name] - report.gradapprox[name]).ravel() for name in params
    }
    nonzero = [name for name, e in errors.items() if (e > 0).any()]
    assert len(steps) == len(labels) == len(nonzero)
    assert [label.split()[0] for label in labels] == nonzero
    for step, name in zip(steps, nonzero, strict=True):
        counts, edges = step.get_data().values, step.get_data().edges
        assert counts.sum() == np.count_nonzero(errors[name])
        zeros = errors[name].size - np.count_nonzero(errors[name])
        assert (f"{zeros} exactly 0" in step.get_label()) == (zeros > 0)
    ratios = np.diff(np.log10(edges))
    np.testing.assert_allclose(ratios, 1 / _plot.BINS_PER_DECADE)  # log-spaced bins
    assert ax.get_xscale() == "log"
    assert _saved(ax, tmp_path, "errors.png") > 1000


def test_plot_errors_separates_the_wrong_entries_from_rounding(network):
    params, planted, _, loss = network
    report = gradcheck.check(loss, params, planted, seed=0)
    errors = _plot.abs_errors(report, planted)
    # The planted mistakes are O(0.1-1) off; every other entry is off by rounding only.
    assert min(e[e > 0].min() for name, e in errors.items() if name in ("W2", "b1")) > 1e-3
    assert max(e.max() for name, e in errors.items() if name not in ("W2", "b1")) < 1e-6


def _bilinear(seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((20, 20)), "b": rng.standard_normal(20)}

    def f(p):
        return 0.5 * np.sum((p["W"] @ p["b"]) ** 2)

    r = params["W"] @ params["b"]
    return f, params, {"W": np.outer(r, params["b"]), "b": params["W"].T @ r}


def test_plot_errors_leaves_out_coordinates_that_were_not_checked():
    f, params, grads = _bilinear()
    report = gradcheck.check(f, params, grads, seed=0, sample=50)
    checked = {name: b.checked for name, b in report.blocks.items()}
    assert 0 < checked["W"] < params["W"].size  # a sampled block: NaN where not checked
    errors = _plot.abs_errors(report, grads)
    assert {name: e.size for name, e in errors.items()} == checked
    assert all(np.isfinite(e).all() for e in errors.values())
    ax = report.plot_errors(grads)
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert sum(s.get_data().values.sum() for s in steps) == sum(
        np.count_nonzero(e) for e in errors.values()
    )


def test_plots_of_a_check_along_directions_only():
    f, params, grads = _bilinear()
    grads["b"] = 1.5 * grads["b"]
    report = gradcheck.check(f, params, grads, seed=0, directions=3)
    assert all(b.checked == 0 for b in report.blocks.values())
    ax = report.plot()  # the bars are the differences along the directions
    tops = [bar.get_y() + bar.get_height() for bar in _bars(ax)]
    assert tops == pytest.approx([b.direction_difference for b in report.blocks.values()])
    ax = report.plot_errors(grads)  # no entry was checked one by one: nothing to histogram
    assert not ax.patches
    assert [t.get_text() for t in ax.texts] == ["not shown: W (0 checked), b (0 checked)"]


def test_plot_report_draws_thresholds_raised_for_a_block(network):
    params, _, fixed, loss = network
    report = gradcheck.check(loss, params, fixed, seed=0)
    raised = (1e-4, 1e-2)
    blocks = {name: dataclasses.replace(b, tol=report.tol) for name, b in report.blocks.items()}
    blocks["W2"] = dataclasses.replace(blocks["W2"], tol=raised)
    ax = dataclasses.replace(report, blocks=blocks).plot()
    drawn = [c for c in ax.collections if "raised" in c.get_label()]
    assert [c.get_label() for c in drawn] == [
        "pass, raised for the noise of f",
        "fail, raised for the noise of f",
    ]
    for collection, level in zip(drawn, raised, strict=True):
        (segment,) = collection.get_segments()
        np.testing.assert_allclose(segment[:, 1], level)
        assert segment[0, 0] < list(blocks).index("W2") < segment[1, 0]


def test_plot_errors_refuses_a_callable_or_mismatched_gradient(network):
    params, planted, _, loss = network
    report = gradcheck.check(loss, params, planted, seed=0)
    with pytest.raises(TypeError, match="gradient values"):
        report.plot_errors(lambda p: planted)
    with pytest.raises(ValueError, match=r"block `W2` has shape \(5, 3\)"):
        report.plot_errors({**planted, "dW2": planted["dW2"].T})
    with pytest.raises(ValueError, match="no entry 'b3'"):
        report.plot_errors({k: v for k, v in planted.items() if k != "db3"})


def test_plots_refuse_what_is_not_an_axes(network):
    params, _, fixed, loss = network
    report = gradcheck.check(loss, params, fixed, seed=0)
    with pytest.raises(TypeError, match="matplotlib Axes"):
        report.plot(ax=plt.figure())
    with pytest.raises(TypeError, match="matplotlib Axes"):
        report.plot_errors(fixed, ax="left")


def test_missing_matplotlib_says_how_to_install_it(network, monkeypatch):
    params, _, fixed, loss = network
    report = gradcheck.check(loss, params, fixed, seed=0)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if matplotlib were not installed
    for draw in (report.plot, lambda: report.plot_errors(fixed)):
        with pytest.raises(ImportError, match=r'pip install "gradcheck\[plot\]"'):
            draw()


def test_import_gradcheck_does_not_import_matplotlib():
    code = (
        "import sys, numpy as np, gradcheck\n"
        "r = gradcheck.check(lambda x: (x**2).sum(), np.ones(3), 2 * np.ones(3))\n"
        "str(r), r.to_dict()\n"
        "print(sorted(m for m in sys.modules if m.startswith('matplotlib')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_step_sweep_plot_draws_the_curve_and_marks_the_best_step(tmp_path):
    # float32: the smallest steps are below the parameters' resolution (NaN) and not drawn.
    x = np.linspace(-1.5, 2.0, 12).astype(np.float32)
    sweep = gradcheck.step_sweep(lambda x: np.sum(np.sin(x)), x, np.cos(x), seed=0)
    shown = np.isfinite(sweep.differences) & (sweep.differences > 0)
    assert 0 < shown.sum() < sweep.steps.size
    _, axes = plt.subplots(1, 2)
    ax = sweep.plot(ax=axes[1])
    assert ax is axes[1]
    assert not axes[0].lines
    curve, best, pass_line, fail_line = ax.get_lines()
    assert sweep.passes
    assert list(pass_line.get_ydata()) == [sweep.tol[0]] * 2
    assert list(fail_line.get_ydata()) == [sweep.tol[1]] * 2
    np.testing.assert_array_equal(curve.get_xdata(), sweep.steps[shown])
    np.testing.assert_array_equal(curve.get_ydata(), sweep.differences[shown])
    assert list(best.get_xdata()) == [sweep.best_step]
    assert list(best.get_ydata()) == [sweep.best_difference]
    assert best.get_marker() == "*"
    assert sweep.best_difference == np.nanmin(sweep.differences)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "step h"
    assert ax.get_ylabel() == "relative difference"
    assert "rounding" in ax.get_title()
    assert "truncation" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "central",
        f"best: h = {sweep.best_step:.1e}",
        f"pass <= {sweep.tol[0]:.3g}",
        f"fail > {sweep.tol[1]:.3g}",
    ]
    assert _saved(ax, tmp_path, "sweep.png") > 1000
    # A second sweep on the same axes: the same thresholds are not drawn twice, and none
    # are drawn when asked not to.
    sweep.plot(ax=ax, label="again")
    assert len(ax.get_lines()) == 6
    sweep.plot(ax=axes[0], thresholds=False)
    assert len(axes[0].get_lines()) == 2


def _inside_figure(artist, fig):
    box = artist.get_window_extent(fig.canvas.get_renderer())
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1


def test_step_sweep_plot_of_a_wrong_gradient_gives_no_advice(tmp_path):
    # A wrong gradient: the curve is flat near 1/3 and no step passes. A star "best: h =
    # 1.0e-01" read as advice to use that step; the bottom is marked as what it is.
    x = np.array([0.3, -1.2, 2.0])
    sweep = gradcheck.step_sweep(lambda x: np.sum(np.sin(x)), x, 2 * np.cos(x), seed=0)
    assert not sweep.passes
    assert sweep.tol == (1e-7, 1e-5)
    ax = sweep.plot()
    _saved(ax, tmp_path, "wrong.png")  # draws, so that the layout is final
    markers = [line.get_marker() for line in ax.get_lines()]
    assert "*" not in markers
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[1].startswith("smallest: 0.33, no step passes")
    assert not any(label.startswith("best") for label in labels)
    # The axis is labelled, its label is inside the figure, and its ticks are labelled
    # (the thresholds keep it several decades tall).
    assert ax.get_ylabel() == "relative difference"
    assert _inside_figure(ax.yaxis.label, ax.figure)
    low, high = ax.get_ylim()
    assert high / low > 1e5
    assert sum(bool(t.get_text()) for t in ax.get_yticklabels()) >= 3


def test_plot_report_with_sixty_blocks_names_them_without_overlap(tmp_path):
    rng = np.random.default_rng(0)
    params = {f"layer{i}.weight": rng.standard_normal(3) for i in range(60)}
    grads = {k: 2 * v for k, v in params.items()}
    grads["layer7.weight"] = 1.5 * grads["layer7.weight"]
    report = gradcheck.check(lambda p: sum(np.sum(v**2) for v in p.values()), params, grads)
    ax = report.plot()
    _saved(ax, tmp_path, "sixty.png")
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert "layer7.weight" in [t.get_text() for t in ticks]
    assert len(ticks) == 60  # the figure widened to fit every name
    boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes)), "tick labels overlap"
    assert all(_inside_figure(t, fig) for t in ticks)
    assert _inside_figure(ax.xaxis.label, fig)
    fig.tight_layout()  # the user's own layout call stays silent (warnings are errors here)


def test_plot_report_with_many_blocks_names_some_and_every_failing_one(tmp_path):
    rng = np.random.default_rng(1)
    params = {f"b{i}": rng.standard_normal(2) for i in range(300)}
    grads = {k: 2 * v for k, v in params.items()}
    grads["b151"] = -grads["b151"]
    report = gradcheck.check(lambda p: sum(np.sum(v**2) for v in p.values()), params, grads)
    ax = report.plot()
    _saved(ax, tmp_path, "many.png")
    renderer = ax.figure.canvas.get_renderer()
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert "b151" in [t.get_text() for t in ticks]
    assert 20 < len(ticks) < 300
    boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes)), "tick labels overlap"


def test_monitor_plot_draws_each_block_over_the_steps_with_failures_and_alerts(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 4)), rng.standard_normal(30)

    def loss(p):
        r = X @ p["w"] + p["b"] - y
        return 0.5 * r @ r / len(y)

    params = {"w": np.linspace(-1, 1, 4), "b": np.array([0.2])}
    monitor = gradcheck.Monitor(every=2, budget=None, sample=None, directions=None, seed=0)
    monitor.on_alert = "log"
    for step in range(1, 21):
        r = X @ params["w"] + params["b"] - y
        grads = {"w": X.T @ r / len(y) * (2.0 if step > 10 else 1.0), "b": np.array([r.mean()])}
        monitor.step(step, loss, params, grads)
    assert monitor.alerts
    ax = monitor.plot()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"w", "b"} <= set(lines)
    assert list(lines["w"].get_xdata()) == [h["step"] for h in monitor.history("w")]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert sum(len(line.get_xdata()) for line in crosses) == sum(
        h["verdict"] == "fail" for h in monitor.history()
    )
    assert any(label.startswith("alert: w") for label in lines)
    assert _saved(ax, tmp_path, "monitor.png") > 0
    empty = gradcheck.Monitor(every=5).plot()
    assert "0 checks" in empty.get_title()
