"""The performance floor: the least a tile index build can do, in one process.

For every country (ISO list order), rasterise the union of its polygon rows over its
bounding-box window with GDAL's centre rule (``rasterio.features.rasterize``,
``all_touched=False``), in row blocks of bounded size, and stream the included cells
as the same two datasets (``tile_index``, ``tile_bounds``: the schemas of
``tileindex.contract``) with the same parquet writer settings
(``tileindex.shards.PARQUET_OPTIONS``), the same layout (row groups of 2^20 rows, 8
per file) and the same (country_iso, tile_id) order.

What it deliberately does not do: no exactness (GDAL decides centres on a boundary
its own way), no antimeridian handling beyond wrapping the published longitudes (a
country is scanned over its plain bounding box: Russia and Fiji across the globe),
no validation, no run report, no fsync, no atomic publish, no determinism across
block sizes. It is a yardstick, not a product.

    python benchmarks/floor.py --iso in/iso.parquet --countries in/countries.parquet \
        --raster in/grid.tif --out out/ [--predicate center] [--mask-only]

``--mask-only`` rasterises and counts but writes nothing (the cost of the masks
alone). ``--predicate any_overlap`` uses GDAL ``all_touched=True``, which is NOT
any_overlap (it includes edge and corner contacts); it is there for rough timing
only. A JSON line with the totals is printed, and ``<out>/floor_report.json`` holds
the rows per country.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import rasterio
import rasterio.features
import shapely
from pyproj import Geod
from rasterio.transform import Affine

from tileindex.contract import TILE_BOUNDS_SCHEMA, TILE_INDEX_SCHEMA
from tileindex.shards import PARQUET_OPTIONS

ROWS_PER_ROW_GROUP = 1 << 20
ROW_GROUPS_PER_FILE = 8
DEFAULT_BLOCK_CELLS = 1 << 21


def read_codes(path: Path) -> list[str]:
    if path.read_bytes()[:4] == b"PAR1":
        table = pq.read_table(path, columns=["country_iso"])
    else:
        table = pacsv.read_csv(path)
    return sorted(set(table.column("country_iso").to_pylist()))


def read_countries(path: Path) -> dict[str, shapely.Geometry]:
    """The union of each code's polygon rows, longitudes as given."""
    table = pq.read_table(path, columns=["country_iso", "geom"])
    codes = np.asarray(table.column("country_iso").to_pylist(), dtype=object)
    geoms = shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))
    out = {}
    for code in sorted(set(codes.tolist())):
        rows = geoms[codes == code]
        out[code] = rows[0] if rows.size == 1 else shapely.union_all(rows)
    return out


def row_areas(south: np.ndarray, north: np.ndarray, width_deg: float) -> np.ndarray:
    """Cell area per row: pyproj Geod on the cell's corners (as the contract measures it;
    ~0.1 s for the 30" grid, and it makes the bytes comparable with tileindex's)."""
    geod = Geod(ellps="WGS84")
    lons = [0.0, width_deg, width_deg, 0.0]
    out = np.empty(south.size, dtype=np.float64)
    for i, (s, n) in enumerate(zip(south.tolist(), north.tolist(), strict=True)):
        out[i] = abs(geod.polygon_area_perimeter(lons, [s, s, n, n])[0])
    return out


