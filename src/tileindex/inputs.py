"""Sealed-input readers: the ISO list, the country layer and the grid raster's header.

Each input is read once, identified by the SHA-256 of its bytes, and every byte read is
counted for the docs/CONTRACT.md §9 budget. Readers validate what they read and raise a
``tileindex.errors`` class whose one-line message starts with the input's role and
path and says how to fix it. They never compute masks and never repair geometry.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from shapely.geometry.base import BaseGeometry

from tileindex.contract import KEY_MAX_BYTES, is_region_mode, sort_keys
from tileindex.errors import (
    CrsMismatchError,
    GeometryInvalidError,
    InputError,
    InputFileError,
    IsoForeignKeyError,
    RasterMismatchError,
)
from tileindex.grid import Grid

logger = logging.getLogger(__name__)

ISO_ROLE = "ISO list"
COUNTRY_ROLE = "country layer"
GRID_ROLE = "grid raster"
KEYS_ROLE = "key list"  # region mode (docs/CONTRACT.md §10.1)
REGION_ROLE = "region layer"

ISO_COLUMN = "country_iso"
GEOM_COLUMN = "geom"

# Rasters up to this size are read once and opened from memory; larger ones are hashed
# in blocks and opened from disk through a byte-counting opener (header reads only).
_IN_MEMORY_LIMIT = 64 << 20
_BLOCK = 1 << 20
# Above this many TIFF blocks only the last block of each band is checked against EOF.
_MAX_BLOCKS_CHECKED = 1 << 16

_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIXES = (".parquet", ".pq", ".geoparquet")
_CODE_RE = re.compile(r"[A-Z]{2}")
_POLYGON_TYPE_IDS = (3, 6)  # shapely.GeometryType.POLYGON, MULTIPOLYGON
_WGS84 = (CRS.from_epsg(4326), CRS.from_user_input("OGC:CRS84"))
_SHOWN = 5  # offending values quoted in a message

PathLike = str | os.PathLike[str]


# -- value types ------------------------------------------------------------------------


@dataclass(frozen=True)
class IsoList:
    """The countries (regions) to visit: unique keys in UTF-8 byte order; in country mode
    uppercase alpha-2 codes. In region mode without a key list, ``path`` is the layer's
    and ``digest`` that of the derived key list (:func:`layer_key_list`)."""

    path: Path
    codes: tuple[str, ...]
    digest: str
    bytes_read: int
    key_column: str = ISO_COLUMN


@dataclass(frozen=True, eq=False)
class CountryLayer:
    """Polygon rows per code (codes in ASCII order, rows in file order), not yet
    validated for GEOS validity nor normalised in longitude (see ``geometry``)."""

    path: Path
    rows: dict[str, list[BaseGeometry]]
    digest: str
    bytes_read: int
    key_column: str = ISO_COLUMN


@dataclass(frozen=True)
class GridInput:
    """The grid defined by a raster's header; ``size_bytes`` is the file size."""

    path: Path
    grid: Grid
    digest: str
    bytes_read: int
    size_bytes: int


# -- shared helpers ---------------------------------------------------------------------


def _where(role: str, path: Path) -> str:
    return f"{role} {path}"


def _file_size(path: Path, role: str) -> int:
    """Size of an existing regular file, or InputFileError saying what is wrong."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputFileError(
            f"{_where(role, path)}: file does not exist; pass the path of an existing file"
        ) from None
    except OSError as exc:
        raise InputFileError(
            f"{_where(role, path)}: cannot access the file ({exc.strerror}); check the path "
            "and its permissions"
        ) from exc
    if path.is_dir():
        raise InputFileError(
            f"{_where(role, path)}: is a directory; pass a single file, not a folder"
        )
    return st.st_size


def _read_all(path: Path, role: str) -> bytes:
    """The file's bytes, read once; an empty file is bad input."""
    _file_size(path, role)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(
            f"{_where(role, path)}: cannot read the file ({exc.strerror}); check the path "
            "and its permissions"
        ) from exc
    if not data:
        raise InputError(f"{_where(role, path)}: file is empty; pass a non-empty input file")
    return data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _quote(values: Sequence[object]) -> str:
    shown = ", ".join(repr(v) for v in values[:_SHOWN])
    more = len(values) - _SHOWN
    return f"{shown} (and {more} more)" if more > 0 else shown


