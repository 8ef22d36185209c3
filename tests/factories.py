"""Writers of small test inputs (ISO lists, GeoParquet country layers, grid GeoTIFFs) and
the small world that the end-to-end tests share."""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from pyproj import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from shapely.geometry.base import BaseGeometry

from tileindex.grid import Grid
from tileindex.regions_data import tiling_polygons

# Pass as ``crs`` to write_countries to write ``"crs": null`` (GeoParquet: CRS unknown).
CRS_NULL = "null"

Transform = tuple[float, float, float, float, float, float]
ONE_DEGREE: Transform = (1.0, 0.0, -180.0, 0.0, -1.0, 90.0)


def write_iso(
    path: Path,
    codes: Sequence[str | None],
    fmt: str = "parquet",
    column: str = "country_iso",
) -> Path:
    """An ISO list with ``column`` (the codes, as given) and a carried ``name`` column."""
    path = Path(path)
    names = [f"name of {c}" for c in codes]
    if fmt == "parquet":
        table = pa.table(
            {column: pa.array(list(codes), pa.string()), "name": pa.array(names, pa.string())}
        )
        pq.write_table(table, path)
    elif fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([column, "name"])
            writer.writerows([c or "", n] for c, n in zip(codes, names, strict=True))
    else:
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    return path


def write_countries(
    path: Path,
    rows: Sequence[tuple[str | None, BaseGeometry | bytes | None]],
    crs: str | None = "EPSG:4326",
    geo_metadata: bool = True,
    iso_column: str = "country_iso",
    geom_column: str = "geom",
) -> Path:
    """A GeoParquet 1.0 layer; a ``bytes`` geometry is written as given (raw WKB).

    ``crs``: written as PROJJSON; ``None`` omits the key (GeoParquet default OGC:CRS84);
    ``CRS_NULL`` writes ``"crs": null``.
    """
    path = Path(path)
    wkb: list[bytes | None] = []
    types: set[str] = set()
    for _, geom in rows:
        if geom is None or isinstance(geom, bytes):
            wkb.append(geom)
        else:
            wkb.append(shapely.to_wkb(geom))
            types.add(geom.geom_type)
    table = pa.table(
        {
            iso_column: pa.array([code for code, _ in rows], pa.string()),
            geom_column: pa.array(wkb, pa.binary()),
        }
    )
    if geo_metadata:
        column: dict[str, object] = {"encoding": "WKB", "geometry_types": sorted(types)}
        if crs == CRS_NULL:
            column["crs"] = None
        elif crs is not None:
            column["crs"] = CRS.from_user_input(crs).to_json_dict()
        geo = {"version": "1.0.0", "primary_column": geom_column, "columns": {geom_column: column}}
        table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    pq.write_table(table, path)
    return path


