"""What a reader sees first: a headline that names what failed, each thing said once, a
compact repr for a REPL and a table for Jupyter, and where to look first when many blocks
fail."""

import re

import numpy as np
import pytest

import gradcheck
from gradcheck import _demo

from . import models


def demo_problem(buggy: bool):
    """The demo's network: ``(f, params, grads)``, with the planted mistakes or fixed."""
    X, Y, params = _demo.example()
    _, cache = _demo.forward(X, Y, params)
    grads = _demo.backward(X, Y, cache, planted=buggy)
    return (lambda p: _demo.loss(X, Y, p)), params, grads


@pytest.fixture(scope="module")
def mlp():
    X, y, params = models.mlp_data()
    return X, y, params, models.mlp_grad(params, X, y)


def _check(mlp, grads=None, **options):
    X, y, params, good = mlp
    return gradcheck.check(lambda p: models.mlp_loss(p, X, y), params, grads or good, **options)


def _linear(wrong: float = 0.0):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    params = {"w": rng.standard_normal(3), "b": np.array(0.5)}

    def loss(p):
        r = X @ p["w"] + p["b"] - y
        return 0.5 * r @ r

    r = X @ params["w"] + params["b"] - y
    return loss, params, {"dw": (1 + wrong) * X.T @ r, "db": r.sum()}


# ---------------------------------------------------------------- the headline (item 12)


def test_the_headline_names_the_failing_block_within_an_80_column_summary():
    loss, params, grads = _linear(wrong=0.5)
    report = gradcheck.check(loss, params, grads, seed=0)
    head = str(report).splitlines()[0]
    assert re.fullmatch(r"gradcheck: FAIL in w \(difference 0\.194\)", head), head
    # pytest's summary: "FAILED test_x.py::test_y - AssertionError: " then the headline.
    summary = ("FAILED tests/test_user.py::test_backward - AssertionError: " + head)[:80]
    assert "FAIL in w" in summary


def test_the_exact_difference_is_still_printed_in_full():
    report = gradcheck.check(*demo_problem(buggy=True), eps=1e-7)
    assert "difference = 0.2850931567761623" in str(report)
    assert str(report).splitlines()[0] == "gradcheck: FAIL in b1, W2 (difference 0.285)"


def test_a_passing_headline_is_short():
    loss, params, grads = _linear()
    head = str(gradcheck.check(loss, params, grads, seed=0)).splitlines()[0]
    assert re.fullmatch(r"gradcheck: PASS \(difference \S+\)", head), head


# ---------------------------------------------------------------- each thing once (item 10)


def test_the_zeros_sentence_is_said_once():
    text = str(gradcheck.check(*demo_problem(buggy=False), seed=0))
    assert text.count("exactly 0 on both sides") == 1
    # Every block's count is still there.
    assert re.search(r"W1 4\b.*W2 11\b", text)


def test_a_passing_report_has_no_worst_entries_table_and_is_half_as_long():
    text = str(gradcheck.check(*demo_problem(buggy=False), seed=0))
    assert "worst entries" not in text
    # The demo's passing report took 27 lines and 1,639 characters before: at most half of
    # that, and one line more (under 100 characters) that says what it could have missed.
    lines = text.splitlines()
    reach = [line for line in lines if line.startswith("  could have missed: ")]
    assert len(reach) == 1, text
    assert len(reach[0]) < 100, reach
    rest = [line for line in lines if line not in reach]
    assert len(rest) <= 13, text
    assert len("\n".join(rest)) <= 1639 // 2, len("\n".join(rest))


def test_a_failing_report_keeps_its_worst_entries(mlp):
    grads = {k: v.copy() for k, v in mlp[3].items()}
    grads["dW1"][3, 2] += 1.0
    assert "worst entries" in str(_check(mlp, grads, seed=0))


