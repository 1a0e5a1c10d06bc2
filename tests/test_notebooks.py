"""The notebooks run: each jupytext source in notebooks/ is converted and executed in a fresh
kernel, with warnings as errors, and its own assertions must hold."""

import asyncio
import re
from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))
TIMEOUT = 120  # seconds per notebook: each takes 10-20 s on 2 cores, about 30 s with both busy

# Run first in the kernel: what the test suite treats as an error, the notebooks do too.
STRICT = "import warnings\nwarnings.simplefilter('error')"


def test_the_notebooks_are_all_found_numbered_and_listed_in_the_readme():
    names = [p.name for p in SOURCES]
    assert len(names) >= 2, names
    assert all(re.fullmatch(r"\d{2}_\w+\.py", name) for name in names), names
    numbers = [int(name[:2]) for name in names]
    assert numbers == list(range(1, len(names) + 1)), names  # 01, 02, ... without gaps
    readme = (NOTEBOOKS.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in names if f"`notebooks/{name}`" not in section]
    assert not missing, f"not listed in the README's Notebooks section: {missing}"


def test_the_notebooks_extra_holds_what_opening_them_needs():
    # `jupytext --to ipynb --execute` runs the notebook through nbconvert; without it the
    # README's command failed on a fresh install.
    import tomllib

    root = NOTEBOOKS.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extra = {re.split(r"[<>=\[ ]", d)[0] for d in extras["optional-dependencies"]["notebooks"]}
    assert {"jupytext", "nbconvert", "ipykernel", "matplotlib"} <= extra
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    assert 'pip install -e ".[notebooks]"' in section
    assert "jupytext --to ipynb --execute notebooks/*.py" in section


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs(source):
    nb = jupytext.read(source)
    assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{source.name} has no code cells"
    assert not any(c.get("outputs") for c in code), "sources are committed without outputs"
    assert any(c.cell_type == "markdown" for c in nb.cells)
    nb.cells.insert(0, nbformat.v4.new_code_cell(STRICT))
    nbformat.validate(nb)

    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    # nbclient's timeout is per cell; this bounds the whole notebook.
    asyncio.run(asyncio.wait_for(client.async_execute(), TIMEOUT))

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, "".join(stderr)
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