def write_grid(
    path: Path,
    ncols: int,
    nrows: int,
    transform: Transform | None = ONE_DEGREE,
    crs: str | None = "EPSG:4326",
    sparse: bool = True,
) -> Path:
    """A 1-band uint8 GeoTIFF defining the grid; tiled, deflated and (by default) sparse,
    so it holds a header and no pixel blocks. ``transform=None`` writes no geotransform."""
    path = Path(path)
    profile = {
        "driver": "GTiff",
        "width": ncols,
        "height": nrows,
        "count": 1,
        "dtype": "uint8",
        "crs": crs,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "sparse_ok": sparse,
    }
    if transform is not None:
        profile["transform"] = Affine(*transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as ds:
            if not sparse:
                ds.write((np.arange(nrows * ncols) % 251).astype(np.uint8).reshape(1, nrows, ncols))
    return path


def make_inputs(
    tmp_path: Path,
    countries: Mapping[str, Sequence[BaseGeometry]],
    iso_codes: Sequence[str] | None = None,
    ncols: int = 360,
    nrows: int = 180,
    transform: Transform = ONE_DEGREE,
) -> tuple[Path, Path, Path]:
    """Write ``iso.parquet``, ``countries.parquet`` and ``grid.tif`` into ``tmp_path``.

    The ISO list defaults to the codes of ``countries``; each geometry is one row.
    """
    tmp_path = Path(tmp_path)
    codes = sorted(countries) if iso_codes is None else list(iso_codes)
    iso = write_iso(tmp_path / "iso.parquet", codes)
    rows = [(code, geom) for code, geoms in countries.items() for geom in geoms]
    layer = write_countries(tmp_path / "countries.parquet", rows)
    grid = write_grid(tmp_path / "grid.tif", ncols, nrows, transform)
    return iso, layer, grid


def build_args(iso: Path, countries: Path, raster: Path, out: Path, *extra: str) -> list[str]:
    """``tileindex build`` arguments for these inputs, quiet, plus ``extra``."""
    return [
        "build",
        "--iso",
        str(iso),
        "--countries",
        str(countries),
        "--raster",
        str(raster),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


# -- the small world --------------------------------------------------------------------------

# The world of the end-to-end tests (test_pipeline, test_validate, test_parity; conftest's
# ``small_world`` fixture writes it once per session): a 0.5-degree grid whose west edge
# overhangs -180 like WorldPop's, so column 0 spans -180.25 .. -179.75 and its western
# sliver wraps next to +180.
SMALL_WORLD_GRID = Grid.from_transform(720, 200, (0.5, 0.0, -180.25, 0.0, -0.5, 60.0))
SMALL_WORLD_COUNTRIES: dict[str, list[BaseGeometry]] = {
    # a host whose hole is exactly the enclave BB's outline
    "AA": [
        shapely.Polygon(
            [(0, 0), (30, 0), (30, 20), (0, 20)], [[(10, 5), (10, 10), (15, 10), (15, 5)]]
        )
    ],
    "BB": [shapely.box(10, 5, 15, 10)],
    # two rows for one code, one a sliver thinner than a cell
    "CC": [shapely.box(-60, 30, -50, 40), shapely.box(-50, 30, -49.9, 35)],
    # given beyond +180: cut at the antimeridian and wrapped
    "FJ": [shapely.Polygon([(177, -18), (182.3, -18), (182.3, -15.1), (177, -15.1)])],
}
SMALL_WORLD_CODES = ("AA", "BB", "CC", "FJ", "ZZ")  # ZZ: in the ISO list, with no polygon


def make_small_world(folder: Path) -> tuple[Path, Path, Path]:
    """The small world's ``iso.parquet``, ``countries.parquet`` and ``grid.tif``."""
    grid = SMALL_WORLD_GRID
    return make_inputs(
        folder,
        SMALL_WORLD_COUNTRIES,
        list(SMALL_WORLD_CODES),
        ncols=grid.ncols,
        nrows=grid.nrows,
        transform=grid.transform,
    )


# -- a tiling region layer --------------------------------------------------------------------


@dataclass(frozen=True)
class Tiling:
    """A synthetic region layer that tiles ``window`` (see :func:`make_tiling`)."""

    regions: Path
    keys: Path
    raster: Path
    key_column: str
    codes: tuple[str, ...]
    polygons: tuple[shapely.Polygon, ...]
    window: tuple[float, float, float, float]
    grid: Grid


def make_tiling(
    folder: Path,
    n_regions: int,
    window: tuple[float, float, float, float] = (-10.0, -5.0, 10.0, 5.0),
    grid: Grid | None = None,
    *,
    seed: int = 0,
    key_column: str = "region_id",
) -> Tiling:
    """``regions.parquet`` (``n_regions`` non-overlapping quadrilaterals sharing exact
    edges that tile ``window``: borders on grid lines, through cell centres and off the
    grid, keys ``R00001``...), its key list ``keys.parquet`` and ``grid.tif``.

    The default grid has 0.1° cells with its origin a third of a cell off the window,
    one cell of margin around it, so the window's own outline lies off the grid lines.
    """
    folder = Path(folder)
    if grid is None:
        west, south, east, north = window
        cell = 0.1
        x0, y0 = west - cell - cell / 3, north + cell + cell / 3
        ncols = math.ceil((east - x0) / cell) + 1
        nrows = math.ceil((y0 - south) / cell) + 1
        grid = Grid.from_transform(ncols, nrows, (cell, 0.0, x0, 0.0, -cell, y0))
    codes, polygons = tiling_polygons(n_regions, window, grid=grid, seed=seed)
    regions = write_countries(
        folder / "regions.parquet", list(zip(codes, polygons, strict=True)), iso_column=key_column
    )
    keys = write_iso(folder / "keys.parquet", codes, column=key_column)
    raster = write_grid(folder / "grid.tif", grid.ncols, grid.nrows, grid.transform)
    return Tiling(regions, keys, raster, key_column, codes, polygons, window, grid)
