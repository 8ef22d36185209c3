"""The cost of ``--coverage`` (docs/CONTRACT.md §10.3): the world ``any_overlap`` build
with and without it, in one session, as child processes measured from outside.

    python benchmarks/coverage_cost.py [--resolution 30] [--repeats 3] [--workers 2] [--record]

Each repeat runs both builds, alternating which goes first, into fresh output roots
with ``--no-cache``; the medians of wall, CPU and peak RSS (largest process, and the
whole process tree) are printed with the overhead ratio (target: at most 1.3x) and the
run reports' worker RSS. Then the last repeat's outputs are compared: ``tile_index`` and
``tile_bounds`` must be byte-identical (same receipt), and the coverage rows below 1.0
(the boundary cells that needed an area) are counted. ``--record`` appends the table to
``benchmarks/RESULTS.md``. The target is judged at 30″; other resolutions only check
that the script works (e.g. ``--resolution 300`` in a minute).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, measure, ours_cmd, ours_evidence, record
from run import inputs as run_inputs

WORK = BENCH / "_work" / "coverage"
TARGET = 1.3


def _cmd(inputs: Path, out: Path, workers: int, coverage: bool) -> list[str]:
    cmd = ours_cmd(inputs, out, "any_overlap", workers)
    return [*cmd, "--coverage"] if coverage else cmd


def _receipts(out: Path) -> dict[str, Any]:
    (path,) = out.glob("reports/layer1/1B/state=S1/parameter_hash=*/s1_run_report.json")
    doc = json.loads(path.read_text())
    bounds = sorted(out.glob("data/layer1/1B/tile_bounds/parameter_hash=*/*.parquet"))
    return {
        "tile_index": doc["determinism_receipt"]["sha256_hex"],
        "tile_bounds": [
            subprocess.run(
                ["sha256sum", str(p)], capture_output=True, text=True, check=True
            ).stdout.split()[0]
            for p in bounds
        ],
        "coverage": (doc.get("coverage_receipt") or {}).get("sha256_hex"),
    }


def _boundary_rows(out: Path) -> int:
    (folder,) = out.glob("data/layer1/1B/tile_coverage/parameter_hash=*")
    table = ds.dataset(folder).to_table(columns=["coverage_fraction"])
    return int(pc.sum(pc.less(table.column(0), 1.0)).as_py())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = ap.parse_args()

    inputs = run_inputs(args.resolution)
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "coverage": []}
    for rep in range(args.repeats):
        order = ["plain", "coverage"] if rep % 2 == 0 else ["coverage", "plain"]
        for name in order:
            out = WORK / f"out_{name}"
            shutil.rmtree(out, ignore_errors=True)
            res = measure(
                _cmd(inputs, out, args.workers, name == "coverage"),
                name,
                WORK / "logs" / f"{name}_{rep}.log",
            )
            res.update(ours_evidence(out))
            runs[name].append(res)
            print(f"repeat {rep + 1} {name}: {res['wall_s']:.1f} s", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name] if r.get(key) is not None)

    plain, cov = _receipts(WORK / "out_plain"), _receipts(WORK / "out_coverage")
    same = plain["tile_index"] == cov["tile_index"] and plain["tile_bounds"] == cov["tile_bounds"]
    boundary = _boundary_rows(WORK / "out_coverage")
    rows = runs["coverage"][-1]["rows"]
    ratio = med("coverage", "wall_s") / med("plain", "wall_s")
    mib = 1 << 20
    lines = [
        "| build | wall (median) | CPU | largest process RSS | process tree RSS | "
        "report max worker RSS |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("plain", "coverage"):
        label = "any_overlap --coverage" if name == "coverage" else "any_overlap"
        lines.append(
            f"| {label} | {med(name, 'wall_s'):.1f} s | {med(name, 'cpu_s'):.1f} s | "
            f"{med(name, 'max_rss_bytes') / mib:.0f} MiB | "
            f"{med(name, 'tree_rss_peak_bytes') / mib:.0f} MiB | "
            f"{med(name, 'max_worker_rss_bytes') / mib:.0f} MiB |"
        )
    verdict = "within" if ratio <= TARGET else "OVER"
    notes = [
        f"- overhead: **{ratio:.2f}x** the build without `--coverage` ({verdict} the "
        f"{TARGET}x target); masking {med('plain', 'mask_worker_s'):.1f} -> "
        f"{med('coverage', 'mask_worker_s'):.1f} worker-s, encoding "
        f"{med('plain', 'encode_worker_s'):.1f} -> {med('coverage', 'encode_worker_s'):.1f}",
        f"- {rows:,} rows, of which {boundary:,} ({boundary / max(rows, 1):.2%}) are boundary "
        "cells below 1.0 (the only cells that got an area)",
        f"- tile_index and tile_bounds byte-identical with and without: **{same}** "
        f"(receipt `{plain['tile_index'][:16]}…`); tile_coverage receipt "
        f"`{(cov['coverage'] or '')[:16]}…`",
    ]
    text = "\n".join([*lines, "", *notes])
    print(text)
    if args.record:
        record(
            f"Coverage overhead: world any_overlap at {args.resolution:g}″, "
            f"--workers {args.workers}, medians of {args.repeats}",
            text,
        )
    if not same:
        raise SystemExit("tile_index/tile_bounds differ with --coverage")


if __name__ == "__main__":
    main()