def _rows(indexes: Sequence[int]) -> str:
    """1-based row numbers in file order, header excluded."""
    return _quote([i + 1 for i in indexes])


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _check_codes(values: Sequence[object], role: str, path: Path) -> None:
    """Every value must be two uppercase ASCII letters (ISO 3166-1 alpha-2)."""
    null_rows = [i for i, v in enumerate(values) if v is None or v == ""]
    lower, malformed = [], []
    for v in values:
        if v is None or v == "":
            continue
        if isinstance(v, str) and v.isascii() and _CODE_RE.fullmatch(v.upper()) and v != v.upper():
            lower.append(v)
        elif not isinstance(v, str) or not _CODE_RE.fullmatch(v):
            malformed.append(v)
    problems = []
    if null_rows:
        problems.append(f"{len(null_rows)} null or empty code(s) at row(s) {_rows(null_rows)}")
    if lower:
        fixed = _quote(sorted({v.upper() for v in lower}))
        problems.append(f"lower-case code(s) {_quote(_unique(lower))} (write {fixed})")
    if malformed:
        problems.append(f"code(s) that are not 2 ASCII letters: {_quote(_unique(malformed))}")
    if problems:
        raise InputError(
            f"{_where(role, path)}: column '{ISO_COLUMN}' has {'; '.join(problems)}; every code "
            "must be an uppercase ISO 3166-1 alpha-2 code such as 'FR'"
        )


