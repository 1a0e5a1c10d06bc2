"""The published benchmark tables are generated, never hand-edited: benchmarks/RESULTS.md and
the README's Benchmarks block are exactly what benchmarks/report.py makes of the stored JSON.
"""

import json
import re
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def _source(text):
    return re.search(r"pytest-benchmark JSON: `([^`]+)`", text).group(1)


def test_results_md_is_the_reports_output():
    text = RESULTS.read_text()
    source = _source(text)
    data = json.loads((ROOT / source).read_text())
    assert text == report.render(data, source)


def test_readme_block_is_the_summary_of_the_same_run():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- benchmarks:begin[^\n]*-->\n(.*?)<!-- benchmarks:end -->", readme, re.S)
    assert block, "README.md lost its generated Benchmarks block"
    source = _source(block.group(1))
    assert source == _source(RESULTS.read_text())
    data = json.loads((ROOT / source).read_text())
    assert block.group(1) == report.summary(data, source)


def test_subset_rows_are_scaled_to_a_whole_check():
    row = {"stats": {"min": 2.0}, "extra_info": {"scale": 10.0}}
    assert report.scaled_time(row) == 20.0
    assert report.scaled_time({"stats": {"min": 2.0}, "extra_info": {}}) == 2.0
