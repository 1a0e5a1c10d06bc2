"""Turn a pytest-benchmark JSON file into the markdown results tables.

    python -m pytest benchmarks --benchmark-enable --benchmark-json=.benchmarks/run.json
    python benchmarks/report.py .benchmarks/run.json > benchmarks/RESULTS.md
    python benchmarks/report.py --summary .benchmarks/run.json   # the README's short table

Every figure comes from the JSON: times, the machine and versions, the date. The time of a
contender is its fastest round (pytest-benchmark's "min") for one check; a row timed on a
subset of its run is multiplied by its ``scale`` to stand for the whole check. Ratios are
"times faster than" the course loop and scipy's 3-point ``approx_derivative`` on the same
workload, so above 1 is faster.
"""

from __future__ import annotations

import json
import sys
from typing import Any

WORKLOAD_ORDER = ["course net", "mlp-small", "mlp-medium", "logistic", "large"]
COURSE = "course loop"
SCIPY = "scipy approx_derivative 3-point"
FIRST_CALL_GROUP = "first call: fresh process, course net"
CORE_GROUP = "overhead per coordinate, n=100,000"


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:,.0f} s"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "–"
    return f"{r:.3g}×" if r < 100 else f"{r:,.0f}×"


def scaled_time(b: dict) -> float:
    """Seconds for one whole check: the fastest round, times the subset's scale."""
    return b["stats"]["min"] * float(b["extra_info"].get("scale", 1.0))


def covered(info: dict) -> str:
    kind = info.get("kind", "full")
    n = info.get("n")
    if kind == "full":
        return f"full ({n:,} coordinates)"
    if kind == "subset":
        return f"subset, ×{fmt_ratio(info['scale'])[:-1]}: {info.get('note', '')}"
    if kind == "sampled":
        return f"sampled: {info['coordinates']:,} coordinates ({info.get('note', '')}) †"
    return f"directional: {info.get('note', '')} †"


def machine_lines(data: dict, source: str | None = None) -> list[str]:
    m = data["machine_info"]
    cpu = m.get("cpu", {})
    commit = data.get("commit_info", {})
    versions = ", ".join(
        f"{name} {m[name]}"
        for name in ("gradcheck", "numpy", "scipy", "numba", "numdifftools", "torch", "jax")
        if m.get(name)
    )
    missing = [name for name in ("torch", "jax") if name in m and not m[name]]
    memory = f", {m['memory_kib'] / 2**20:.0f} GiB" if m.get("memory_kib") else ""
    lines = [
        f"- Run: {data['datetime']}, commit {commit.get('id', '?')[:10]}"
        + (" (with uncommitted changes)" if commit.get("dirty") else "")
        + (f"; pytest-benchmark JSON: `{source}`" if source else ""),
        f"- Machine: {cpu.get('brand_raw', m.get('processor') or '?')}, "
        f"{m.get('cpu_count', cpu.get('count', '?'))} cores{memory}, {m.get('platform', '')}",
        f"- Python {m['python_version']}; {versions}"
        + (f"; not installed: {', '.join(missing)}" if missing else ""),
        f"- numba threads: {m.get('numba_threads')} ({m.get('numba_threading_layer')} layer); "
        f"BLAS threads: {m.get('blas_threads')} ({', '.join(m.get('blas', []))})",
    ]
    if m.get("load_average_at_start"):
        start = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
        end = ", ".join(f"{x:.2f}" for x in m["load_average_at_end"])
        lines.append(f"- Load average (1, 5, 15 min) at start: {start}; at end: {end}")
    return lines


