"""The house shape holds: no function body over 80 lines or 7 parameters, no module over 500,
and check()'s stages read in one screen (``tools/code_shape.py``)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "code_shape.py"


def test_the_code_keeps_the_house_limits():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "longest bodies:" in done.stdout
