"""Core benchmark: memory of a Russia-sized country and fast vs legacy throughput.

Builds a synthetic country (a wavy ellipse, 100 k vertices, > 40 M cells) on the
WorldPop 30-arc-second grid in a child process and reports its peak RSS (from the OS),
then times the fast and the legacy engine on the same window sample in this process.

    python benchmarks/bench_core.py [--out benchmarks/_work] [--repeats 3]

Prints the numbers and writes them to ``<out>/bench_core.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from pyproj import CRS
from rasterio.transform import Affine

from tileindex import kernel, legacy
from tileindex.geometry import country_geometry
from tileindex.grid import Grid, Window

WORLDPOP = (43199, 16755, (0.0083333333, 0.0, -180.0012493, 0.0, -0.0083333333, 83.6329165016827))


def synthetic_country(n: int = 100_000) -> shapely.Polygon:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = 1.0 + 0.05 * np.sin(37 * t) + 0.02 * np.sin(501 * t)
    return shapely.Polygon(np.c_[100.0 + 60.0 * r * np.cos(t), 60.0 + 20.0 * r * np.sin(t)])


def write_inputs(folder: Path) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    iso = folder / "iso.parquet"
    pq.write_table(pa.table({"country_iso": ["RU"]}), iso)
    countries = folder / "countries.parquet"
    geo = {
        "version": "1.0.0",
        "primary_column": "geom",
        "columns": {
            "geom": {
                "encoding": "WKB",
                "geometry_types": ["Polygon"],
                "crs": CRS.from_epsg(4326).to_json_dict(),
            }
        },
    }
    table = pa.table({"country_iso": ["RU"], "geom": [shapely.to_wkb(synthetic_country())]})
    table = table.replace_schema_metadata({"geo": json.dumps(geo)})
    pq.write_table(table, countries)
    raster = folder / "grid.tif"
    width, height, (a, b, c, d, e, f) = WORLDPOP
    with rasterio.open(
        raster,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=Affine(a, b, c, d, e, f),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        sparse_ok=True,
    ):
        pass
    return iso, countries, raster


def build_in_child(iso: Path, countries: Path, raster: Path, out: Path, predicate: str) -> dict:
    code = (
        "import json, sys, resource\n"
        "from tileindex.pipeline import build\n"
        f"r = build({str(iso)!r}, {str(countries)!r}, {str(raster)!r}, {str(out)!r}, "
        f"predicate={predicate!r})\n"
        "print(json.dumps({'rows': r.rows_emitted, 'seconds': r.seconds,"
        " 'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,"
        " 'cells': r.report.pat.cells_scanned_total}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def engine_rate(engine, grid: Grid, window: Window, country, predicate: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine(grid, window, country, predicate)
        times.append(time.perf_counter() - t0)
    return window.size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/_work"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    iso, countries, raster = write_inputs(args.out / "inputs")

    results: dict[str, object] = {
        "machine": f"{platform.machine()} python {platform.python_version()}",
        "cpus": len(os.sched_getaffinity(0)),
    }
    for predicate in ("center", "any_overlap"):
        run = build_in_child(iso, countries, raster, args.out / f"build-{predicate}", predicate)
        results[f"build_{predicate}"] = run
        print(
            f"build {predicate:11s}: {run['rows']:,} rows, {run['cells']:,} cells scanned, "
            f"{run['seconds']:.1f} s, peak RSS {run['rss'] / 2**20:.0f} MiB"
        )

    grid = Grid.from_transform(WORLDPOP[0], WORLDPOP[1], WORLDPOP[2])
    country = country_geometry("RU", [synthetic_country()])
    # a boundary-rich sample window at the west tip of the ellipse, 32 x 32 cells
    row = int((83.6329165016827 - 60.0) / 0.0083333333)
    col = int((40.0 + 180.0012493) / 0.0083333333) - 32
    sample = Window(row - 16, row + 16, col + 16, col + 48)
    big = Window(row - 512, row + 512, col + 512, col + 1536)
    for predicate in ("center", "any_overlap"):
        fast_sample = engine_rate(kernel.mask_chunk, grid, sample, country, predicate, args.repeats)
        fast_big = engine_rate(kernel.mask_chunk, grid, big, country, predicate, args.repeats)
        slow = engine_rate(legacy.mask_chunk, grid, sample, country, predicate, 1)
        results[f"rate_{predicate}"] = {
            "fast_cells_per_s_sample_32x32": fast_sample,
            "fast_cells_per_s_1024x1024": fast_big,
            "legacy_cells_per_s_sample_32x32": slow,
            "speedup_same_window": fast_sample / slow,
        }
        print(
            f"{predicate:11s}: fast {fast_big / 1e6:.1f} M cells/s (1024x1024 chunk), "
            f"fast {fast_sample / 1e6:.2f} M cells/s vs legacy {slow:,.0f} cells/s on the same "
            f"32x32 window ({fast_sample / slow:,.0f}x)"
        )
    results["parent_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = args.out / "bench_core.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
