"""In-memory inputs for ``build()``: a key sequence, a layer (a GeoDataFrame, a mapping or
a sequence of ``(key, geometry)``) and a grid (a rasterio dataset or a ``Grid``), each
checked like its file and identified by the digest of a canonical serialisation
(docs/CONTRACT.md §2, §10.4).

The file readers' checks and messages are reused as they are: a key sequence goes
through the ISO/key list rules, a layer's geometries through the same WKB decoding
(ISO WKB, little-endian, 2-D: exactly what the digest covers is what the build uses),
a dataset's header through the same CRS and transform rules. geopandas is optional: a
GeoDataFrame is recognised by its attributes, never imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from tileindex.contract import is_region_mode, key_sort_key, sort_keys
from tileindex.errors import CrsMismatchError, InputError, IsoForeignKeyError, RasterMismatchError
from tileindex.grid import Grid
from tileindex.inputs import (
    COUNTRY_ROLE,
    GRID_ROLE,
    ISO_COLUMN,
    ISO_ROLE,
    KEYS_ROLE,
    REGION_ROLE,
    CountryLayer,
    GridInput,
    IsoList,
    _check_codes,
    _check_keys,
    _decode_geometries,
    _grid_from_header,
    _one_line,
    _quote,
    _show_key,
    _where,
    crs_name,
    is_wgs84_lonlat,
    key_lines_digest,
    layer_key_list,
    read_country_layer,
    read_grid,
    read_iso_list,
)

logger = logging.getLogger(__name__)

# What an in-memory input is called in messages, where a file input shows its path. It
# is a label, never opened (the dataclasses' ``path`` field holds it).
KEYS_LABEL = Path("(in memory: sequence of keys)")
FRAME_LABEL = Path("(in memory: GeoDataFrame)")
PAIRS_LABEL = Path("(in memory: (key, geometry) pairs)")
GRID_LABEL = Path("(in memory: Grid)")
DATASET_LABEL = Path("(in memory: rasterio dataset)")

# The CRS a Grid implies and every accepted in-memory grid is recorded with (§10.4).
GRID_CRS = "EPSG:4326"

PathLike = str | os.PathLike[str]
# A layer in memory: a GeoDataFrame (typed Any: geopandas is optional), a mapping
# ``{key: geometry}`` or an iterable of ``(key, geometry)`` pairs.
LayerLike = Mapping[str, BaseGeometry | None] | Iterable[tuple[str, BaseGeometry | None]] | Any


def is_path(value: object) -> TypeGuard[PathLike]:
    """A file input (a path) rather than an in-memory one."""
    return isinstance(value, str | os.PathLike)


# -- canonical serialisations (docs/CONTRACT.md §10.4) ---------------------------------


def layer_digest(keys: Sequence[str], wkb: Sequence[bytes]) -> str:
    """SHA-256 of a layer's canonical stream: its rows in the UTF-8 byte order of their
    keys (rows of one key in the given order), each written as the key's UTF-8 bytes, a
    0x00 byte, the WKB's length as unsigned 64-bit little-endian, then the WKB (ISO,
    little-endian, 2-D). Keys hold no control characters and the WKB is length-prefixed,
    so the stream is unambiguous."""
    order = sorted(range(len(keys)), key=lambda i: key_sort_key(keys[i]))  # stable
    digest = hashlib.sha256()
    for i in order:
        digest.update(keys[i].encode("utf-8"))
        digest.update(b"\x00")
        digest.update(struct.pack("<Q", len(wkb[i])))
        digest.update(wkb[i])
    return digest.hexdigest()


def grid_digest(grid: Grid) -> str:
    """SHA-256 of ``{"crs":"EPSG:4326","grid":<Grid.to_json()>}`` as canonical JSON
    (keys sorted, no whitespace, floats in shortest round-trip form), the §7.1 rules."""
    doc = {"crs": GRID_CRS, "grid": grid.to_json()}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- the three inputs --------------------------------------------------------------------


def read_inputs(
    iso: PathLike | Iterable[str] | None,
    countries: Any,
    raster: Any,
    key_column: str,
) -> tuple[IsoList, CountryLayer, GridInput]:
    """The ISO/key list, the layer and the grid, each from a path or from memory."""
    if iso is None:  # region mode without a key list: the layer's keys are the list
        layer = read_layer(countries, None, key_column)
        iso_list = layer_key_list(layer)
    else:
        iso_list = (
            read_iso_list(iso, key_column) if is_path(iso) else keys_from_memory(iso, key_column)
        )
        layer = read_layer(countries, iso_list, key_column)
    return iso_list, layer, read_grid(raster) if is_path(raster) else grid_from_memory(raster)


def read_layer(countries: Any, iso: IsoList | None, key_column: str) -> CountryLayer:
    """The layer from a path or from memory."""
    if is_path(countries):
        return read_country_layer(countries, iso, key_column)
    return layer_from_memory(countries, iso, key_column)


def keys_from_memory(values: object, key_column: str = ISO_COLUMN) -> IsoList:
    """The ISO list (or region mode's key list) from a sequence of keys, checked like
    the file's column; its digest is :func:`~tileindex.inputs.key_lines_digest`."""
    region = is_region_mode(key_column)
    role = KEYS_ROLE if region else ISO_ROLE
    where = _where(role, KEYS_LABEL)
    if isinstance(values, bytes | bytearray | Mapping) or not isinstance(values, Iterable):
        raise InputError(
            f"{role}: got {type(values).__name__}; pass the path of a parquet or CSV file "
            f"with a '{key_column}' column, or a sequence of keys (e.g. a list of str)"
        )
    keys = _pylist(values)
    _check_utf8(keys, role, KEYS_LABEL, key_column)
    if region:
        _check_keys(keys, role, KEYS_LABEL, key_column)
    else:
        _check_codes(keys, role, KEYS_LABEL)
    if not keys:
        raise InputError(f"{where}: the list is empty; list at least one key")
    dupes = sort_keys(k for k, n in Counter(str(k) for k in keys).items() if n > 1)
    if dupes:
        raise InputError(f"{where}: key(s) {_quote(dupes)} are listed twice; list each key once")
    codes = tuple(sort_keys(str(k) for k in keys))
    result = IsoList(
        path=KEYS_LABEL,
        codes=codes,
        digest=key_lines_digest(codes),
        bytes_read=0,
        key_column=key_column,
    )
    logger.info("%s: %d keys, sha256 %s", where, len(codes), result.digest)
    return result


def layer_from_memory(obj: object, iso: IsoList | None, key_column: str) -> CountryLayer:
    """The layer from a GeoDataFrame (its ``key_column`` and active geometry column, in
    EPSG:4326), a mapping ``{key: geometry}`` or an iterable of ``(key, geometry)``
    pairs (taken as EPSG:4326 lon/lat, like a GeoParquet file without a CRS)."""
    region = is_region_mode(key_column)
    role = REGION_ROLE if region else COUNTRY_ROLE
    if _is_frame(obj):
        label = FRAME_LABEL
        keys, geoms = _frame_rows(obj, key_column, role)
    elif isinstance(obj, Mapping):
        label = PAIRS_LABEL
        keys, geoms = list(obj.keys()), list(obj.values())
    elif isinstance(obj, Iterable) and not isinstance(obj, bytes | bytearray):
        label = PAIRS_LABEL
        keys, geoms = _pairs(obj, role, key_column)
    else:
        raise InputError(
            f"{role}: got {type(obj).__name__}; pass the path of a GeoParquet file, a "
            f"GeoDataFrame with a '{key_column}' column, a mapping {{key: geometry}} or a "
            "sequence of (key, shapely geometry) pairs"
        )
    where = _where(role, label)
    if not keys:
        raise InputError(f"{where}: the layer has no rows; pass at least one (key, geometry)")
    _check_utf8(keys, role, label, key_column)
    if region:
        _check_keys(keys, role, label, key_column)
    else:
        _check_codes(keys, role, label)
    codes = [str(k) for k in keys]
    if iso is not None:
        _check_foreign(codes, iso, where, region)
    wkb = _to_wkb(geoms, codes, where)
    decoded = _decode_geometries(pa.chunked_array([wkb], pa.binary()), codes, label, role)
    rows: dict[str, list[BaseGeometry]] = {}
    for code, geom in zip(codes, decoded, strict=True):
        rows.setdefault(code, []).append(geom)
    blobs = [b for b in wkb if b is not None]
    assert len(blobs) == len(codes)  # the decoder refused null geometries
    digest = layer_digest(codes, blobs)
    layer = CountryLayer(
        path=label,
        rows={code: rows[code] for code in sort_keys(rows)},
        digest=digest,
        bytes_read=0,
        key_column=key_column,
    )
    logger.info("%s: %d rows for %d keys, sha256 %s", where, len(codes), len(rows), digest)
    return layer


def grid_from_memory(obj: Any) -> GridInput:
    """The grid of a :class:`~tileindex.grid.Grid` (checked again as §3 says) or of an
    open rasterio dataset (its header, checked like a raster file's)."""
    if isinstance(obj, Grid):
        where = _where(GRID_ROLE, GRID_LABEL)
        try:
            grid = Grid.from_transform(obj.ncols, obj.nrows, obj.transform)
        except RasterMismatchError as exc:
            raise RasterMismatchError(f"{where}: {exc.message}", **exc.context) from exc
        label = GRID_LABEL
    elif _is_rasterio_dataset(obj):
        where = _where(GRID_ROLE, DATASET_LABEL)
        if obj.closed:
            raise InputError(
                f"{where}: the dataset is closed; pass it inside its 'with rasterio.open(...)' "
                "block, or pass the raster's path"
            )
        t = obj.transform
        grid = _grid_from_header(
            where,
            obj.width,
            obj.height,
            obj.count,
            obj.crs,
            (t.a, t.b, t.c, t.d, t.e, t.f),
            # rasterio's transform of a raster without a geotransform is the identity
            no_transform=bool(t.is_identity),
        )
        label = DATASET_LABEL
    else:
        raise InputError(
            f"{GRID_ROLE}: got {type(obj).__name__}; pass the path of a raster file, an open "
            "rasterio dataset or a tileindex.grid.Grid"
        )
    result = GridInput(path=label, grid=grid, digest=grid_digest(grid), bytes_read=0, size_bytes=0)
    logger.info("%s: %d x %d cells, sha256 %s", where, grid.ncols, grid.nrows, result.digest)
    return result


# -- helpers -----------------------------------------------------------------------------


def _is_frame(obj: object) -> bool:
    """A pandas DataFrame or a GeoDataFrame (by its attributes: nothing is imported)."""
    return hasattr(obj, "columns") and hasattr(obj, "iloc")


def _is_geodataframe(obj: object) -> bool:
    """A GeoDataFrame, by its class name, so that pandas and geopandas stay optional and
    a frame whose active geometry column is unset is still recognised."""
    return any(cls.__name__ == "GeoDataFrame" for cls in type(obj).__mro__)


def _is_rasterio_dataset(obj: object) -> bool:
    return all(hasattr(obj, a) for a in ("transform", "width", "height", "count", "crs", "closed"))


def _pylist(values: Iterable[Any]) -> list[object]:
    """Python values of a list, array, pandas Series or pyarrow array; NA -> None."""
    to_pylist = getattr(values, "to_pylist", None)
    if callable(to_pylist):
        return list(to_pylist())
    isna = getattr(values, "isna", None)
    out = list(values.tolist() if hasattr(values, "tolist") else values)
    if callable(isna):
        missing = list(isna())
        out = [None if m else v for v, m in zip(out, missing, strict=True)]
    return out


def _check_utf8(keys: Sequence[object], role: str, label: Path, column: str) -> None:
    """A Python str may hold lone surrogates, which no file key can: not UTF-8."""
    for i, k in enumerate(keys):
        if isinstance(k, str):
            try:
                k.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(
                    f"{_where(role, label)}: column '{column}', row {i + 1}: the key "
                    f"{_show_key(k)} is not valid Unicode (a lone surrogate); every key must "
                    "be a UTF-8 string"
                ) from None


def _frame_rows(frame: Any, key_column: str, role: str) -> tuple[list[object], list[object]]:
    where = _where(role, FRAME_LABEL)
    if not _is_geodataframe(frame):
        raise InputError(
            f"{where}: got a {type(frame).__name__} without geometry; make it a GeoDataFrame "
            "(geopandas.GeoDataFrame(frame, geometry=..., crs='EPSG:4326'))"
        )
    columns = [str(c) for c in frame.columns]
    if key_column not in columns:
        raise InputError(
            f"{where}: column '{key_column}' is missing (found: {', '.join(columns) or 'none'}); "
            "add the key column, or pass key_column= the frame's key column"
        )
    try:
        crs, geometry = frame.crs, frame.geometry
    except AttributeError:  # geopandas raises it when no active geometry column is set
        raise InputError(
            f"{where}: the frame has no active geometry column; set one with "
            "frame.set_geometry(NAME)"
        ) from None
    _check_frame_crs(crs, where)
    return _pylist(frame[key_column]), list(np.asarray(geometry.values, dtype=object))


def _check_frame_crs(crs: object, where: str) -> None:
    """§2's CRS rule for a GeoDataFrame: no CRS is unknown (what geopandas writes as
    ``"crs": null``), and anything but EPSG:4326 / OGC:CRS84 lon/lat is E007."""
    if crs is None:
        raise CrsMismatchError(
            f"{where}: the frame has no CRS (unknown); set it with frame.set_crs('EPSG:4326') "
            "if the coordinates are lon/lat, else frame.to_crs('EPSG:4326')"
        )
    try:
        pcrs = CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as exc:
        raise CrsMismatchError(
            f"{where}: the frame's CRS cannot be interpreted ({_one_line(exc)}); reproject it "
            "with frame.to_crs('EPSG:4326')"
        ) from exc
    if not is_wgs84_lonlat(pcrs):
        raise CrsMismatchError(
            f"{where}: layer CRS is {crs_name(pcrs)}, not EPSG:4326 lon/lat; reproject the "
            "layer with frame.to_crs('EPSG:4326')"
        )


def _pairs(obj: Iterable[Any], role: str, key_column: str) -> tuple[list[object], list[object]]:
    keys: list[object] = []
    geoms: list[object] = []
    for i, item in enumerate(obj):
        if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != 2:
            raise InputError(
                f"{_where(role, PAIRS_LABEL)}: row {i + 1} is {_short(item)}, not a (key, "
                f"geometry) pair; pass pairs ('{key_column}' value, shapely geometry)"
            )
        keys.append(item[0])
        geoms.append(item[1])
    return keys, geoms


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_foreign(codes: Sequence[str], iso: IsoList, where: str, region: bool) -> None:
    """Every layer key must be in the list (E005), as for a file layer."""
    known = frozenset(iso.codes)
    foreign = [i for i, k in enumerate(codes) if k not in known]
    if not foreign:
        return
    i = foreign[0]
    listed = "key list" if region else "ISO list"
    others = len({codes[j] for j in foreign}) - 1
    more = f" (and {others} more key(s) not listed)" if others else ""
    raise IsoForeignKeyError(
        f"{where}: row {i + 1}: the key {_show_key(codes[i])} is not in the {listed} "
        f"{iso.path}{more}; add it to the {listed} or drop those rows from the layer",
        country_iso=codes[i],
    )


def _to_wkb(geoms: Sequence[object], codes: Sequence[str], where: str) -> list[bytes | None]:
    """ISO WKB, little-endian, 2-D of every geometry (None stays None: the decoder reports
    it as a null geometry, E001); a value that is not a shapely geometry is bad input."""
    for i, g in enumerate(geoms):
        if g is not None and not isinstance(g, BaseGeometry):
            raise InputError(
                f"{where}: key {_show_key(codes[i])}, row {i + 1}: the geometry is a "
                f"{type(g).__name__}, not a shapely geometry; pass shapely Polygons or "
                "MultiPolygons (e.g. shapely.from_wkb(...))"
            )
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    with np.errstate(invalid="ignore"):  # NaN coordinates: reported by the decoder (E001)
        out = shapely.to_wkb(arr, output_dimension=2, byte_order=1, flavor="iso")
    return [None if b is None else bytes(b) for b in out]


__all__ = [
    "GRID_CRS",
    "LayerLike",
    "grid_digest",
    "grid_from_memory",
    "is_path",
    "keys_from_memory",
    "layer_digest",
    "layer_from_memory",
    "read_inputs",
    "read_layer",
]
