"""The README's commands and example, the CLI, and what importing costs."""

import json
import re
import subprocess
import sys
from pathlib import Path

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
    assert "Every block passes." in fixed


def test_demo_with_the_course_step_prints_the_course_numbers():
    proc = _run("-m", "gradcheck", "demo", "--eps", "1e-7")
    assert proc.returncode == 0, proc.stderr
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
