"""Determinism receipts of reference builds, to show that a change keeps the bytes.

Builds the real world (pycountry, Natural Earth 1:10m, the WorldPop grid) at the given
resolutions and predicates with the fast engine and prints, per build, the SHA-256 of
the ``tile_index`` partition (the determinism receipt), of the ``tile_bounds``
partition, and the row count. With ``--record LABEL`` the lines are appended to
``benchmarks/RESULTS.md`` under a "Receipts" heading, so a before and an after run sit
side by side.

    .venv/bin/python benchmarks/receipts.py                      # 150″ both, 30″ center
    .venv/bin/python benchmarks/receipts.py --record after-refactor
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from run import git_commit

import tileindex
from tileindex.prepare import COUNTRIES_FILE, GRID_FILE, ISO_FILE, prepare_inputs

HERE = Path(__file__).resolve().parent
BUILDS = (("150", "center"), ("150", "any_overlap"), ("30", "center"))


def _partition_sha(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", metavar="LABEL", help="append the lines to RESULTS.md")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--builds",
        default=",".join(f"{r}:{p}" for r, p in BUILDS),
        help="resolution:predicate pairs, comma-separated",
    )
    args = parser.parse_args()
    builds = [tuple(item.split(":")) for item in args.builds.split(",")]
    lines = []
    with tempfile.TemporaryDirectory(prefix="tileindex-receipts-") as tmp:
        for res, predicate in builds:
            inputs = Path(tmp) / f"in{res}"
            if not inputs.exists():
                prepare_inputs(inputs, resolution_arcsec=float(res))
            out = Path(tmp) / f"out{res}-{predicate}"
            t0 = time.perf_counter()
            result = tileindex.build(
                inputs / ISO_FILE,
                inputs / COUNTRIES_FILE,
                inputs / GRID_FILE,
                out,
                predicate=predicate,
                workers=args.workers,
                cache_dir=None,
            )
            wall = time.perf_counter() - t0
            receipt = result.report.determinism_receipt["sha256_hex"]
            bounds = _partition_sha(result.paths["tile_bounds"])
            line = (
                f"| {res}″ | {predicate} | {result.rows_emitted:,} | `{receipt}` | "
                f"`{bounds}` | {wall:.1f} s |"
            )
            print(line, flush=True)
            lines.append(line)
    if args.record:
        results = HERE / "RESULTS.md"
        head = (
            f"\n### Receipts: {args.record} (commit {git_commit()}, "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)\n\n"
            "| grid | predicate | rows | tile_index receipt | tile_bounds sha256 | wall |\n"
            "|---|---|---|---|---|---|\n"
        )
        with results.open("a") as fh:
            fh.write(head + "\n".join(lines) + "\n")
    json.dump({"builds": lines}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
