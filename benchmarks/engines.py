"""Comparison engines on samples, for extrapolation to the world (run by run.py).

    python benchmarks/engines.py window --inputs DIR --lon 4.6 --lat 51.93 --size 256 \
        --engines legacy,kernel,shapely [--predicate center]
    python benchmarks/engines.py exactextract --inputs DIR --countries BR,CN,AU

``window``: every country that meets the sample window (its north-west
corner at lon/lat, ``size`` x ``size`` cells) is masked over the whole window by each
engine: ``legacy`` (tileindex's per-cell shapely reference), ``kernel`` (tileindex's
fast exact engine), ``shapely`` (brute force: ``shapely.contains_xy`` of the prepared
country on every centroid, one vectorised call). Rates are cells x countries per
second, the unit of the world's ``cells_scanned_total``.

``exactextract``: ``count(default_value=1, coverage_weight=none)``, i.e. the number of
cells with coverage fraction > 0 (the any_overlap analogue; mask only), per country,
each country one feature (the union of its rows). Its rate is cells of the country's
bounding box per second.

``aligned``: GDAL's centre rule vs the exact ``center`` rule on grid-aligned polygons
(borders through centroids), where the two can disagree.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import rasterio
import shapely

from tileindex.geometry import CountryGeometry, country_geometry
from tileindex.grid import Grid, Window
from tileindex.inputs import read_country_layer, read_iso_list


def load(inputs: Path) -> tuple[Grid, dict[str, CountryGeometry], Path]:
    iso = read_iso_list(inputs / "iso.parquet")
    layer = read_country_layer(inputs / "countries.parquet", iso)
    raster = inputs / "grid.tif"
    with rasterio.open(raster) as src:
        grid = Grid.from_transform(src.width, src.height, tuple(src.transform)[:6])
    geoms = {code: country_geometry(code, rows) for code, rows in layer.rows.items()}
    return grid, geoms, raster


def sample_window(grid: Grid, lon: float, lat: float, size: int) -> Window:
    col = math.floor((lon - grid.c) / grid.a)
    row = math.floor((lat - grid.f) / grid.e)
    return Window(row, min(row + size, grid.nrows), col, min(col + size, grid.ncols))


def _time(fn, *args):  # type: ignore[no-untyped-def]
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.process_time() - c0


def _shapely_mask(grid: Grid, w: Window, country: CountryGeometry) -> int:
    geom = country.geom
    shapely.prepare(geom)
    lon = grid.centroid_lon(np.arange(w.col_start, w.col_stop))
    lat = grid.centroid_lat(np.arange(w.row_start, w.row_stop))
    x, y = np.meshgrid(lon, lat)
    return int(np.count_nonzero(shapely.contains_xy(geom, x, y)))


def cmd_window(args: argparse.Namespace) -> dict[str, object]:
    from tileindex import kernel, legacy

    grid, geoms, _ = load(args.inputs)
    w = sample_window(grid, args.lon, args.lat, args.size)
    x0, y1 = grid.c + grid.a * w.col_start, grid.f + grid.e * w.row_start
    x1, y0 = grid.c + grid.a * w.col_stop, grid.f + grid.e * w.row_stop
    box = shapely.box(x0, y0, x1, y1)
    codes = [c for c, g in sorted(geoms.items()) if shapely.intersects(box, g.geom)]
    result: dict[str, object] = {
        "window": {
            "row_start": w.row_start,
            "row_stop": w.row_stop,
            "col_start": w.col_start,
            "col_stop": w.col_stop,
            "bounds": [x0, y0, x1, y1],
        },
        "predicate": args.predicate,
        "countries": codes,
        "cells_per_country": w.size,
    }
    engines = {}
    for name in args.engines.split(","):
        per: dict[str, dict[str, float]] = {}
        for code in codes:
            country = geoms[code]
            if name == "legacy":
                runs, s, cpu = _time(legacy.mask_chunk, grid, w, country, args.predicate)
                inc = runs.cells_included
            elif name == "kernel":
                # the first call builds the GEOS indexes once per country, as a worker does
                country.exact  # noqa: B018
                runs, s, cpu = _time(kernel.mask_chunk, grid, w, country, args.predicate)
                inc = runs.cells_included
            elif name == "shapely":
                inc, s, cpu = _time(_shapely_mask, grid, w, country)
            else:
                raise SystemExit(f"unknown engine {name!r}")
            per[code] = {"included": inc, "seconds": s, "cpu_seconds": cpu}
        secs = sum(v["seconds"] for v in per.values())
        cells = w.size * len(codes)
        engines[name] = {
            "per_country": per,
            "seconds": secs,
            "cells": cells,
            "cells_per_second": cells / secs if secs else None,
        }
    result["engines"] = engines
    return result


def cmd_exactextract(args: argparse.Namespace) -> dict[str, object]:
    from exactextract import exact_extract
    from exactextract.feature import JSONFeatureSource

    grid, geoms, raster = load(args.inputs)
    per = {}
    for code in args.countries.split(","):
        g = geoms[code]
        feature = {
            "type": "Feature",
            "properties": {"iso": code},
            "geometry": json.loads(shapely.to_geojson(g.geom)),
        }
        minx, miny, maxx, maxy = g.bounds
        bbox_cells = math.ceil((maxx - minx) / grid.a) * math.ceil((maxy - miny) / -grid.e)
        t0, c0 = time.perf_counter(), time.process_time()
        res = exact_extract(
            str(raster),
            JSONFeatureSource([feature]),
            ["n=count(default_value=1,coverage_weight=none)"],
            include_cols=["iso"],
            output="geojson",
        )
        s, cpu = time.perf_counter() - t0, time.process_time() - c0
        per[code] = {
            "cells_coverage_gt0": int(sum(r["properties"]["n"] for r in res)),
            "bbox_cells": bbox_cells,
            "seconds": s,
            "cpu_seconds": cpu,
            "bbox_cells_per_second": bbox_cells / s,
        }
    secs = sum(v["seconds"] for v in per.values())
    cells = sum(v["bbox_cells"] for v in per.values())
    return {
        "per_country": per,
        "seconds": secs,
        "bbox_cells": cells,
        "cells_per_second": cells / secs,
    }


def cmd_aligned(args: argparse.Namespace) -> dict[str, object]:
    """GDAL's centre rule vs the exact one where they can differ: borders through
    centroids (grid-aligned input), on an 8 x 8 unit grid whose centroids are k + 0.5."""
    import rasterio.features
    from rasterio.transform import Affine

    from tileindex import kernel

    grid = Grid.from_transform(8, 8, (1.0, 0.0, 0.0, 0.0, -1.0, 8.0))
    cases = {
        "square, edges through centroids": shapely.box(0.5, 0.5, 3.5, 3.5),
        "triangle, all edges through centroids": shapely.Polygon(
            [(0.5, 0.5), (6.5, 0.5), (0.5, 6.5)]
        ),
        "sliver along a diagonal of centroids": shapely.Polygon(
            [(0.5, 0.5), (7.5, 7.5), (7.5, 7.0)]
        ),
        "square, edges on cell edges": shapely.box(1.0, 1.0, 5.0, 5.0),
    }
    out = {}
    for name, poly in cases.items():
        gdal = rasterio.features.rasterize(
            [(poly, 1)], out_shape=(8, 8), transform=Affine(1, 0, 0, 0, -1, 8), all_touched=False
        ).astype(bool)
        exact = kernel.mask_chunk(
            grid, Window(0, 8, 0, 8), country_geometry("XX", [poly]), "center"
        ).to_mask()
        out[name] = {
            "gdal": int(gdal.sum()),
            "exact": int(exact.sum()),
            "only_gdal": int((gdal & ~exact).sum()),
            "only_exact": int((exact & ~gdal).sum()),
        }
    return {"cases": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pw = sub.add_parser("window")
    pw.add_argument("--inputs", type=Path, required=True)
    pw.add_argument("--lon", type=float, required=True)
    pw.add_argument("--lat", type=float, required=True)
    pw.add_argument("--size", type=int, default=256)
    pw.add_argument("--engines", default="legacy,kernel,shapely")
    pw.add_argument("--predicate", default="center", choices=("center", "any_overlap"))
    pe = sub.add_parser("exactextract")
    pe.add_argument("--inputs", type=Path, required=True)
    pe.add_argument("--countries", required=True)
    sub.add_parser("aligned")
    args = p.parse_args()
    t0 = time.perf_counter()
    commands = {"window": cmd_window, "exactextract": cmd_exactextract, "aligned": cmd_aligned}
    out = commands[args.cmd](args)
    out["process_seconds"] = time.perf_counter() - t0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
