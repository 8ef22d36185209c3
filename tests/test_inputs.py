"""Sealed-input readers: one named test per bad-input case, plus the happy paths."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from tileindex import inputs
from tileindex.errors import (
    CrsMismatchError,
    GeometryInvalidError,
    InputError,
    InputFileError,
    IsoForeignKeyError,
    RasterMismatchError,
    TileIndexError,
)
from tileindex.grid import Grid
from tileindex.inputs import read_country_layer, read_grid, read_iso_list

from factories import CRS_NULL, make_inputs, write_countries, write_grid, write_iso

BOX = shapely.box(0.0, 0.0, 10.0, 10.0)
TEN_DEGREES = (10.0, 0.0, -180.0, 0.0, -10.0, 90.0)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@contextmanager
def raises(
    cls: type[TileIndexError], path: Path, role: str, code: str | None = None
) -> Iterator[pytest.ExceptionInfo[TileIndexError]]:
    """pytest.raises that also checks the code and that the one-line message names the input."""
    with pytest.raises(cls) as info:
        yield info
    assert info.value.code == code
    assert info.value.message.startswith(f"{role} {path}:"), info.value.message
    assert "\n" not in str(info.value)


@pytest.fixture
def iso(tmp_path: Path) -> inputs.IsoList:
    return read_iso_list(write_iso(tmp_path / "iso.parquet", ["FR", "DE", "US"]))


def layer_path(tmp_path: Path, rows, **kw) -> Path:
    return write_countries(tmp_path / "countries.parquet", rows, **kw)


# -- ISO list: happy paths ----------------------------------------------------------------


def test_iso_list_parquet(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.parquet", ["US", "FR", "DE"])
    iso = read_iso_list(path)
    assert iso.codes == ("DE", "FR", "US")
    assert iso.path == path
    assert iso.digest == sha256(path)
    assert iso.bytes_read == path.stat().st_size


def test_iso_list_csv(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.csv", ["US", "FR", "DE"], fmt="csv")
    iso = read_iso_list(path)
    assert iso.codes == ("DE", "FR", "US")
    assert iso.digest == sha256(path)
    assert iso.bytes_read == path.stat().st_size


def test_iso_list_parquet_detected_by_magic_not_extension(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.dat", ["FR"])
    assert read_iso_list(path).codes == ("FR",)


def test_iso_list_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "iso.csv"
    path.write_bytes(b"\xef\xbb\xbfname,country_iso\r\nFrance,FR\r\n\r\nGermany,DE\r\n")
    assert read_iso_list(path).codes == ("DE", "FR")


# -- ISO list: bad input ------------------------------------------------------------------


def test_iso_list_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    with raises(InputFileError, path, "ISO list") as info:
        read_iso_list(path)
    assert "does not exist" in info.value.message


def test_iso_list_directory(tmp_path: Path) -> None:
    with raises(InputFileError, tmp_path, "ISO list"):
        read_iso_list(tmp_path)


def test_iso_list_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "iso.csv"
    path.write_bytes(b"")
    with raises(InputError, path, "ISO list"):
        read_iso_list(path)


def test_iso_list_unreadable_binary(tmp_path: Path) -> None:
    path = tmp_path / "iso.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "neither parquet" in info.value.message


def test_iso_list_parquet_extension_without_magic(tmp_path: Path) -> None:
    path = tmp_path / "iso.parquet"
    path.write_text("country_iso\nFR\n")
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "PAR1" in info.value.message


def test_iso_list_truncated_parquet(tmp_path: Path) -> None:
    path = truncate(write_iso(tmp_path / "iso.parquet", ["FR", "DE"]))
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "truncated" in info.value.message


def test_iso_list_corrupt_parquet_footer(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.parquet", ["FR", "DE"])
    data = bytearray(path.read_bytes())
    data[-40:-8] = b"\xff" * 32  # footer metadata, magic kept
    path.write_bytes(bytes(data))
    with raises(InputError, path, "ISO list"):
        read_iso_list(path)


def test_iso_list_missing_column_parquet(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.parquet", ["FR"], column="code")
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "'country_iso' is missing (found: code, name)" in info.value.message


def test_iso_list_missing_column_csv(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.csv", ["FR"], fmt="csv", column="iso2")
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "found: iso2, name" in info.value.message


def test_iso_list_empty(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.parquet", [])
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "empty" in info.value.message


def test_iso_list_empty_csv_header_only(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.csv", [], fmt="csv")
    with raises(InputError, path, "ISO list"):
        read_iso_list(path)


def test_iso_list_lower_case_code(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.parquet", ["FR", "us", "De"])
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    msg = info.value.message
    assert "'us'" in msg and "'De'" in msg and "'US'" in msg and "uppercase" in msg


def test_iso_list_three_letter_code(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.csv", ["FR", "USA"], fmt="csv")
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "'USA'" in info.value.message and "alpha-2" in info.value.message


def test_iso_list_non_ascii_code(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.parquet", ["FR", "ÄB", "ß"])
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "'ÄB'" in info.value.message and "'ß'" in info.value.message


def test_iso_list_code_with_whitespace(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.csv", ["FR", "DE "], fmt="csv")
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "'DE '" in info.value.message


def test_iso_list_null_code(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.parquet", ["FR", None, "DE"])
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "null" in info.value.message and "row(s) 2" in info.value.message


def test_iso_list_empty_code_csv(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.csv", ["FR", None], fmt="csv")
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "null or empty" in info.value.message


def test_iso_list_duplicate_code(tmp_path: Path) -> None:
    path = write_iso(tmp_path / "iso.parquet", ["FR", "DE", "FR", "DE", "US"])
    with raises(InputError, path, "ISO list") as info:
        read_iso_list(path)
    assert "duplicate code(s) 'DE', 'FR'" in info.value.message


def test_iso_list_non_string_column(tmp_path: Path) -> None:
    path = tmp_path / "iso.parquet"
    pq.write_table(pa.table({"country_iso": [1, 2]}), path)
    with raises(InputError, path, "ISO list"):
        read_iso_list(path)


# -- country layer: happy paths -----------------------------------------------------------


def test_country_layer_rows_kept_in_file_order(tmp_path: Path, iso) -> None:
    a, b, c = shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6), shapely.box(-3, -3, -2, -2)
    multi = shapely.MultiPolygon([shapely.box(20, 20, 21, 21), shapely.box(22, 22, 23, 23)])
    path = layer_path(tmp_path, [("US", a), ("FR", multi), ("US", b), ("US", c)])
    layer = read_country_layer(path, iso)
    assert list(layer.rows) == ["FR", "US"]
    assert [g.equals_exact(h, 0) for g, h in zip(layer.rows["US"], [a, b, c], strict=True)] == [
        True
    ] * 3
    assert layer.rows["FR"][0].equals_exact(multi, 0)
    assert layer.digest == sha256(path)
    assert layer.bytes_read == path.stat().st_size


def test_country_layer_crs84_and_absent_crs_accepted(tmp_path: Path, iso) -> None:
    for crs in ("OGC:CRS84", None):
        path = layer_path(tmp_path, [("FR", BOX)], crs=crs)
        assert list(read_country_layer(path, iso).rows) == ["FR"]


def test_country_layer_without_geo_metadata_accepted(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX)], geo_metadata=False)
    assert list(read_country_layer(path, iso).rows) == ["FR"]


def test_country_layer_keeps_invalid_and_out_of_range_geometry(tmp_path: Path, iso) -> None:
    """Validity and antimeridian normalisation belong to tileindex.geometry."""
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    fiji = shapely.box(177, -18, 182, -16)
    path = layer_path(tmp_path, [("FR", bowtie), ("DE", fiji)])
    layer = read_country_layer(path, iso)
    assert not layer.rows["FR"][0].is_valid
    assert layer.rows["DE"][0].bounds[2] == 182


# -- country layer: bad input -------------------------------------------------------------


def test_country_layer_missing_file(tmp_path: Path, iso) -> None:
    path = tmp_path / "nope.parquet"
    with raises(InputFileError, path, "country layer"):
        read_country_layer(path, iso)


def test_country_layer_not_parquet(tmp_path: Path, iso) -> None:
    path = tmp_path / "countries.parquet"
    path.write_text("country_iso,geom\nFR,POLYGON EMPTY\n")
    with raises(InputError, path, "country layer") as info:
        read_country_layer(path, iso)
    assert "not a parquet file" in info.value.message


def test_country_layer_truncated(tmp_path: Path, iso) -> None:
    path = truncate(layer_path(tmp_path, [("FR", BOX)]))
    with raises(InputError, path, "country layer") as info:
        read_country_layer(path, iso)
    assert "truncated" in info.value.message


def test_country_layer_missing_country_iso_column(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX)], iso_column="iso_a2")
    with raises(InputError, path, "country layer") as info:
        read_country_layer(path, iso)
    assert "'country_iso' is missing (found: iso_a2, geom)" in info.value.message


def test_country_layer_missing_geom_column(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX)], geom_column="geometry")
    with raises(InputError, path, "country layer") as info:
        read_country_layer(path, iso)
    assert "'geom' is missing (found: country_iso, geometry)" in info.value.message


def test_country_layer_geom_not_binary(tmp_path: Path, iso) -> None:
    path = tmp_path / "countries.parquet"
    pq.write_table(pa.table({"country_iso": ["FR"], "geom": [BOX.wkt]}), path)
    with raises(InputError, path, "country layer") as info:
        read_country_layer(path, iso)
    assert "WKB" in info.value.message


def test_country_layer_no_rows(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [])
    with raises(InputError, path, "country layer"):
        read_country_layer(path, iso)


def test_country_layer_null_code(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX), (None, BOX)])
    with raises(InputError, path, "country layer") as info:
        read_country_layer(path, iso)
    assert "null" in info.value.message


def test_country_layer_lower_case_code(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("fr", BOX)])
    with raises(InputError, path, "country layer") as info:
        read_country_layer(path, iso)
    assert "'fr'" in info.value.message and "'FR'" in info.value.message


def test_country_layer_three_letter_code(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FRA", BOX)])
    with raises(InputError, path, "country layer") as info:
        read_country_layer(path, iso)
    assert "'FRA'" in info.value.message


def test_country_layer_code_not_in_iso_list(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX), ("XK", BOX), ("ZZ", BOX), ("XK", BOX)])
    with raises(IsoForeignKeyError, path, "country layer", "E005_ISO_FK") as info:
        read_country_layer(path, iso)
    assert "'XK', 'ZZ'" in info.value.message and str(iso.path) in info.value.message


def test_country_layer_garbage_wkb(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX), ("DE", b"\x01\x03\x00\x00garbage")])
    with raises(GeometryInvalidError, path, "country layer", "E001_GEO_INVALID") as info:
        read_country_layer(path, iso)
    assert "country DE, row 2" in info.value.message and "WKB" in info.value.message
    assert info.value.context == {"country_iso": "DE"}


def test_country_layer_null_geometry(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX), ("US", None)])
    with raises(GeometryInvalidError, path, "country layer", "E001_GEO_INVALID") as info:
        read_country_layer(path, iso)
    assert "country US, row 2: geometry is null" in info.value.message


def test_country_layer_non_polygon_geometry(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", shapely.LineString([(0, 0), (1, 1)]))])
    with raises(GeometryInvalidError, path, "country layer", "E001_GEO_INVALID") as info:
        read_country_layer(path, iso)
    assert "LineString" in info.value.message


def test_country_layer_nan_coordinates(tmp_path: Path, iso) -> None:
    with np.errstate(invalid="ignore"):
        nan = shapely.Polygon([(0, 0), (1, 0), (float("nan"), 1), (0, 0)])
    path = layer_path(tmp_path, [("FR", BOX), ("DE", BOX), ("DE", nan)])
    with raises(GeometryInvalidError, path, "country layer", "E001_GEO_INVALID") as info:
        read_country_layer(path, iso)
    assert "country DE, row 3" in info.value.message and "NaN" in info.value.message


def test_country_layer_infinite_coordinates(tmp_path: Path, iso) -> None:
    inf = shapely.Polygon([(0, 0), (float("inf"), 0), (1, 1), (0, 0)])
    path = layer_path(tmp_path, [("FR", inf)])
    with raises(GeometryInvalidError, path, "country layer", "E001_GEO_INVALID"):
        read_country_layer(path, iso)


def test_country_layer_crs_not_wgs84(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX)], crs="EPSG:3857")
    with raises(CrsMismatchError, path, "country layer", "E007_CRS_MISMATCH") as info:
        read_country_layer(path, iso)
    assert "EPSG:3857" in info.value.message and "reproject" in info.value.message


def test_country_layer_crs_other_datum(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX)], crs="EPSG:4269")
    with raises(CrsMismatchError, path, "country layer", "E007_CRS_MISMATCH"):
        read_country_layer(path, iso)


def test_country_layer_crs_null_is_unknown(tmp_path: Path, iso) -> None:
    path = layer_path(tmp_path, [("FR", BOX)], crs=CRS_NULL)
    with raises(CrsMismatchError, path, "country layer", "E007_CRS_MISMATCH") as info:
        read_country_layer(path, iso)
    assert "unknown" in info.value.message


# -- grid raster --------------------------------------------------------------------------


def test_grid_read_back(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 36, 18, TEN_DEGREES)
    got = read_grid(path)
    assert got.grid == Grid.from_transform(36, 18, TEN_DEGREES)
    assert got.grid.transform == TEN_DEGREES
    assert (got.grid.ncols, got.grid.nrows) == (36, 18)
    assert got.digest == sha256(path)
    assert got.size_bytes == path.stat().st_size
    assert got.bytes_read <= 1.25 * got.size_bytes


def test_grid_reference_like_transform(tmp_path: Path) -> None:
    t = (0.0083333333, 0.0, -180.0012493, 0.0, -0.0083333333, 83.6329165016827)
    path = write_grid(tmp_path / "grid.tif", 43199, 16755, t)
    grid = read_grid(path).grid
    assert (grid.ncols, grid.nrows) == (43199, 16755)
    assert grid.transform == t


def test_grid_crs84_accepted(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 36, 18, TEN_DEGREES, crs="OGC:CRS84")
    assert read_grid(path).grid.ncols == 36


def test_grid_streaming_path_counts_header_bytes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(inputs, "_IN_MEMORY_LIMIT", 0)
    path = write_grid(tmp_path / "grid.tif", 36, 18, TEN_DEGREES, sparse=False)
    got = read_grid(path)
    assert got.grid == Grid.from_transform(36, 18, TEN_DEGREES)
    assert got.digest == sha256(path)
    # the whole file for the digest, plus the header bytes GDAL read through the opener
    assert got.bytes_read > got.size_bytes


def test_grid_streaming_path_within_byte_budget(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(inputs, "_IN_MEMORY_LIMIT", 0)
    path = write_grid(
        tmp_path / "grid.tif", 4096, 2048, (0.05, 0, -180, 0, -0.05, 80), sparse=False
    )
    got = read_grid(path)
    assert got.digest == sha256(path)
    assert got.size_bytes < got.bytes_read <= 1.25 * got.size_bytes


def test_grid_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.tif"
    with raises(InputFileError, path, "grid raster"):
        read_grid(path)


def test_grid_not_a_raster(tmp_path: Path) -> None:
    path = tmp_path / "grid.tif"
    path.write_bytes(b"this is not a raster\n" * 10)
    with raises(InputError, path, "grid raster") as info:
        read_grid(path)
    assert "/vsi" not in info.value.message


def test_grid_truncated_header(tmp_path: Path) -> None:
    path = truncate(write_grid(tmp_path / "grid.tif", 36, 18, TEN_DEGREES))
    with raises(InputError, path, "grid raster"):
        read_grid(path)


def test_grid_truncated_data(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 64, 48, TEN_DEGREES, sparse=False)
    size = path.stat().st_size
    truncate(path, keep=(size - 20) / size)
    with raises(InputError, path, "grid raster") as info:
        read_grid(path)
    assert "truncated" in info.value.message


def test_grid_truncated_data_streaming(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(inputs, "_IN_MEMORY_LIMIT", 0)
    path = write_grid(tmp_path / "grid.tif", 64, 48, TEN_DEGREES, sparse=False)
    size = path.stat().st_size
    truncate(path, keep=(size - 20) / size)
    with raises(InputError, path, "grid raster"):
        read_grid(path)


def test_grid_without_crs(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 36, 18, TEN_DEGREES, crs=None)
    with raises(CrsMismatchError, path, "grid raster", "E007_CRS_MISMATCH") as info:
        read_grid(path)
    assert "no CRS" in info.value.message


def test_grid_web_mercator(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 36, 18, TEN_DEGREES, crs="EPSG:3857")
    with raises(CrsMismatchError, path, "grid raster", "E007_CRS_MISMATCH") as info:
        read_grid(path)
    assert "EPSG:3857" in info.value.message


def test_grid_rotated(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 36, 18, (10.0, 0.5, -180.0, 0.0, -10.0, 90.0))
    with raises(RasterMismatchError, path, "grid raster", "E002_RASTER_MISMATCH") as info:
        read_grid(path)
    assert "rotated" in info.value.message


def test_grid_south_up(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 36, 18, (10.0, 0.0, -180.0, 0.0, 10.0, -90.0))
    with raises(RasterMismatchError, path, "grid raster", "E002_RASTER_MISMATCH") as info:
        read_grid(path)
    assert "south-up" in info.value.message


def test_grid_without_geotransform(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 36, 18, transform=None)
    with raises(RasterMismatchError, path, "grid raster", "E002_RASTER_MISMATCH") as info:
        read_grid(path)
    assert "geotransform" in info.value.message


def test_grid_beyond_latitude_range(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "grid.tif", 36, 20, TEN_DEGREES)
    with raises(RasterMismatchError, path, "grid raster", "E002_RASTER_MISMATCH"):
        read_grid(path)


# -- all three together -------------------------------------------------------------------


def test_make_inputs_within_byte_budget(tmp_path: Path) -> None:
    iso_path, layer_path_, grid_path = make_inputs(
        tmp_path, {"FR": [BOX], "DE": [shapely.box(20, 20, 30, 30), BOX]}
    )
    iso = read_iso_list(iso_path)
    layer = read_country_layer(layer_path_, iso)
    grid = read_grid(grid_path)
    assert iso.codes == ("DE", "FR")
    assert [len(layer.rows[c]) for c in iso.codes] == [2, 1]
    assert (grid.grid.ncols, grid.grid.nrows) == (360, 180)
    for got, path in ((iso, iso_path), (layer, layer_path_), (grid, grid_path)):
        assert got.digest == sha256(path)
        assert got.bytes_read <= 1.25 * path.stat().st_size
