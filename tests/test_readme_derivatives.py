"""The README's examples of the Taylor test, forward mode and second order run as shown."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8").split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_taylor_test_example_runs():
    (block,) = _blocks("The Taylor test")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["result"].verdict == "pass"
    assert namespace["wrong"].verdict == "fail"


def test_the_forward_mode_and_second_order_examples_run():
    pytest.importorskip("torch")
    numpy_block, torch_block = _blocks("Forward mode and second order")
    for block in (numpy_block, torch_block):
        exec(compile(block, "README.md", "exec"), {})
