"""Masks of a published index for array users (docs/CONTRACT.md §10.4, §10.5).

A bounding box selects a window of the grid: every cell whose box meets the open lon/lat
box, in the grid's own (unwrapped) coordinates, cut to the grid. The window becomes a lazy
dask-backed ``xarray.DataArray`` with ``lat``/``lon`` coordinates at the published cell
centres (regionmask's layout), or a GeoTIFF on the grid's transform for that window.
Each chunk reads only the row groups whose ``tile_id`` statistics meet its rows.

- ``id``: uint32 region ids, 0 = no region; id i is the i-th key of the index (1-based,
  the index's key order), the same ids in every window and file. A cell claimed by
  several regions has no single id: refused (use ``boolean``).
- ``boolean``: a 3-D mask, dims (region, lat, lon), one layer per region, as regionmask's
  ``mask_3D`` handles overlapping regions.
- ``fraction``: like ``boolean`` with the cells' ``coverage_fraction`` (needs
  ``tile_coverage``), as regionmask's fractional masks.

The regions of a 3-D mask are those whose kept geometry's bounding box meets the window
(a region outside it cannot own a cell there), or the keys asked for.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tileindex.errors import ConfigError, InputError, InputFileError
from tileindex.fsio import write_atomic
from tileindex.grid import Grid, Window
from tileindex.index import Index
from tileindex.layout import COVERAGE_DATASET
from tileindex.rowgroups import RowGroup, read_row_groups, row_groups, select_row_groups

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["KINDS", "MaskResult", "bbox_window", "to_xarray", "write_mask"]

log = logging.getLogger(__name__)

KINDS = ("id", "fraction", "boolean")
_REGION_CHUNK = 16  # regions per chunk of a 3-D mask


def bbox_window(grid: Grid, bbox: Sequence[float]) -> Window:
    """The cells of ``grid`` whose box meets the open box ``(west, south, east, north)``
    (degrees, in the grid's coordinates), cut to the grid. Inverted, non-finite or
    off-grid boxes are refused."""
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ConfigError(
            f"bbox {bbox!r} is not four numbers; give it as (west, south, east, north)"
        ) from None
    shown = f"{w:g},{s:g},{e:g},{n:g}"
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise ConfigError(f"bbox {shown} has a non-finite value; give four finite degrees")
    if not (w < e and s < n):
        raise ConfigError(
            f"bbox {shown} is inverted or empty; need west < east and south < north "
            "(W,S,E,N; a box across the antimeridian: one mask per side)"
        )
    x0, x1 = grid.raw_x_edges(np.arange(grid.ncols))
    south, north = grid.lat_bounds(np.arange(grid.nrows))
    cols = np.flatnonzero((x0 < e) & (x1 > w))
    rows = np.flatnonzero((south < n) & (north > s))
    if cols.size == 0 or rows.size == 0:
        raise ConfigError(
            f"bbox {shown} holds no cell of the grid, which spans lon {x0[0]:g}..{x1[-1]:g}, "
            f"lat {south[-1]:g}..{north[0]:g}; give a box that meets it"
        )
    return Window(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def region_ids(index: Index) -> dict[str, int]:
    """key -> id (1-based position in the index's key order; 0 means no region)."""
    return {k: i for i, k in enumerate(index.keys, start=1)}


@dataclass(frozen=True)
class _Source:
    """What a chunk needs to fill itself: picklable, so any dask scheduler can run it."""

    grid: Grid
    key_column: str
    kind: str
    groups: tuple[RowGroup, ...]
    ids: tuple[tuple[str, int], ...]  # id kind: every key's id
    regions: tuple[str, ...]  # 3-D kinds: the layers, in order

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype({"id": np.uint32, "boolean": np.bool_, "fraction": np.float64}[self.kind])


def _source(index: Index, kind: str, window: Window, keys: Iterable[str] | None) -> _Source:
    if kind not in KINDS:
        raise ConfigError(f"kind {kind!r} is unknown; valid kinds are {', '.join(KINDS)}")
    dataset = COVERAGE_DATASET if kind == "fraction" else "tile_index"
    if kind == "fraction" and COVERAGE_DATASET not in index.datasets:
        raise InputFileError(
            f"kind='fraction' needs tile_coverage, and {index.root} holds none for parameter "
            f"hash {index.parameter_hash[:12]}...: rebuild with --coverage, or use "
            "kind='boolean'"
        )
    groups = row_groups(index.path(dataset), index.key_column)
    regions: tuple[str, ...] = ()
    if kind != "id":
        regions = _regions(index, window) if keys is None else _asked(index, keys)
    return _Source(
        index.grid,
        index.key_column,
        kind,
        groups,
        tuple(region_ids(index).items()),
        regions,
    )


def _asked(index: Index, keys: Iterable[str]) -> tuple[str, ...]:
    asked = {keys} if isinstance(keys, str) else set(keys)
    unknown = sorted(asked - set(index.keys))
    if unknown:
        raise InputError(
            f"{index.key_column} {', '.join(map(repr, unknown[:5]))} not in this index "
            f"({len(index.keys)} keys, e.g. {', '.join(index.keys[:5])})"
        )
    return tuple(k for k in index.keys if k in asked)


def _regions(index: Index, window: Window) -> tuple[str, ...]:
    """The keys whose kept geometry's bounds meet the window's (wrapped) extent."""
    grid = index.grid
    x0, _ = grid.raw_x_edges([window.col_start])
    _, x1 = grid.raw_x_edges([window.col_stop - 1])
    south, _ = grid.lat_bounds([window.row_stop - 1])
    _, north = grid.lat_bounds([window.row_start])
    w, e = float(x0[0]), float(x1[0])
    if w < -180.0 or e > 180.0:  # the window wraps: any longitude may meet it
        w, e = -180.0, 180.0
    try:
        geometry = index.geometry()
    except InputFileError:
        return tuple(index.keys)  # no kept geometry: every key is a layer
    out = []
    for key in index.keys:
        geom = geometry.get(key)
        if geom is None or geom.is_empty:
            continue
        gw, gs, ge, gn = geom.bounds
        if gw <= e and ge >= w and gs <= float(north[0]) and gn >= float(south[0]):
            out.append(key)
    return tuple(out)


def _fill(source: _Source, block: Window, regions: tuple[str, ...]) -> npt.NDArray[Any]:
    """One chunk: the rows whose tile ids meet the block's rows, placed on the block."""
    g = source.grid
    h, w = block.height, block.width
    lo = block.row_start * g.ncols + block.col_start
    hi = (block.row_stop - 1) * g.ncols + block.col_stop - 1
    keys = None if source.kind == "id" else sorted(regions)
    mine = select_row_groups(source.groups, keys=keys, tile_range=(lo, hi))
    columns = [source.key_column, "tile_id"]
    if source.kind == "fraction":
        columns.append("coverage_fraction")
    if source.kind == "id":
        out: npt.NDArray[Any] = np.zeros((h, w), dtype=np.uint32)
        ids = dict(source.ids)
        owner: npt.NDArray[Any] = np.full((h, w), -1, dtype=np.int64)
    else:
        out = np.zeros((len(regions), h, w), dtype=source.dtype)
        layer = {k: i for i, k in enumerate(regions)}
    for table in read_row_groups(mine, columns, source.key_column, keys=keys, tile_range=(lo, hi)):
        tile = table["tile_id"].to_numpy().astype(np.int64)
        r, c = np.divmod(tile, g.ncols)
        keep = (r >= block.row_start) & (r < block.row_stop)
        keep &= (c >= block.col_start) & (c < block.col_stop)
        if not keep.any():
            continue
        r, c = r[keep] - block.row_start, c[keep] - block.col_start
        key_col = table[source.key_column].combine_chunks()
        codes = key_col.indices.to_numpy()[keep]
        names = key_col.dictionary.to_pylist()
        if source.kind == "id":
            code_id = np.array([ids[k] for k in names], dtype=np.uint32)
            taken = owner[r, c] >= 0
            # a cell seen twice in one table, or already set by an earlier table
            flat = r * w + c
            dup = taken | _repeated(flat)
            if dup.any():
                i = int(np.flatnonzero(dup)[0])
                cell = (int(r[i]) + block.row_start) * g.ncols + int(c[i]) + block.col_start
                raise InputError(
                    f"cell {cell} belongs to several regions, so a mask of ids cannot name "
                    "one; use kind='boolean' (a 3-D mask with a region dimension) or a "
                    "coverage mask (--coverage: a band per region) instead"
                )
            owner[r, c] = codes
            out[r, c] = code_id[codes]
        else:
            code_layer = np.array([layer.get(k, -1) for k in names], dtype=np.int64)
            value: Any = True
            if source.kind == "fraction":
                value = table["coverage_fraction"].to_numpy()[keep]
            out[code_layer[codes], r, c] = value
    return out


def _repeated(flat: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """True for every occurrence after the first of a value."""
    order = np.argsort(flat, kind="stable")
    s = flat[order]
    again = np.zeros(flat.size, dtype=bool)
    again[order[1:]] = s[1:] == s[:-1]
    return again


def _blocks(window: Window, chunks: int) -> tuple[list[int], list[int]]:
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise ConfigError(f"chunks {chunks!r} is not a positive number of cells")
    rows = [*range(window.row_start, window.row_stop, chunks), window.row_stop]
    cols = [*range(window.col_start, window.col_stop, chunks), window.col_stop]
    return rows, cols


def to_xarray(
    index: Index,
    bbox: Sequence[float],
    kind: str = "id",
    chunks: int = 1024,
    keys: Iterable[str] | None = None,
) -> xr.DataArray:
    """A lazy, chunked (dask) mask of the window of ``bbox`` (module doc).

    Parameters
    ----------
    index : an opened index (:func:`tileindex.open`).
    bbox : (west, south, east, north) in degrees, in the grid's coordinates.
    kind : ``id`` (2-D uint32), ``boolean`` or ``fraction`` (3-D, a ``region`` dim).
    chunks : chunk side in cells (lat and lon).
    keys : the regions of a 3-D mask (default: those whose geometry meets the box).

    Examples
    --------
    >>> index = tileindex.open("out/")                                   # doctest: +SKIP
    >>> m = tileindex.to_xarray(index, (5, 45, 11, 48), kind="boolean")  # doctest: +SKIP
    >>> m.sel(region="CH").sum().compute()                               # doctest: +SKIP
    """
    try:
        import dask
        import dask.array as da
        import xarray as xr
    except ImportError:
        raise ConfigError(
            "to_xarray needs xarray and dask: pip install 'tileindex[xarray]'"
        ) from None
    grid = index.grid
    window = bbox_window(grid, bbox)
    source = _source(index, kind, window, keys)
    rows, cols = _blocks(window, chunks)
    layers = [
        source.regions[i : i + _REGION_CHUNK] for i in range(0, len(source.regions), _REGION_CHUNK)
    ]
    fill = dask.delayed(_fill, pure=True)

    def piece(r0: int, r1: int, c0: int, c1: int, regions: tuple[str, ...]) -> Any:
        block = Window(r0, r1, c0, c1)
        shape = (r1 - r0, c1 - c0) if kind == "id" else (len(regions), r1 - r0, c1 - c0)
        return da.from_delayed(fill(source, block, regions), shape=shape, dtype=source.dtype)

    grid_blocks = [
        [(rows[i], rows[i + 1], cols[j], cols[j + 1]) for j in range(len(cols) - 1)]
        for i in range(len(rows) - 1)
    ]
    lat = grid.centroid_lat(np.arange(window.row_start, window.row_stop))
    lon = grid.centroid_lon(np.arange(window.col_start, window.col_stop))
    attrs = {
        "key_column": index.key_column,
        "parameter_hash": index.parameter_hash,
        "predicate": index.predicate,
    }
    if kind == "id":
        data = da.block([[piece(*b, ()) for b in line] for line in grid_blocks])
        return xr.DataArray(
            data,
            dims=("lat", "lon"),
            coords={"lat": lat, "lon": lon},
            name="region_id",
            attrs={**attrs, "keys": list(index.keys), "nodata": 0},
        )
    if layers:
        data = da.concatenate(
            [
                da.block([[piece(*b, part) for b in line] for line in grid_blocks])
                for part in layers
            ],
            axis=0,
        )
    else:
        data = da.zeros((0, window.height, window.width), dtype=source.dtype)
    ids = region_ids(index)
    return xr.DataArray(
        data,
        dims=("region", "lat", "lon"),
        coords={
            "region": np.array(source.regions, dtype=object),
            "id": ("region", np.array([ids[k] for k in source.regions], dtype=np.uint32)),
            "lat": lat,
            "lon": lon,
        },
        name="coverage_fraction" if kind == "fraction" else "mask",
        attrs=attrs,
    )


# -- GeoTIFF ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskResult:
    """What ``write_mask`` wrote: the GeoTIFF, its id table, the window, the band count
    and, for a coverage mask, the key of each band."""

    path: Path
    ids_path: Path
    window: Window
    bands: int
    band_keys: tuple[str, ...] = ()


def write_mask(
    index: Index,
    bbox: Sequence[float],
    out: str | Path,
    coverage: bool = False,
    overwrite: bool = False,
    chunks: int = 1024,
) -> MaskResult:
    """Write the window of ``bbox`` as a cloud-optimised GeoTIFF on the grid's transform
    (EPSG:4326, pixel (0, 0)'s corner is the window's first cell's corner) and an id table
    ``FILE.ids.csv`` beside it.

    Without ``coverage``: one uint32 band of region ids (0 = none, nodata), and the table
    ``id,key`` lists every key of the index. With it: one float64 band of
    ``coverage_fraction`` per region in view (band description = key), and the table
    ``band,id,key``. Chunks are computed one at a time (memory bounded by a chunk); both
    files are written atomically, and nothing is written on an error.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.transform import Affine

    out = Path(out)
    ids_path = out.with_name(out.stem + ".ids.csv")
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise ConfigError(f"{out}: the mask is a GeoTIFF; give a name ending in .tif")
    for p in (out, ids_path):
        if p.exists() and not overwrite:
            raise ConfigError(f"{p} already exists; choose another name or pass --overwrite")
    grid = index.grid
    window = bbox_window(grid, bbox)
    kind = "fraction" if coverage else "id"
    source = _source(index, kind, window, None)
    rows, cols = _blocks(window, chunks)
    bands = 1 if kind == "id" else len(source.regions)
    if bands == 0:
        raise InputError(
            f"no region of the index meets bbox {tuple(bbox)}, so a coverage mask has no "
            "band; give a box over some region"
        )
    transform = Affine(
        grid.a,
        0.0,
        grid.c + grid.a * window.col_start,
        0.0,
        grid.e,
        grid.f + grid.e * window.row_start,
    )
    profile = {
        "driver": "GTiff",
        "width": window.width,
        "height": window.height,
        "count": bands,
        "dtype": "uint32" if kind == "id" else "float64",
        "crs": "EPSG:4326",
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    if kind == "id":
        profile["nodata"] = 0

    def write_tif(tmp: Path) -> None:
        stage = tmp.with_name(tmp.name + ".stage.tif")
        try:
            with rasterio.open(stage, "w", **profile) as dst:
                if kind == "fraction":
                    for b, key in enumerate(source.regions, start=1):
                        dst.set_band_description(b, key)
                for i in range(len(rows) - 1):
                    for j in range(len(cols) - 1):
                        block = Window(rows[i], rows[i + 1], cols[j], cols[j + 1])
                        data = _fill(source, block, source.regions)
                        win = rasterio.windows.Window(
                            block.col_start - window.col_start,
                            block.row_start - window.row_start,
                            block.width,
                            block.height,
                        )
                        if kind == "id":
                            dst.write(data, 1, window=win)
                        else:
                            dst.write(data, window=win)
            rasterio.shutil.copy(
                stage,
                tmp,
                driver="COG",
                COMPRESS="DEFLATE",
                RESAMPLING="NEAREST" if kind == "id" else "AVERAGE",
            )
        finally:
            stage.unlink(missing_ok=True)

    ids = region_ids(index)
    text = io.StringIO()
    table = csv.writer(text, lineterminator="\n")
    if kind == "id":
        table.writerow(["id", "key"])
        table.writerows([i, k] for k, i in ids.items())
    else:
        table.writerow(["band", "id", "key"])
        table.writerows([b, ids[k], k] for b, k in enumerate(source.regions, start=1))
    write_atomic(out, write_tif)
    write_atomic(ids_path, text.getvalue().encode("utf-8"))
    log.info("mask %s: window %s, %d band(s)", out, window, bands)
    return MaskResult(out, ids_path, window, bands, source.regions)
