"""The README's commands and example, the CLI, and what importing costs."""

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import gradcheck

README = Path(__file__).resolve().parents[1] / "README.md"


def _run(*args, timeout=120):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_readme_names_the_two_setup_commands():
    text = README.read_text()
    assert "python -m gradcheck demo" in text
    assert re.search(r"^pip install .*&& pytest", text, re.M)


def test_demo_command_reports_the_planted_mistakes_then_passes():
    proc = _run("-m", "gradcheck", "demo")
    assert proc.returncode == 0, proc.stderr
    buggy, fixed = proc.stdout.split("== hand-written backward pass, fixed ==")
    assert "gradcheck: FAIL" in buggy
    assert "2 of 6 blocks fail: b1, W2" in buggy
    assert re.search(r"^\s+(b1|W2)\[\d, \d\]", buggy, re.M)  # worst entries by name
    assert "gradcheck: PASS" in fixed
    assert "worst entries" not in fixed  # a pass says so once, in its headline


def test_demo_with_the_course_step_prints_the_course_numbers():
    from gradcheck import _demo

    from . import course_case

    proc = _run("-m", "gradcheck", "demo", "--eps", "1e-7")
    assert proc.returncode == 0, proc.stderr
    # What this machine's BLAS makes of the network, to the last digit: the check in this
    # process, on the same evaluations, is gradcheck's own arithmetic.
    X, Y, params = _demo.example()
    cache = _demo.forward(X, Y, params)[1]
    for planted in (True, False):
        grads = _demo.backward(X, Y, cache, planted=planted)
        here = gradcheck.check(lambda p: _demo.loss(X, Y, p), params, grads, eps=1e-7, seed=0)
        assert f"difference = {here.difference!r}" in proc.stdout
    if course_case.rounds_like_the_course():  # and the course's, where it computes its values
        assert "difference = 0.2850931567761623" in proc.stdout
        assert "difference = 1.1890913024229996e-07" in proc.stdout


def test_cli_usage_error_exits_2():
    proc = _run("-m", "gradcheck", "no-such-command")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    report = namespace["report"]
    assert report.failing == ("b",)
    json.dumps(report.to_dict())


def test_import_compiles_nothing_and_loads_no_numba():
    code = (
        "import json, sys, gradcheck; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('numba', 'scipy')))))"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_readme_signature_of_check_lists_every_parameter():
    text = README.read_text()
    signature = re.search(r"`gradcheck\.check\((.*?)\) -> Report`", text, re.S)
    assert signature, "the README does not show check's signature"
    parts = (part.split("=")[0].strip().lstrip("*") for part in signature.group(1).split(","))
    shown = [name for name in parts if name not in ("", "*")]
    assert shown == list(inspect.signature(gradcheck.check).parameters)


def test_readme_explains_the_score_column():
    text = README.read_text()
    assert "An entry's **score** is its `|error|` over what its rounding noise" in text


def test_readme_counts_the_evaluations_of_directions_as_measured():
    # The README's count for directions=4 on a five-block model, with and without the noise
    # probe; the count does not depend on the blocks' sizes, so a small model measures it.
    text = " ".join(README.read_text().split())
    found = re.search(
        r"`directions=4` on a correct gradient spent (\d+) evaluations: 1 at `params`, (\d+) "
        r"for the noise probe and 2 × 4 per block \((\d+) with `noise=False`\)",
        text,
    )
    assert found, "the README does not count the evaluations of directions=4"
    total, probe, without = map(int, found.groups())
    rng = np.random.default_rng(0)
    shapes = {"W1": (30, 20), "W2": (20, 10), "W3": (10, 5), "b1": (20,), "b2": (5,)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}

    def loss(p):
        return sum((1.0 + i) * np.sum(x**2) for i, x in enumerate(p.values()))

    grads = {k: 2 * (1.0 + i) * x for i, (k, x) in enumerate(params.items())}
    report = gradcheck.check(loss, params, grads, directions=4, seed=0)
    quiet = gradcheck.check(loss, params, grads, directions=4, seed=0, noise=False)
    assert report.verdict == quiet.verdict == "pass"
    assert (report.nfev, quiet.nfev) == (total, without)
    assert total == 1 + probe + 2 * 4 * len(shapes)