def group_by(benchmarks: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for b in benchmarks:
        groups.setdefault(b["group"] or "", []).append(b)
    return groups


def reference(rows: list[dict], contender: str) -> dict | None:
    return next((b for b in rows if b["extra_info"].get("contender") == contender), None)


def workload_table(rows: list[dict]) -> list[str]:
    course, scipy = reference(rows, COURSE), reference(rows, SCIPY)
    t_course = scaled_time(course) if course else None
    t_scipy = scaled_time(scipy) if scipy else None
    out = [
        "| contender | what one timed call covered | f evaluations | rounds | time of one check "
        "| vs course loop | vs scipy 3-point |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in sorted(rows, key=scaled_time):
        info, t = b["extra_info"], scaled_time(b)
        out.append(
            f"| {info['contender']} | {covered(info)} | {info.get('evaluations', 0):,} "
            f"| {b['stats']['rounds']} | {fmt_time(t)} "
            f"| {fmt_ratio(t_course / t if t_course else None)} "
            f"| {fmt_ratio(t_scipy / t if t_scipy else None)} |"
        )
    return out


def first_call_table(rows: list[dict]) -> list[str]:
    out = [
        "| contender | import | first check | import + first check | second check "
        "| whole process (with Python start-up) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in sorted(rows, key=lambda b: b["stats"]["min"]):
        i = b["extra_info"]
        imp, first, steady = i["import_seconds"], i["first_seconds"], i["steady_seconds"]
        out.append(
            f"| {i['contender']} | {fmt_time(imp)} | {fmt_time(first)} | "
            f"{fmt_time(imp + first)} | {fmt_time(steady)} | {fmt_time(b['stats']['min'])} |"
        )
    return out


def by_name(benchmarks: list[dict], name: str) -> dict | None:
    return next((b for b in benchmarks if b["name"] == name), None)


def best(rows: list[dict], prefix: str) -> tuple[str, float] | None:
    found = [
        (b["extra_info"]["contender"], scaled_time(b))
        for b in rows
        if b["extra_info"].get("contender", "").startswith(prefix)
        and b["extra_info"].get("kind") == "full"
    ]
    return min(found, key=lambda c: c[1]) if found else None


def targets(groups: dict[str, list[dict]], benchmarks: list[dict]) -> list[str]:
    out = ["| target | measured | met |", "| --- | --- | :---: |"]

    def speedup_row(label, workload, prefix, goal):
        rows = next((r for g, r in groups.items() if g.startswith(f"{workload} (")), [])
        course, fast = reference(rows, COURSE), best(rows, prefix)
        if not (course and fast):
            out.append(f"| {label} | not measured | – |")
            return
        ratio = scaled_time(course) / fast[1]
        out.append(
            f"| {label} | {fast[0]}: {ratio:.3g}× ({fmt_time(fast[1])} against "
            f"{fmt_time(scaled_time(course))}) | {'yes' if ratio >= goal else '**no**'} |"
        )

    alone = by_name(benchmarks, "test_calls_of_f_alone")
    for name, words, goal in (
        ("test_python_engine_nearly_free_f_serial", "serial", 0.7e-6),
        ("test_python_engine_nearly_free_f", "workers as chosen", 2e-6),
    ):
        engine = by_name(benchmarks, name)
        if not (engine and alone):
            continue
        n = engine["extra_info"]["coordinates"]
        per = (engine["stats"]["min"] - alone["stats"]["min"]) / n
        met = "yes" if per <= goal else "**no**"
        out.append(
            f"| Python engine overhead per coordinate ({words}) ≤ {goal * 1e6:g} µs | "
            f"{per * 1e6:.2f} µs (n = {n:,}, beyond 2n calls of a nearly free f) | {met} |"
        )
    speedup_row(
        "course net: numba engine ≥ 15× the course loop", "course net", "gradcheck numba", 15
    )
    speedup_row(
        "course net: batched engine ≥ 8× the course loop", "course net", "gradcheck batched", 8
    )
    speedup_row("logistic: batched engine ≥ 2× the course loop", "logistic", "gradcheck batched", 2)
    speedup_row(
        "mlp-medium: best gradcheck engine ≥ 1.5× the course loop", "mlp-medium", "gradcheck", 1.5
    )
    return out


NUMBA_ALL = "gradcheck numba (all threads)"
SUMMARY_COLUMNS = [
    COURSE,
    SCIPY,
    "gradcheck python",
    "gradcheck numba (1 thread)",
    NUMBA_ALL,
    "gradcheck batched",
]


def summary_cell(rows: list[dict], column: str) -> dict | None:
    if column == NUMBA_ALL:  # named by its thread count, which depends on the machine
        return next(
            (
                b
                for b in rows
                if b["extra_info"]["contender"].startswith("gradcheck numba (")
                and b["extra_info"]["contender"] != "gradcheck numba (1 thread)"
            ),
            None,
        )
    return reference(rows, column)


def summary(data: dict[str, Any], source: str | None = None) -> str:
    """One row per workload: the time of one check by the main contenders, and the fastest
    gradcheck engine's ratios; then the targets.
    """
    groups = group_by(data["benchmarks"])
    out = [
        *machine_lines(data, source),
        "",
        "| workload | " + " | ".join(SUMMARY_COLUMNS) + " | fastest gradcheck: × course loop "
        "| × scipy 3-point |",
        "| --- |" + " ---: |" * (len(SUMMARY_COLUMNS) + 2),
    ]
    for workload in WORKLOAD_ORDER:
        rows = next((r for g, r in groups.items() if g.startswith(f"{workload} (")), None)
        if not rows:
            continue
        cells = []
        for contender in SUMMARY_COLUMNS:
            b = summary_cell(rows, contender)
            if b is None:
                cells.append("–")
                continue
            kind = b["extra_info"].get("kind")
            cells.append(fmt_time(scaled_time(b)) + {"subset": " *", "sampled": " †"}.get(kind, ""))
        ours = [
            b
            for b in rows
            if b["extra_info"]["contender"].startswith("gradcheck")
            and b["extra_info"].get("kind") in ("full", "sampled")
        ]
        fastest = min(ours, key=scaled_time) if ours else None
        ratios = ["–", "–"]
        if fastest:
            for k, ref in enumerate((reference(rows, COURSE), reference(rows, SCIPY))):
                if ref:
                    ratios[k] = fmt_ratio(scaled_time(ref) / scaled_time(fastest))
        n = rows[0]["extra_info"]["n"]
        out.append(f"| {workload} (n={n:,}) | " + " | ".join(cells + ratios) + " |")
    out += [
        "",
        "Time of one check, fastest round. * timed on a part of its run and scaled to the "
        "whole check. † `sample=1000`: 1,000 coordinates checked one by one, not all; its "
        "ratios compare that sampled check with a whole check by the course loop or scipy.",
        "",
        *targets(groups, data["benchmarks"]),
    ]
    return "\n".join(out) + "\n"


def render(data: dict[str, Any], source: str | None = None) -> str:
    benchmarks = data["benchmarks"]
    groups = group_by(benchmarks)
    out = ["# Benchmark results", ""]
    out += machine_lines(data, source)
    out += [
        "",
        "Generated by `python benchmarks/report.py` from the JSON above; do not edit by hand.",
        "",
        "Time of one check: the fastest of the timed rounds. Peers and the course loop that "
        "would take minutes are timed on a part of their run and scaled to the whole check "
        '("subset ×k"; per-evaluation costs kept, see benchmarks/contenders.py). Ratios: '
        "times faster than the course loop and than `scipy.optimize._numdiff."
        'approx_derivative(method="3-point")` on the same workload. † marks checks that do '
        "not test every coordinate (sampled, or random directions): their ratios compare "
        "their cost with a full check, not like with like.",
        "",
        "## Targets",
        "",
        *targets(groups, benchmarks),
    ]
    for workload in WORKLOAD_ORDER:
        for group, rows in groups.items():
            if group.startswith(f"{workload} ("):
                info = rows[0]["extra_info"]
                out += ["", f"## {group}: {info.get('description', '')}", ""]
                out += workload_table(rows)
    if FIRST_CALL_GROUP in groups:
        out += [
            "",
            "## First call: import and compile, each in a fresh process (course net)",
            "",
            "import: the contender's modules; first check: includes compiling or loading "
            "compiled kernels (the user's own jitted loss is compiled before, and not counted).",
            "",
            *first_call_table(groups[FIRST_CALL_GROUP]),
        ]
    known = {FIRST_CALL_GROUP} | {g for g in groups if g.split(" (")[0] in WORKLOAD_ORDER}
    for group in sorted(set(groups) - known):
        out += ["", f"## {group}", "", "| benchmark | rounds | fastest |", "| --- | ---: | ---: |"]
        for b in sorted(groups[group], key=lambda b: b["stats"]["min"]):
            out.append(f"| {b['name']} | {b['stats']['rounds']} | {fmt_time(b['stats']['min'])} |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    args = argv[1:]
    short = "--summary" in args
    files = [a for a in args if a != "--summary"]
    if len(files) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(files[0]) as fh:
        data = json.load(fh)
    sys.stdout.write(summary(data, files[0]) if short else render(data, files[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