def _unique(values: Sequence[Any]) -> list[Any]:
    """Values in first-seen order without repeats."""
    seen: dict[Any, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def _open_parquet(data: bytes, role: str, path: Path) -> pq.ParquetFile:
    if not data.endswith(_PARQUET_MAGIC) or len(data) < 12:
        raise InputError(
            f"{_where(role, path)}: parquet file is truncated or corrupt (no PAR1 footer); "
            "re-export or re-copy the file"
        )
    try:
        return pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(
            f"{_where(role, path)}: cannot read parquet ({_one_line(exc)}); the file is "
            "truncated or corrupt: re-export or re-copy it"
        ) from exc


def _read_columns(
    pf: pq.ParquetFile, columns: Sequence[str], role: str, path: Path, fix: str
) -> pa.Table:
    found = pf.schema_arrow.names
    missing = [c for c in columns if c not in found]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        raise InputError(
            f"{_where(role, path)}: column {names} is missing (found: {', '.join(found) or 'none'})"
            f"; {fix}"
        )
    try:
        return pf.read(columns=list(columns))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(
            f"{_where(role, path)}: cannot read parquet columns {', '.join(columns)} "
            f"({_one_line(exc)}); the file is truncated or corrupt: re-export or re-copy it"
        ) from exc


# -- ISO list ---------------------------------------------------------------------------

_ISO_FIX = "the ISO list needs an uppercase alpha-2 'country_iso' column"


def read_iso_list(path: PathLike, key_column: str = ISO_COLUMN) -> IsoList:
    """Read the ISO list (parquet, detected by its magic bytes, or UTF-8 CSV); with a
    ``key_column`` other than ``country_iso``, the region mode's key list (column
    ``key_column``, docs/CONTRACT.md §10.1)."""
    if is_region_mode(key_column):
        return _read_key_list(Path(path), key_column)
    path = Path(path)
    data = _read_all(path, ISO_ROLE)
    if data.startswith(_PARQUET_MAGIC):
        pf = _open_parquet(data, ISO_ROLE, path)
        table = _read_columns(pf, [ISO_COLUMN], ISO_ROLE, path, _ISO_FIX)
        values: list[object] = table.column(ISO_COLUMN).to_pylist()
    elif path.suffix.lower() in _PARQUET_SUFFIXES:
        raise InputError(
            f"{_where(ISO_ROLE, path)}: not a parquet file (no PAR1 magic bytes); pass a "
            "parquet or CSV file with a 'country_iso' column"
        )
    else:
        values = _csv_column(data, path, ISO_ROLE, ISO_COLUMN, _ISO_FIX)
    _check_codes(values, ISO_ROLE, path)
    codes = [str(v) for v in values]
    if not codes:
        raise InputError(
            f"{_where(ISO_ROLE, path)}: the list is empty; list at least one uppercase alpha-2 "
            "code in column 'country_iso'"
        )
    dupes = sorted(c for c, n in Counter(codes).items() if n > 1)
    if dupes:
        raise InputError(
            f"{_where(ISO_ROLE, path)}: duplicate code(s) {_quote(dupes)}; list each uppercase "
            "alpha-2 code once"
        )
    iso = IsoList(path=path, codes=tuple(sorted(codes)), digest=_sha256(data), bytes_read=len(data))
    logger.info("%s: %d codes, sha256 %s", _where(ISO_ROLE, path), len(iso.codes), iso.digest)
    return iso


def _csv_column(data: bytes, path: Path, role: str, column: str, fix: str) -> list[object]:
    """The ``column`` values of a UTF-8 CSV (empty cell -> None, blank lines skipped)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise InputError(
            f"{_where(role, path)}: neither parquet (no PAR1 magic bytes) nor UTF-8 CSV; "
            f"pass a parquet or CSV file with a '{column}' column"
        )
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as exc:
        raise InputError(
            f"{_where(role, path)}: cannot parse CSV ({_one_line(exc)}); pass a "
            f"comma-separated file with a '{column}' header"
        ) from exc
    header = [h.strip() for h in records[0]] if records else []
    if column not in header:
        raise InputError(
            f"{_where(role, path)}: column '{column}' is missing "
            f"(found: {', '.join(header) or 'none'}); {fix}"
        )
    col = header.index(column)
    return [(r[col] or None) if col < len(r) else None for r in records[1:]]


# -- country layer ----------------------------------------------------------------------

_LAYER_FIX = "the country layer needs a 'country_iso' code column and a WKB 'geom' column"


def read_country_layer(
    path: PathLike, iso: IsoList | None, key_column: str = ISO_COLUMN
) -> CountryLayer:
    """Read the GeoParquet country layer; every code must be in ``iso``. With a
    ``key_column`` other than ``country_iso`` it is a region layer keyed by that column
    (docs/CONTRACT.md §10.1), and ``iso`` (the key list) may be None: every key of the
    layer is then listed (:func:`layer_key_list`)."""
    if is_region_mode(key_column):
        return _read_region_layer(Path(path), iso, key_column)
    if iso is None:
        raise InputError(
            f"{_where(COUNTRY_ROLE, Path(path))}: no ISO list given; pass --iso (a key list "
            "is optional only in region mode, --key-column NAME)"
        )
    path = Path(path)
    data = _read_all(path, COUNTRY_ROLE)
    if not data.startswith(_PARQUET_MAGIC):
        raise InputError(
            f"{_where(COUNTRY_ROLE, path)}: not a parquet file (no PAR1 magic bytes); pass a "
            "GeoParquet file with columns 'country_iso' and 'geom'"
        )
    pf = _open_parquet(data, COUNTRY_ROLE, path)
    table = _read_columns(pf, [ISO_COLUMN, GEOM_COLUMN], COUNTRY_ROLE, path, _LAYER_FIX)
    _check_geo_metadata(pf.schema_arrow.metadata or {}, path, COUNTRY_ROLE)
    if table.num_rows == 0:
        raise InputError(
            f"{_where(COUNTRY_ROLE, path)}: the layer has no rows; pass a layer with the "
            "country polygons"
        )
    codes: list[object] = table.column(ISO_COLUMN).to_pylist()
    _check_codes(codes, COUNTRY_ROLE, path)
    known = set(iso.codes)
    foreign = sorted({str(c) for c in codes} - known)
    if foreign:
        raise IsoForeignKeyError(
            f"{_where(COUNTRY_ROLE, path)}: code(s) {_quote(foreign)} are not in the ISO list "
            f"{iso.path}; add them to the ISO list or drop those rows from the layer",
            country_iso=foreign[0] if len(foreign) == 1 else None,
        )
    geoms = _decode_geometries(table.column(GEOM_COLUMN), [str(c) for c in codes], path)
    by_code: dict[str, list[BaseGeometry]] = {}
    for code, geom in zip(codes, geoms, strict=True):
        by_code.setdefault(str(code), []).append(geom)
    rows = {code: by_code[code] for code in sorted(by_code)}
    missing = sorted(known - rows.keys())
    if missing:
        logger.info(
            "%s: %d ISO code(s) have no polygon rows: %s",
            _where(COUNTRY_ROLE, path),
            len(missing),
            _quote(missing),
        )
    layer = CountryLayer(path=path, rows=rows, digest=_sha256(data), bytes_read=len(data))
    logger.info(
        "%s: %d rows for %d codes, sha256 %s",
        _where(COUNTRY_ROLE, path),
        len(codes),
        len(rows),
        layer.digest,
    )
    return layer


def _check_geo_metadata(metadata: dict[bytes, bytes], path: Path, role: str) -> None:
    """Check the GeoParquet ``geo`` metadata of the ``geom`` column when present.

    Per GeoParquet, an absent ``crs`` key means OGC:CRS84 and ``"crs": null`` means
    unknown; only EPSG:4326 / OGC:CRS84 (any axis order) is accepted.
    """
    raw = metadata.get(b"geo")
    where = _where(role, path)
    if raw is None:
        logger.warning("%s: no GeoParquet 'geo' metadata; assuming EPSG:4326 lon/lat", where)
        return
    try:
        geo = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{where}: GeoParquet 'geo' metadata is not valid JSON ({_one_line(exc)}); "
            "re-export the layer as GeoParquet"
        ) from exc
    columns = geo.get("columns") if isinstance(geo, dict) else None
    meta = columns.get(GEOM_COLUMN) if isinstance(columns, dict) else None
    if not isinstance(meta, dict):
        logger.warning(
            "%s: GeoParquet metadata does not describe column 'geom'; assuming EPSG:4326", where
        )
        return
    encoding = meta.get("encoding", "WKB")
    if not isinstance(encoding, str) or encoding.upper() != "WKB":
        raise InputError(
            f"{where}: column 'geom' has GeoParquet encoding {encoding!r}; re-export the layer "
            "with WKB geometry encoding"
        )
    if meta.get("edges", "planar") != "planar":
        raise InputError(
            f"{where}: column 'geom' declares {meta.get('edges')!r} edges; tileindex treats "
            "edges as straight lon/lat lines: re-export the layer with planar edges"
        )
    if "crs" not in meta:
        return  # GeoParquet default: OGC:CRS84
    crs_value = meta["crs"]
    if crs_value is None:
        raise CrsMismatchError(
            f"{where}: the CRS of column 'geom' is unknown (\"crs\": null); reproject the layer "
            "to EPSG:4326 and write its CRS"
        )
    try:
        crs = (
            CRS.from_json_dict(crs_value)
            if isinstance(crs_value, dict)
            else CRS.from_user_input(crs_value)
        )
    except (CRSError, TypeError, ValueError) as exc:
        raise CrsMismatchError(
            f"{where}: the CRS of column 'geom' cannot be parsed ({_one_line(exc)}); reproject "
            "the layer to EPSG:4326 and write its CRS as PROJJSON"
        ) from exc
    if not is_wgs84_lonlat(crs):
        raise CrsMismatchError(
            f"{where}: layer CRS is {crs_name(crs)}, not EPSG:4326 lon/lat; reproject the "
            "layer to EPSG:4326"
        )


def is_wgs84_lonlat(crs: CRS) -> bool:
    return any(crs.equals(ref, ignore_axis_order=True) for ref in _WGS84)


def crs_name(crs: CRS) -> str:
    auth = crs.to_authority()
    if auth:
        return f"{auth[0]}:{auth[1]} ({crs.name})"
    datum = crs.datum.name if crs.datum is not None else "unknown"
    return f"{crs.name!r} without an authority code (datum {datum!r})"


def _decode_geometries(
    column: pa.ChunkedArray, codes: list[str], path: Path, role: str = COUNTRY_ROLE
) -> list[Any]:
    """WKB -> shapely, raising E001 for null, undecodable, non-polygonal or non-finite rows."""
    where = _where(role, path)
    what = "region" if role == REGION_ROLE else "country"
    arr = column.combine_chunks()
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        raise InputError(
            f"{where}: column 'geom' has type {arr.type}, expected WKB binary; re-export the "
            "layer with WKB geometries"
        )
    wkb = arr.to_numpy(zero_copy_only=False)
    # NaN coordinates make GEOS raise numpy's "invalid value" warning; they are
    # reported below as E001 instead
    with np.errstate(invalid="ignore"):
        geoms = shapely.from_wkb(wkb, on_invalid="ignore")
    is_null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)

    def fail(mask: np.ndarray, reason: str | None, fix: str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        i = int(idx[0])
        more = f" (and {idx.size - 1} more row(s))" if idx.size > 1 else ""
        why = reason if reason is not None else _wkb_reason(wkb[i])
        raise GeometryInvalidError(
            f"{where}: {what} {codes[i]}, row {i + 1}: geometry {why}{more}; {fix}",
            country_iso=codes[i],
        )

    fix = "fix or drop the row in the input-preparation step"
    fail(is_null, "is null", fix)
    fail(shapely.is_missing(geoms) & ~is_null, None, fix)
    type_ids = shapely.get_type_id(geoms)
    bad_type = ~np.isin(type_ids, _POLYGON_TYPE_IDS)
    if bad_type.any():
        i = int(np.flatnonzero(bad_type)[0])
        fail(bad_type, f"is a {geoms[i].geom_type}, expected Polygon or MultiPolygon", fix)
    xy, owner = shapely.get_coordinates(geoms, return_index=True)
    bad_xy = np.zeros(len(geoms), dtype=bool)
    bad_xy[owner[~np.isfinite(xy).all(axis=1)]] = True
    fail(bad_xy, "has NaN or infinite coordinates", fix)
    return list(geoms)


def _wkb_reason(value: object) -> str:
    try:
        shapely.from_wkb(value)
    except (shapely.errors.GEOSException, TypeError, ValueError) as exc:
        return f"is not valid WKB ({_one_line(exc)})"
    return "is not valid WKB"


# -- region mode: key list and region layer (docs/CONTRACT.md §10.1) --------------------

_KEY_RULE = (
    f"every key must be a non-empty UTF-8 string of at most {KEY_MAX_BYTES} bytes without "
    "control characters"
)
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc
_SHOWN_KEY_CHARS = 40


def _show_key(key: str) -> str:
    return repr(key if len(key) <= _SHOWN_KEY_CHARS else key[:_SHOWN_KEY_CHARS] + "...")


def _key_problem(value: object) -> str | None:
    """Why ``value`` is not a key, or None when it is one."""
    if value is None:
        return "the key is null"
    if not isinstance(value, str):
        return f"the key {value!r} is not a string"
    if value == "":
        return "the key is empty"
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > KEY_MAX_BYTES:
        return f"the key {_show_key(value)} is {size} UTF-8 bytes long, more than {KEY_MAX_BYTES}"
    bad = _CONTROL_RE.search(value)
    if bad is not None:
        return f"the key {_show_key(value)} holds the control character U+{ord(bad.group()):04X}"
    return None


def _check_keys(values: Sequence[object], role: str, path: Path, column: str) -> None:
    """Every value must be a key; the first bad row is named, with how many more."""
    first: tuple[int, str] | None = None
    more = 0
    for i, value in enumerate(values):
        problem = _key_problem(value)
        if problem is None:
            continue
        if first is None:
            first = (i, problem)
        else:
            more += 1
    if first is not None:
        i, problem = first
        others = f" (and {more} more bad row(s))" if more else ""
        raise InputError(
            f"{_where(role, path)}: column '{column}', row {i + 1}: {problem}{others}; {_KEY_RULE}"
        )


def _key_column_values(table: pa.Table, role: str, path: Path, column: str) -> list[object]:
    """The key column as Python values; a column that is not of strings is bad input."""
    arr = table.column(column)
    value_type = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    if not (
        pa.types.is_string(value_type)
        or pa.types.is_large_string(value_type)
        or pa.types.is_string_view(value_type)
    ):
        raise InputError(
            f"{_where(role, path)}: key column '{column}' has type {arr.type}, not string; "
            "write the keys as strings (e.g. an integer id as its decimal text)"
        )
    try:
        return list(arr.to_pylist())
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{_where(role, path)}: key column '{column}' holds bytes that are not UTF-8 "
            f"({_one_line(exc)}); {_KEY_RULE}"
        ) from exc


def _read_key_list(path: Path, column: str) -> IsoList:
    """The region mode's key list: parquet or UTF-8 CSV with a column ``column``."""
    fix = f"the key list needs a string column '{column}' (the --key-column) with one key a row"
    data = _read_all(path, KEYS_ROLE)
    if data.startswith(_PARQUET_MAGIC):
        pf = _open_parquet(data, KEYS_ROLE, path)
        table = _read_columns(pf, [column], KEYS_ROLE, path, fix)
        values = _key_column_values(table, KEYS_ROLE, path, column)
    elif path.suffix.lower() in _PARQUET_SUFFIXES:
        raise InputError(
            f"{_where(KEYS_ROLE, path)}: not a parquet file (no PAR1 magic bytes); pass a "
            f"parquet or CSV file with a '{column}' column"
        )
    else:
        values = _csv_column(data, path, KEYS_ROLE, column, fix)
    _check_keys(values, KEYS_ROLE, path, column)
    if not values:
        raise InputError(
            f"{_where(KEYS_ROLE, path)}: the list is empty; list at least one key in column "
            f"'{column}' (or omit --keys to visit every key of the layer)"
        )
    first_row: dict[object, int] = {}
    for i, key in enumerate(values):
        seen = first_row.setdefault(key, i)
        if seen != i:
            raise InputError(
                f"{_where(KEYS_ROLE, path)}: column '{column}': the key {_show_key(str(key))} "
                f"is listed twice, at rows {seen + 1} and {i + 1}; list each key once"
            )
    keys = IsoList(
        path=path,
        codes=tuple(sort_keys(str(v) for v in values)),
        digest=_sha256(data),
        bytes_read=len(data),
        key_column=column,
    )
    logger.info("%s: %d keys, sha256 %s", _where(KEYS_ROLE, path), len(keys.codes), keys.digest)
    return keys


def _read_region_layer(path: Path, keys: IsoList | None, column: str) -> CountryLayer:
    """A GeoParquet region layer keyed by ``column``; every key must be in ``keys`` when
    a key list is given (E005)."""
    fix = (
        f"the region layer needs the key column '{column}' (pass the layer's key column as "
        "--key-column) and a WKB 'geom' column"
    )
    data = _read_all(path, REGION_ROLE)
    if not data.startswith(_PARQUET_MAGIC):
        raise InputError(
            f"{_where(REGION_ROLE, path)}: not a parquet file (no PAR1 magic bytes); pass a "
            f"GeoParquet file with columns '{column}' and 'geom'"
        )
    pf = _open_parquet(data, REGION_ROLE, path)
    table = _read_columns(pf, [column, GEOM_COLUMN], REGION_ROLE, path, fix)
    _check_geo_metadata(pf.schema_arrow.metadata or {}, path, REGION_ROLE)
    if table.num_rows == 0:
        raise InputError(
            f"{_where(REGION_ROLE, path)}: the layer has no rows; pass a layer with the "
            "region polygons"
        )
    values = _key_column_values(table, REGION_ROLE, path, column)
    _check_keys(values, REGION_ROLE, path, column)
    codes = [str(v) for v in values]
    if keys is not None:
        known = frozenset(keys.codes)
        foreign = [i for i, k in enumerate(codes) if k not in known]
        if foreign:
            i = foreign[0]
            others = len({codes[j] for j in foreign}) - 1
            more = f" (and {others} more key(s) not listed)" if others else ""
            raise IsoForeignKeyError(
                f"{_where(REGION_ROLE, path)}: row {i + 1}: the key {_show_key(codes[i])} is "
                f"not in the key list {keys.path}{more}; add it to the key list or drop "
                "those rows from the layer",
                country_iso=codes[i],
            )
    geoms = _decode_geometries(table.column(GEOM_COLUMN), codes, path, REGION_ROLE)
    by_code: dict[str, list[BaseGeometry]] = {}
    for code, geom in zip(codes, geoms, strict=True):
        by_code.setdefault(code, []).append(geom)
    rows = {code: by_code[code] for code in sort_keys(by_code)}
    layer = CountryLayer(
        path=path, rows=rows, digest=_sha256(data), bytes_read=len(data), key_column=column
    )
    logger.info(
        "%s: %d rows for %d keys, sha256 %s",
        _where(REGION_ROLE, path),
        len(codes),
        len(rows),
        layer.digest,
    )
    return layer


def key_lines_digest(codes: Sequence[str]) -> str:
    """SHA-256 of ``codes`` (already in UTF-8 byte order) written as UTF-8 lines, each
    followed by ``\\n``: the digest of a key list that is not a file (docs/CONTRACT.md
    §2, §10.1)."""
    return _sha256(b"".join(code.encode("utf-8") + b"\n" for code in codes))


def layer_key_list(layer: CountryLayer) -> IsoList:
    """The key list of a region layer read without one: its distinct keys, in UTF-8 byte
    order. Its digest is the SHA-256 of the keys as UTF-8 lines (each followed by
    ``\\n``; keys hold no control characters, so the lines are unambiguous), which is
    what ``ingress_versions.iso`` records then (docs/CONTRACT.md §10.1)."""
    codes = tuple(layer.rows)
    return IsoList(
        path=layer.path,
        codes=codes,
        digest=key_lines_digest(codes),
        bytes_read=0,
        key_column=layer.key_column,
    )


# -- grid raster ------------------------------------------------------------------------

_GRID_FIX = "pass a readable GeoTIFF/COG (or other GDAL raster) in EPSG:4326"


def read_grid(path: PathLike) -> GridInput:
    """Read the grid raster's header (never its pixels) and hash its bytes."""
    path = Path(path)
    size = _file_size(path, GRID_ROLE)
    if size == 0:
        raise InputError(f"{_where(GRID_ROLE, path)}: file is empty; {_GRID_FIX}")
    counter = _ByteCounter()
    if size <= _IN_MEMORY_LIMIT:
        data = _read_all(path, GRID_ROLE)
        size = counter.n = len(data)
        digest = _sha256(data)
        ctx = _open_memory(data, path)
    else:
        digest = _hash_streaming(path, counter)
        ctx = _open_counted(path, counter)
    grid = _grid_from_raster(ctx, path, len_file=size)
    result = GridInput(path=path, grid=grid, digest=digest, bytes_read=counter.n, size_bytes=size)
    logger.info(
        "%s: %d x %d cells, %d of %d bytes read, sha256 %s",
        _where(GRID_ROLE, path),
        grid.ncols,
        grid.nrows,
        result.bytes_read,
        size,
        digest,
    )
    return result


class _ByteCounter:
    def __init__(self) -> None:
        self.n = 0


class _CountingReader(io.RawIOBase):
    """A read-only binary file that adds every byte it returns to a counter."""

    def __init__(self, path: str, counter: _ByteCounter) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 (closed in close())
        self._counter = counter

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._fh.read(-1 if size is None else size)
        self._counter.n += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer)
        self._counter.n += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()
        super().close()