class GridTables:
    """Per-column and per-row values, computed once and gathered per cell."""

    def __init__(self, width: int, height: int, t: Affine) -> None:
        self.ncols, self.nrows = width, height
        self.a, self.c, self.e, self.f = t.a, t.c, t.e, t.f
        col = np.arange(width, dtype=np.float64)
        row = np.arange(height, dtype=np.float64)
        lon = self.c + self.a * (col + 0.5)
        # wrapped as published: centre into [-180, 180], west [-180, 180), east (-180, 180]
        self.lon = np.where(lon > 180.0, lon - 360.0, np.where(lon < -180.0, lon + 360.0, lon))
        west, east = self.c + self.a * col, self.c + self.a * (col + 1.0)
        west = np.where(west >= 180.0, west - 360.0, west)
        self.west = np.where(west < -180.0, west + 360.0, west)
        east = np.where(east > 180.0, east - 360.0, east)
        self.east = np.where(east <= -180.0, east + 360.0, east)
        self.lat = self.f + self.e * (row + 0.5)
        self.north = self.f + self.e * row
        self.south = self.f + self.e * (row + 1.0)
        self.area = row_areas(self.south, self.north, self.a)

    def window(self, bounds: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        minx, miny, maxx, maxy = bounds
        c0 = max(0, math.floor((minx - self.c) / self.a))
        c1 = min(self.ncols, math.ceil((maxx - self.c) / self.a))
        r0 = max(0, math.floor((maxy - self.f) / self.e))
        r1 = min(self.nrows, math.ceil((miny - self.f) / self.e))
        return r0, r1, c0, c1


class Sink:
    """Both datasets, cut into row groups of ROWS_PER_ROW_GROUP and files of
    ROW_GROUPS_PER_FILE row groups, named like tileindex's part files."""

    def __init__(self, out: Path) -> None:
        self.dirs = {}
        for name in ("tile_index", "tile_bounds"):
            (out / name).mkdir(parents=True, exist_ok=False)
            self.dirs[name] = out / name
        self.schemas = {"tile_index": TILE_INDEX_SCHEMA, "tile_bounds": TILE_BOUNDS_SCHEMA}
        self.pending: list[tuple[pa.RecordBatch, pa.RecordBatch]] = []
        self.pending_rows = 0
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.files = 0
        self.groups = 0
        self.rows = 0
        self.write_s = 0.0  # inside pyarrow's write_table and close, wall (one thread)

    def write(self, index: pa.RecordBatch, bounds: pa.RecordBatch) -> None:
        self.pending.append((index, bounds))
        self.pending_rows += index.num_rows
        while self.pending_rows >= ROWS_PER_ROW_GROUP:
            self._flush(ROWS_PER_ROW_GROUP)

    def _flush(self, n: int) -> None:
        take: list[tuple[pa.RecordBatch, pa.RecordBatch]] = []
        got = 0
        while got < n:
            index, bounds = self.pending.pop(0)
            k = min(n - got, index.num_rows)
            take.append((index.slice(0, k), bounds.slice(0, k)))
            if k < index.num_rows:
                self.pending.insert(0, (index.slice(k), bounds.slice(k)))
            got += k
        self.pending_rows -= n
        if not self.writers:
            for name, folder in self.dirs.items():
                self.writers[name] = pq.ParquetWriter(
                    folder / f"part-{self.files:05d}.parquet",
                    self.schemas[name],
                    **PARQUET_OPTIONS[name],
                )
        for i, name in enumerate(("tile_index", "tile_bounds")):
            table = pa.Table.from_batches([pair[i] for pair in take], schema=self.schemas[name])
            t0 = time.perf_counter()
            self.writers[name].write_table(table, row_group_size=n)
            self.write_s += time.perf_counter() - t0
        self.rows += n
        self.groups += 1
        if self.groups == ROW_GROUPS_PER_FILE:
            self._close_files()

    def _close_files(self) -> None:
        t0 = time.perf_counter()
        for w in self.writers.values():
            w.close()
        self.write_s += time.perf_counter() - t0
        self.writers = {}
        self.files += 1
        self.groups = 0

    def close(self) -> None:
        if self.pending_rows:
            self._flush(self.pending_rows)
        if self.writers:
            self._close_files()


def batches(
    g: GridTables, iso: str, rule: str, rows: np.ndarray, cols: np.ndarray
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    n = rows.size
    iso_arr = pa.repeat(pa.scalar(iso, pa.string()), n)
    tile_id = pa.array(rows.astype(np.uint64) * np.uint64(g.ncols) + cols.astype(np.uint64))
    lon = pa.array(g.lon[cols])
    lat = pa.array(g.lat[rows])
    index = pa.RecordBatch.from_arrays(
        [
            iso_arr,
            tile_id,
            pa.array(rows.astype(np.uint32)),
            pa.array(cols.astype(np.uint32)),
            lon,
            lat,
            pa.array(g.area[rows]),
            pa.repeat(pa.scalar(rule, pa.string()), n),
        ],
        schema=TILE_INDEX_SCHEMA,
    )
    bounds = pa.RecordBatch.from_arrays(
        [
            iso_arr,
            tile_id,
            pa.array(g.west[cols]),
            pa.array(g.east[cols]),
            pa.array(g.south[rows]),
            pa.array(g.north[rows]),
            lon,
            lat,
        ],
        schema=TILE_BOUNDS_SCHEMA,
    )
    return index, bounds


def run(args: argparse.Namespace) -> dict[str, object]:
    t0 = time.perf_counter()
    codes = read_codes(args.iso)
    countries = read_countries(args.countries)
    with rasterio.open(args.raster) as src:
        width, height, transform = src.width, src.height, src.transform
    g = GridTables(width, height, transform)
    all_touched = args.predicate == "any_overlap"
    sink = None if args.mask_only else Sink(args.out)
    per_country: dict[str, int] = {}
    cells_scanned = 0
    for iso in codes:
        geom = countries.get(iso)
        if geom is None or geom.is_empty:
            continue
        r0, r1, c0, c1 = g.window(geom.bounds)
        if r1 <= r0 or c1 <= c0:
            continue
        w = c1 - c0
        step = max(1, args.block_cells // w)
        count = 0
        for rs in range(r0, r1, step):
            re_ = min(rs + step, r1)
            cells_scanned += (re_ - rs) * w
            # clip to the block plus a one-cell rim: GDAL walks every edge on every
            # scanline, so a block should only see its own edges
            north, south = g.f + g.e * rs, g.f + g.e * re_
            x0, x1 = g.c + g.a * c0, g.c + g.a * c1
            piece = shapely.clip_by_rect(geom, x0 - g.a, south + g.e, x1 + g.a, north - g.e)
            if piece.is_empty:
                continue
            mask = rasterio.features.rasterize(
                [(piece, 1)],
                out_shape=(re_ - rs, w),
                transform=Affine(g.a, 0.0, x0, 0.0, g.e, north),
                fill=0,
                all_touched=all_touched,
                dtype="uint8",
            )
            if sink is None:
                count += int(np.count_nonzero(mask))
                continue
            rr, cc = np.nonzero(mask)
            if rr.size == 0:
                continue
            count += rr.size
            sink.write(*batches(g, iso, args.predicate, rr + rs, cc + c0))
        per_country[iso] = count
    if sink is not None:
        sink.close()
    report = {
        "rows": sum(per_country.values()),
        "cells_scanned": cells_scanned,
        "countries_with_rows": sum(1 for v in per_country.values() if v),
        "seconds": time.perf_counter() - t0,
        "mask_only": bool(args.mask_only),
        "predicate": args.predicate,
        "all_touched": all_touched,
        "block_cells": args.block_cells,
        "write_s": sink.write_s if sink is not None else 0.0,
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "floor_report.json").write_text(
            json.dumps({**report, "rows_per_country": per_country}, indent=1) + "\n"
        )
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iso", type=Path, required=True)
    p.add_argument("--countries", type=Path, required=True)
    p.add_argument("--raster", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--predicate", choices=("center", "any_overlap"), default="center")
    p.add_argument("--mask-only", action="store_true", help="rasterise and count, write nothing")
    p.add_argument("--block-cells", type=int, default=DEFAULT_BLOCK_CELLS)
    args = p.parse_args(argv)
    if not args.mask_only and args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"floor: {args.out} is not empty; pass a fresh folder")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
