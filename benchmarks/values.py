"""The cost and the agreement of ``tileindex values`` (docs/CONTRACT.md §10.4): the world
at ``--resolution`` with a synthetic population-like raster, against a plain windowed
read of the same raster and against exactextract.

    python benchmarks/values.py [--resolution 30] [--repeats 3] [--workers CORES]
                                [--baseline COMMIT] [--processes] [--no-exactextract]
                                [--record LABEL]

Prepares the world's inputs, builds an ``any_overlap`` index with ``--coverage`` once
(kept under ``benchmarks/_work/values/``), and writes a deterministic float32 raster on
its grid (tiled 256 x 256, deflate, nodata -99999 in patches, values heavy-tailed like
population counts; from the cell's tile id only, so the same at every run). Each repeat
runs, as child processes measured from outside and alternating which goes first:

- ``plain read``: every window ``tileindex values`` would read if it read the whole grid
  (blocks of whole rows of at most ``WINDOW_BYTES``), summed with NumPy -- the floor of
  any tool that looks at every pixel once;
- ``values``: ``tileindex values --workers N`` on a copy of the index without values.

With ``--baseline COMMIT`` each repeat also runs that commit's ``tileindex values`` (its
``src`` extracted by ``git archive``, run once on the 300″ world first so that its
compiled loops are in numba's cache), alternating with ours. With ``--processes`` each
repeat also runs ``tileindex.values(..., executor="process")`` (the same parts on worker
processes instead of the default threads) in a child. Every values run prints its own
time inside ``values()``; the rest of its wall time (imports, the process's end) is
shown beside it.

The medians and the ratio (target: at most 1.5x at 30″) are printed, then where the CPU
of ``values`` goes: one more run with one worker in one process, each phase's thread CPU
summed (writing ``tile_values``, decoding the raster's blocks, locating and gathering
the cells, the exact sums, reading the coverage fractions). Then exactextract
computes ``count`` and ``sum`` (both coverage-weighted by its definition: our
``weighted_count`` and ``weighted_sum``) for every country's kept geometry (the union
the build used, cut at ±180) on the same raster; its time and the largest relative
difference against ``region_values`` are printed, with the countries that cross ±180
(where exactextract does not wrap the grid) listed apart. ``--record LABEL`` appends the
tables to ``benchmarks/RESULTS.md``. Only 30″ judges the target; e.g. ``--resolution 300``
checks that the script works in a minute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import rasterio
import shapely
from rasterio.transform import Affine
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, baseline_src, measure, record

import tileindex
from tileindex.grid import Grid
from tileindex.prepare import prepare_inputs
from tileindex.values import WINDOW_BYTES

WORK = BENCH / "_work" / "values"
TARGET = 1.5
NODATA = -99999.0


def breakdown(index: Path, raster: Path) -> dict[str, float]:
    """Where the CPU of ``values`` goes: one worker in this process (the serial executor,
    so every part runs here), each phase's thread CPU summed (``time.thread_time``; the
    writes run on the second thread, their time is theirs alone)."""
    import threading

    module = sys.modules["tileindex.values"]
    spent: dict[str, float] = {}
    lock = threading.Lock()

    def timed(name: str, fn: Any) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            t = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                with lock:
                    spent[name] = spent.get(name, 0.0) + time.thread_time() - t

        return run

    strips = module._Strips
    pq.ParquetWriter.write_table = timed("write tile_values", pq.ParquetWriter.write_table)
    strips._strip = timed("decode the raster's blocks", strips._strip)
    strips.values_at = timed("values_at", strips.values_at)
    module._fractions = timed("read coverage fractions", module._fractions)
    stats_of = module._Stats.of.__func__
    module._Stats.of = classmethod(timed("exact sums and min/max", stats_of))
    wall, cpu = time.perf_counter(), time.process_time()
    module.values(index, raster, workers=1)
    spent["locate and gather the cells"] = (
        spent.pop("values_at") - spent["decode the raster's blocks"]
    )
    spent["all (process CPU)"] = time.process_time() - cpu
    spent["wall"] = time.perf_counter() - wall
    return spent


# -- inputs --------------------------------------------------------------------------------


def _index(resolution: float) -> Path:
    """The world's any_overlap index with coverage at ``resolution``, built once."""
    folder = WORK / f"inputs_{resolution:g}"
    if not (folder / "prepare_report.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        prepare_inputs(folder, resolution)
    out = WORK / f"index_{resolution:g}"
    if not (out / "data").is_dir():
        shutil.rmtree(out, ignore_errors=True)
        tileindex.build(
            folder / "iso.parquet",
            folder / "countries.parquet",
            folder / "grid.tif",
            out,
            predicate="any_overlap",
            coverage=True,
            workers=None,
        )
    return out


def population(grid: Grid, r0: int, r1: int) -> np.ndarray:
    """Rows r0..r1 of the synthetic raster: a function of the tile id only."""
    rows = np.arange(r0, r1, dtype=np.uint64)[:, None]
    cols = np.arange(grid.ncols, dtype=np.uint64)[None, :]
    tid = rows * np.uint64(grid.ncols) + cols
    h = (tid * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)  # 24 well-mixed bits
    u = h.astype(np.float64) / float(1 << 24)
    value = (u**6 * 5000.0).astype(np.float32)  # mostly small, a few thousands
    patches = ((rows // np.uint64(97) + cols // np.uint64(89)) % np.uint64(7)) == 0
    return np.where(patches, np.float32(NODATA), value)


def _raster(grid: Grid, resolution: float) -> Path:
    path = WORK / f"population_{resolution:g}.tif"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.tif")
    profile = {
        "driver": "GTiff",
        "width": grid.ncols,
        "height": grid.nrows,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:4326",
        "transform": Affine(*grid.transform),
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(tmp, "w", **profile) as ds:
        for r0 in range(0, grid.nrows, 256):
            r1 = min(r0 + 256, grid.nrows)
            ds.write(population(grid, r0, r1), 1, window=Window(0, r0, grid.ncols, r1 - r0))
    tmp.rename(path)
    return path


# -- the contenders ------------------------------------------------------------------------


def plain_read(raster: Path) -> dict[str, Any]:
    """Read every pixel once, in the windows values would use, and sum the valid ones."""
    t0 = time.perf_counter()
    total, cells = 0.0, 0
    with rasterio.open(raster) as ds:
        block = ds.block_shapes[0][0]
        rows = max(1, WINDOW_BYTES // (ds.width * 4))
        rows -= rows % block if rows >= block else 0
        for r0 in range(0, ds.height, rows):
            h = min(rows, ds.height - r0)
            data = ds.read(1, window=Window(0, r0, ds.width, h))
            total += float(data[data != ds.nodata].sum(dtype=np.float64))
            cells += data.size
    return {"seconds": time.perf_counter() - t0, "cells": cells, "sum": total}


def _values_cmd(index: Path, raster: Path, workers: int) -> list[str]:
    return [
        *(sys.executable, "-m", "tileindex", "values", "--out", str(index)),
        *("--raster", str(raster), "--workers", str(workers), "--json"),
    ]


def _fresh_copy(index: Path) -> Path:
    out = WORK / "run"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(index, out, ignore=shutil.ignore_patterns("tile_values", "region_values*"))
    return out


def _exactextract(index: Path, raster: Path) -> dict[str, Any]:
    from exactextract import exact_extract
    from exactextract.feature import JSONFeatureSource

    idx = tileindex.open(index)
    geoms = idx.geometry()
    features = [
        {
            "type": "Feature",
            "properties": {"key": key},
            "geometry": json.loads(shapely.to_geojson(geom)),
        }
        for key, geom in geoms.items()
        if not geom.is_empty
    ]
    t0, c0 = time.perf_counter(), time.process_time()
    rows = exact_extract(
        str(raster),
        JSONFeatureSource(features),
        ["count", "sum"],
        include_cols=["key"],
        output="geojson",
    )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "per_key": {r["properties"]["key"]: r["properties"] for r in rows},
        "crosses_180": sorted(
            k
            for k, g in geoms.items()
            if not g.is_empty and g.bounds[0] <= -180.0 + 1e-9 and g.bounds[2] >= 180.0 - 1e-9
        ),
    }


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def _compare(ours: dict[str, dict[str, Any]], ee: dict[str, Any]) -> list[str]:
    worst: dict[str, tuple[float, str]] = {}
    for group in ("other", "crosses ±180"):
        for ours_col, ee_col in (("weighted_count", "count"), ("weighted_sum", "sum")):
            best = (0.0, "-")
            for key, props in ee["per_key"].items():
                if (key in ee["crosses_180"]) != (group == "crosses ±180"):
                    continue
                d = _rel(float(ours[key][ours_col]), float(props[ee_col] or 0.0))
                best = max(best, (d, key))
            worst[f"{group}/{ours_col}"] = best
    lines = [
        "| regions | our column | exactextract | largest relative difference | where |",
        "|---|---|---|---|---|",
    ]
    for name, (d, key) in worst.items():
        group, col = name.split("/")
        ee_col = "count" if col == "weighted_count" else "sum"
        lines.append(f"| {group} | `{col}` | `{ee_col}` | {d:.2e} | {key} |")
    return lines


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    # the CLI's default: every core (the target is about tileindex values as users run it)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--baseline", metavar="COMMIT", help="also time values at this commit")
    ap.add_argument("--processes", action="store_true", help="also time values on processes")
    ap.add_argument("--no-exactextract", action="store_true")
    ap.add_argument("--on-processes", nargs=3, help=argparse.SUPPRESS)  # the child
    ap.add_argument("--record", metavar="LABEL", default=None, help="append to RESULTS.md")
    ap.add_argument("--plain-read", type=Path, help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--breakdown", nargs=2, type=Path, help=argparse.SUPPRESS)  # the child
    args = ap.parse_args()
    if args.plain_read is not None:
        print(json.dumps(plain_read(args.plain_read)))
        return
    if args.on_processes is not None:
        out, values_raster, workers = args.on_processes
        done = tileindex.values(out, values_raster, workers=int(workers), executor="process")
        print(json.dumps({"seconds": done.seconds, "rows": done.rows}))
        return
    if args.breakdown is not None:
        print(json.dumps(breakdown(*args.breakdown)))
        return

    index = _index(args.resolution)
    grid = tileindex.open(index).grid
    raster = _raster(grid, args.resolution)
    self_cmd = [sys.executable, str(Path(__file__).resolve())]
    plain_cmd = [*self_cmd, "--plain-read", str(raster)]
    baseline = f"values at {args.baseline}" if args.baseline else None
    envs: dict[str, dict[str, str] | None] = {"values": None}
    processes = "values on processes" if args.processes else None
    if baseline is not None:
        src = baseline_src(args.baseline)
        envs[baseline] = {**os.environ, "PYTHONPATH": str(src)}
        warm = _index(300.0)  # its compiled loops into numba's cache, untimed
        raster300 = _raster(tileindex.open(warm).grid, 300.0)
        subprocess.run(_values_cmd(_fresh_copy(warm), raster300, 1), env=envs[baseline], check=True)
    runs: dict[str, list[dict[str, Any]]] = {"plain read": [], **{n: [] for n in envs}}
    if processes is not None:
        runs[processes] = []
    result: dict[str, Any] = {}
    for rep in range(args.repeats):
        order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
        for name in order:
            log = WORK / "logs" / f"{name.replace(' ', '_')}_{rep}.log"
            if name in envs or name == processes:
                copy = _fresh_copy(index)
                if name == processes:
                    cmd = [*self_cmd, "--on-processes", str(copy), str(raster), str(args.workers)]
                    res = measure(cmd, name, log)
                else:
                    res = measure(_values_cmd(copy, raster, args.workers), name, log, envs[name])
                done = json.loads(log.read_text().strip().splitlines()[-1])
                res["inside_s"] = done["seconds"]
                if name == "values":
                    result = done
            else:
                res = measure(plain_cmd, name, log)
            runs[name].append(res)
            print(f"repeat {rep + 1} {name}: {res['wall_s']:.1f} s", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name] if r.get(key) is not None)

    ratio = med("values", "wall_s") / med("plain read", "wall_s")
    mib = 1 << 20
    size = raster.stat().st_size
    lines = [
        "| run | wall (median) | of which inside `values()` | CPU | process tree RSS |",
        "|---|---|---|---|---|",
    ]
    for name in runs:
        label = f"{name} --workers {args.workers}" if name != "plain read" else name
        inside = f"{med(name, 'inside_s'):.1f} s" if name != "plain read" else "-"
        lines.append(
            f"| {label} | {med(name, 'wall_s'):.1f} s | {inside} | {med(name, 'cpu_s'):.1f} s | "
            f"{med(name, 'tree_rss_peak_bytes') / mib:.0f} MiB |"
        )
    verdict = "within" if ratio <= TARGET else "OVER"
    notes = [
        f"- values: **{ratio:.2f}x** the plain windowed read ({verdict} the {TARGET}x "
        f"target); {result.get('rows', 0):,} rows, {result.get('null_rows', 0):,} null, "
        f"{grid.ncols} x {grid.nrows} = {grid.ncols * grid.nrows:,} cells, raster "
        f"{size / mib:.0f} MiB (float32, deflate, 256² tiles)",
    ]
    if processes is not None:
        notes.append(
            f'- the same parts on {args.workers} worker processes (`executor="process"`, '
            "started from this script rather than the CLI, so compare the time inside "
            f"`values()`), same repeats: {med(processes, 'inside_s'):.1f} s inside against "
            f"{med('values', 'inside_s'):.1f} s on the default threads "
            f"({med('values', 'inside_s') / med(processes, 'inside_s'):.2f}x)"
        )
    if baseline is not None:
        before = med(baseline, "wall_s")
        notes.append(
            f"- {baseline}, same repeats: {before / med('plain read', 'wall_s'):.2f}x the plain "
            f"read; ours takes {med('values', 'wall_s') / before:.2f}x its time"
        )
    copy = _fresh_copy(index)
    child = [sys.executable, str(Path(__file__).resolve()), "--breakdown", str(copy), str(raster)]
    done = subprocess.run(child, capture_output=True, text=True, check=True)
    split = json.loads(done.stdout.strip().splitlines()[-1])
    total = split.pop("all (process CPU)")
    one_wall = split.pop("wall")
    notes += [
        f"- where the CPU goes (one worker in one process, thread CPU per phase; "
        f"{one_wall:.1f} s wall, {total:.1f} s CPU): "
        + "; ".join(
            f"{name} {sec:.1f} s" for name, sec in sorted(split.items(), key=lambda kv: -kv[1])
        )
        + f"; the rest {total - sum(split.values()):.1f} s",
    ]
    text = [*lines, "", *notes]
    if not args.no_exactextract:
        ee = _exactextract(index, raster)
        copy = WORK / "run"  # the last values run's output
        stats_path = tileindex.open(copy).path("region_values")
        ours = {r["country_iso"]: r for r in pq.read_table(stats_path).to_pylist()}
        text += [
            "",
            f"- exactextract `count`, `sum` on the {len(ee['per_key'])} kept country "
            f"geometries: {ee['seconds']:.1f} s wall, {ee['cpu_seconds']:.1f} s CPU (one "
            f"process), {ee['seconds'] / med('values', 'wall_s'):.1f}x our values run; "
            f"crossing ±180: {', '.join(ee['crosses_180']) or 'none'}",
            "",
            *_compare(ours, ee),
        ]
    out = "\n".join(text)
    print(out)
    if args.record:
        record(
            f"Values ({args.record}): world at {args.resolution:g}″, "
            f"--workers {args.workers}, medians of {args.repeats}",
            out,
        )
    if math.isnan(ratio):
        raise SystemExit("no timing")


if __name__ == "__main__":
    main()