def _hash_streaming(path: Path, counter: _ByteCounter) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                counter.n += len(block)
                digest.update(block)
    except OSError as exc:
        raise InputFileError(
            f"{_where(GRID_ROLE, path)}: cannot read the file ({exc.strerror}); check the path "
            "and its permissions"
        ) from exc
    return digest.hexdigest()


# Sidecar files (.aux.xml, .ovr) are not part of the digest, so they are never consulted.
_GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


@contextmanager
def _open_memory(data: bytes, path: Path) -> Iterator[Any]:
    with (
        rasterio.Env(**_GDAL_ENV),
        rasterio.MemoryFile(data, ext=path.suffix or ".tif") as mem,
        mem.open() as ds,
    ):
        yield ds


@contextmanager
def _open_counted(path: Path, counter: _ByteCounter) -> Iterator[Any]:
    def opener(name: str, mode: str = "rb", **_: Any) -> _CountingReader:
        if "w" in mode or "a" in mode or "+" in mode:
            raise PermissionError(f"{name}: read-only opener")
        return _CountingReader(name, counter)

    with (
        rasterio.Env(**_GDAL_ENV),
        rasterio.open(str(path.resolve()), opener=opener) as ds,
    ):
        yield ds


def _grid_from_raster(ctx: Any, path: Path, len_file: int) -> Grid:
    where = _where(GRID_ROLE, path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with ctx as ds:
                width, height, count = ds.width, ds.height, ds.count
                crs = ds.crs
                t = ds.transform
                transform = (t.a, t.b, t.c, t.d, t.e, t.f)
                truncated = _tiff_truncated(ds, len_file)
    except (RasterioError, OSError) as exc:
        raise InputError(
            f"{where}: not a readable raster ({_gdal_reason(exc)}); the file is truncated, "
            f"corrupt or not a raster: {_GRID_FIX}"
        ) from exc
    no_transform = False
    for w in caught:
        if issubclass(w.category, NotGeoreferencedWarning):
            no_transform = True
        else:
            logger.warning("%s: %s", where, _one_line(w.message))
    if truncated is not None:
        raise InputError(
            f"{where}: file is truncated ({truncated} bytes expected, {len_file} present); "
            "re-copy or re-export the raster"
        )
    return _grid_from_header(where, width, height, count, crs, transform, no_transform)


def _grid_from_header(
    where: str,
    width: int,
    height: int,
    count: int,
    crs: Any,
    transform: Sequence[float],
    no_transform: bool,
) -> Grid:
    """The grid of a raster header (a file's or an open dataset's), or the error §2 gives."""
    if count < 1:
        raise InputError(
            f"{where}: raster has no bands (a container of subdatasets?); pass a single raster"
        )
    if crs is None:
        raise CrsMismatchError(
            f"{where}: raster has no CRS; assign or warp it to EPSG:4326 lon/lat "
            "(e.g. gdal_translate -a_srs EPSG:4326)"
        )
    try:
        pcrs = CRS.from_user_input(crs.to_wkt())
    except CRSError as exc:
        raise CrsMismatchError(
            f"{where}: raster CRS cannot be interpreted ({_one_line(exc)}); warp it to EPSG:4326"
        ) from exc
    if not is_wgs84_lonlat(pcrs):
        raise CrsMismatchError(
            f"{where}: raster CRS is {crs_name(pcrs)}, not EPSG:4326 lon/lat; warp the raster "
            "to an EPSG:4326 grid"
        )
    if no_transform:
        raise RasterMismatchError(
            f"{where}: raster has no geotransform (only GCPs/RPCs or none); warp it to a "
            "north-up EPSG:4326 grid"
        )
    try:
        return Grid.from_transform(width, height, transform)
    except RasterMismatchError as exc:
        raise RasterMismatchError(f"{where}: {exc.message}", **exc.context) from exc


def _tiff_truncated(ds: Any, len_file: int) -> int | None:
    """For a GeoTIFF, the end of the furthest data block if it lies beyond the file end.

    GDAL opens a GeoTIFF whose header is intact even when its data was cut off; the
    block offsets and sizes (header metadata, not pixel values) reveal it.
    """
    if ds.driver != "GTiff" or not ds.block_shapes:
        return None
    bh, bw = ds.block_shapes[0]
    nby, nbx = math.ceil(ds.height / bh), math.ceil(ds.width / bw)
    if ds.count * nbx * nby <= _MAX_BLOCKS_CHECKED:
        blocks = [(x, y) for y in range(nby) for x in range(nbx)]
    else:
        blocks = [(nbx - 1, nby - 1)]
    end = 0
    for band in range(1, ds.count + 1):
        for x, y in blocks:
            offset = ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band)
            nbytes = ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band)
            if offset and nbytes:  # absent (sparse) blocks have no offset
                end = max(end, int(offset) + int(nbytes))
    return end if end > len_file else None


def _gdal_reason(exc: Exception) -> str:
    """GDAL's message without the internal /vsi... path prefix."""
    text = re.sub(r"[`']?/vsi[^\s']*'?\s*", "", _one_line(exc)).strip(" :.")
    return text or type(exc).__name__


__all__ = [
    "CountryLayer",
    "GridInput",
    "IsoList",
    "crs_name",
    "is_wgs84_lonlat",
    "key_lines_digest",
    "layer_key_list",
    "read_country_layer",
    "read_grid",
    "read_iso_list",
]