def test_repr_is_a_compact_summary_and_str_stays_complete(mlp):
    grads = {k: v.copy() for k, v in mlp[3].items()}
    grads["dW1"][3, 2] += 1.0
    report = _check(mlp, grads, seed=0)
    text = repr(report)
    assert len(text) <= 300, text
    assert "\n" not in text
    assert text.startswith("<gradcheck Report: FAIL in W1")
    assert "print(report)" in text
    full = str(report)
    assert "worst entries" in full
    assert "W1[3, 2]" in full


def test_repr_of_a_projected_report_is_compact_too():
    def layer(x):
        return np.tanh(x)

    def layer_vjp(x, c):
        return c * (1 - np.tanh(x) ** 2)

    report = gradcheck.check_vjp(layer, np.linspace(-1, 1, 50), layer_vjp, seed=0)
    assert len(repr(report)) <= 300
    assert repr(report).startswith("<gradcheck Report: PASS")


def test_html_for_jupyter_is_a_table_of_the_blocks(mlp):
    grads = {k: v.copy() for k, v in mlp[3].items()}
    grads["dW1"][3, 2] += 1.0
    html = _check(mlp, grads, seed=0)._repr_html_()
    assert html.count("<tr") == 1 + 4  # the header and one row per block
    assert "FAIL in W1" in html
    assert "<th>block</th>" in html
    assert "W1[3, 2]" in html


def test_html_escapes_block_names():
    params, grads = {"<a&b>": np.ones(3)}, {"<a&b>": 2 * np.ones(3)}
    report = gradcheck.check(lambda p: float(p["<a&b>"] @ p["<a&b>"]), params, grads, seed=0)
    html = report._repr_html_()
    assert "<a&b>" not in html
    assert "&lt;a&amp;b&gt;" in html


# ---------------------------------------------------------------- where to look first (item 11)


def _chain(bad_layer: int, layers: int = 4):
    """A tanh network of ``layers`` layers whose backward pass uses a wrong tanh derivative
    after layer ``bad_layer`` (0-based): every block up to that layer fails."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3))
    params = {}
    for k in range(layers):
        params[f"W{k}"] = rng.standard_normal((3, 3)) * 0.5
        params[f"b{k}"] = rng.standard_normal(3) * 0.1

    def loss(p):
        a = x
        for k in range(layers):
            a = np.tanh(a @ p[f"W{k}"] + p[f"b{k}"])
        return 0.5 * np.sum(a**2)

    acts = [x]
    for k in range(layers):
        acts.append(np.tanh(acts[-1] @ params[f"W{k}"] + params[f"b{k}"]))
    grads = {}
    da = acts[-1]
    for k in reversed(range(layers)):
        slope = 1 - acts[k + 1] ** 2
        if k == bad_layer:
            slope = 1 - acts[k + 1]  # the wrong derivative
        dz = da * slope
        grads[f"W{k}"] = acts[k].T @ dz
        grads[f"b{k}"] = dz.sum(0)
        da = dz @ params[f"W{k}"].T
    return loss, params, grads


def test_many_failing_blocks_point_to_the_earliest_in_backprop_order():
    report = gradcheck.check(*_chain(bad_layer=2), seed=0)
    assert report.failing == ("W0", "b0", "W1", "b1", "W2", "b2")
    text = str(report)
    last = text.strip().splitlines()[-1]
    assert "earliest failing block in backprop order" in last, last
    assert "between b2 and W3" in last, last


def test_the_vmap_note_is_not_cut_mid_word():
    torch = pytest.importorskip("torch")
    import gradcheck.torch

    class Cube(torch.autograd.Function):  # old style: no setup_context, no vmap rule
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * g * x**2

    x = torch.linspace(-1, 1, 6, dtype=torch.float64)
    report = gradcheck.torch.check(Cube.apply, (x,), seed=0)
    (note,) = [n for n in report.notes if "vmap" in n]
    assert "setup_context staticmethod" in note
    # It ends at the end of a sentence or a word, never inside one ("... staticmethod. Fo)").
    assert re.search(r"(\.|…)\)$", note), note
