"""build() with in-memory inputs and progress (docs/CONTRACT.md §2, §10.4): each form
publishes the path build's partition bytes, its digests are the documented canonical
serialisations, bad input fails as the file would, and the progress callable's contract."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry.base import BaseGeometry

import tileindex
from tileindex.errors import (
    ConfigError,
    CrsMismatchError,
    GeometryInvalidError,
    InputError,
    IsoForeignKeyError,
    RasterMismatchError,
    TileIndexError,
)
from tileindex.grid import Grid
from tileindex.pipeline import build
from tileindex.telemetry import NullTelemetry

from factories import (
    SMALL_WORLD_CODES,
    SMALL_WORLD_COUNTRIES,
    SMALL_WORLD_GRID,
    write_countries,
    write_grid,
    write_iso,
)

PAIRS = [(code, geom) for code, geoms in SMALL_WORLD_COUNTRIES.items() for geom in geoms]
PARTITIONS = ("tile_index", "tile_bounds")


def _partition_bytes(folder: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert files, f"{folder} is empty"
    return files


def _geometry_bytes(result: tileindex.BuildResult) -> bytes:
    return result.paths["region_geometry"].read_bytes()


def _same_partitions(a: tileindex.BuildResult, b: tileindex.BuildResult) -> None:
    for name in PARTITIONS:
        assert _partition_bytes(a.paths[name]) == _partition_bytes(b.paths[name]), name


@pytest.fixture(scope="module")
def path_build(small_world, tmp_path_factory: pytest.TempPathFactory) -> tileindex.BuildResult:
    return build(*small_world, tmp_path_factory.mktemp("paths") / "out")


# -- each in-memory form publishes the path build's bytes --------------------------------


def test_pairs_and_a_grid_publish_the_path_builds_partitions(path_build, tmp_path) -> None:
    result = build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "out")
    assert result.rows_emitted == path_build.rows_emitted > 0
    _same_partitions(result, path_build)
    assert _geometry_bytes(result) == _geometry_bytes(path_build)  # the kept geometry too
    # the digests are the canonical serialisations', not the files': another identity
    assert result.parameter_hash != path_build.parameter_hash
    assert (
        result.report.determinism_receipt["sha256_hex"]
        == (path_build.report.determinism_receipt["sha256_hex"])
    )


def test_a_rasterio_dataset_is_the_grid_of_its_file(small_world, path_build, tmp_path) -> None:
    iso, countries, raster = small_world
    with rasterio.open(raster) as ds:
        result = build(iso, countries, ds, tmp_path / "out")
    _same_partitions(result, path_build)
    # only the raster's digest changed: it is now the grid's, the same as a Grid's
    got, want = result.report.ingress_versions, path_build.report.ingress_versions
    assert got["iso"] == want["iso"] and got["countries"] == want["countries"]
    by_grid = build(iso, countries, SMALL_WORLD_GRID, tmp_path / "grid")
    assert got["raster"] == by_grid.report.ingress_versions["raster"] != want["raster"]
    assert result.parameter_hash == by_grid.parameter_hash


def test_a_mapping_of_one_geometry_per_key(tmp_path: Path) -> None:
    single = {code: geoms[0] for code, geoms in SMALL_WORLD_COUNTRIES.items()}
    iso = write_iso(tmp_path / "iso.parquet", sorted(single))
    layer = write_countries(tmp_path / "layer.parquet", list(single.items()))
    raster = write_grid(tmp_path / "grid.tif", 720, 200, SMALL_WORLD_GRID.transform)
    by_path = build(iso, layer, raster, tmp_path / "paths")
    in_memory = build(sorted(single), single, SMALL_WORLD_GRID, tmp_path / "memory")
    assert in_memory.rows_emitted == by_path.rows_emitted > 0
    _same_partitions(in_memory, by_path)
    # no file was read: the byte counters of §8.2 count none
    assert (
        in_memory.report.pat.bytes_read_vectors_total
        == 0
        < by_path.report.pat.bytes_read_vectors_total
    )
    assert in_memory.report.pat.bytes_read_raster_total == 0


def test_coverage_from_memory_is_the_path_builds_coverage(small_world, tmp_path: Path) -> None:
    by_path = build(*small_world, tmp_path / "paths", coverage=True)
    in_memory = build(
        list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "m", coverage=True
    )
    for name in (*PARTITIONS, "tile_coverage"):
        assert _partition_bytes(in_memory.paths[name]) == _partition_bytes(by_path.paths[name])


def test_a_geodataframe_publishes_the_path_builds_partitions(path_build, tmp_path) -> None:
    gpd = pytest.importorskip("geopandas", reason="geopandas is an optional input type")
    frame = gpd.GeoDataFrame(
        {"country_iso": [c for c, _ in PAIRS], "name": [f"n{i}" for i in range(len(PAIRS))]},
        geometry=[g for _, g in PAIRS],
        crs="EPSG:4326",
    )
    result = build(list(SMALL_WORLD_CODES), frame, SMALL_WORLD_GRID, tmp_path / "out")
    _same_partitions(result, path_build)
    # a frame and the same rows as pairs are the same data: one digest
    pairs = build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "pairs")
    assert result.parameter_hash == pairs.parameter_hash


def test_a_geodataframe_in_region_mode_with_a_renamed_geometry(tmp_path: Path) -> None:
    gpd = pytest.importorskip("geopandas", reason="geopandas is an optional input type")
    polys = [shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)]
    frame = gpd.GeoDataFrame({"zone": ["b", "a"], "shape": polys}, geometry="shape", crs=4326)
    layer = write_countries(
        tmp_path / "l.parquet", list(zip(["b", "a"], polys, strict=True)), iso_column="zone"
    )
    raster = write_grid(tmp_path / "grid.tif", 360, 180)
    by_path = build(None, layer, raster, tmp_path / "paths", key_column="zone")
    in_memory = build(None, frame, Grid.from_transform(360, 180, (1, 0, -180, 0, -1, 90)),
                      tmp_path / "memory", key_column="zone")  # fmt: skip
    assert in_memory.rows_emitted == by_path.rows_emitted == 200
    _same_partitions(in_memory, by_path)


def test_in_memory_inputs_need_no_geopandas(tmp_path: Path) -> None:
    # geopandas made unimportable: the pair and Grid forms still build (duck typing)
    code = (
        "import sys; sys.modules['geopandas'] = None\n"
        "import shapely, tileindex\n"
        "from tileindex.grid import Grid\n"
        "grid = Grid.from_transform(360, 180, (1, 0, -180, 0, -1, 90))\n"
        "r = tileindex.build(['AA'], [('AA', shapely.box(0, 0, 2, 2))], grid, sys.argv[1])\n"
        "assert r.rows_emitted == 4, r.rows_emitted\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], check=True)


# -- identity: the documented canonical serialisations ----------------------------------


def _iso_wkb_polygon(poly: shapely.Polygon) -> bytes:
    """ISO WKB, little-endian, 2-D, written by hand (not by shapely)."""
    rings = [poly.exterior, *poly.interiors]
    out = struct.pack("<BII", 1, 3, len(rings))
    for ring in rings:
        coords = list(ring.coords)
        out += struct.pack("<I", len(coords))
        out += b"".join(struct.pack("<dd", x, y) for x, y in coords)
    return out


def test_the_digests_are_the_documented_canonical_streams(tmp_path: Path) -> None:
    rows: list[tuple[str, BaseGeometry]] = [
        ("é", shapely.box(20, 0, 30, 10)),
        ("a", shapely.box(0, 0, 10, 10)),
        ("Z", shapely.Polygon([(40, 0, 1), (50, 0, 2), (50, 10, 3)])),  # Z is dropped
        ("a", shapely.box(10, 0, 20, 10)),
    ]
    result = build(["a", "é", "Z"], rows, SMALL_WORLD_GRID, tmp_path / "o", key_column="k")
    # keys as UTF-8 lines in byte order: Z (0x5A) < a (0x61) < é (0xC3 0xA9)
    assert result.report.ingress_versions["iso"] == hashlib.sha256(b"Z\na\n\xc3\xa9\n").hexdigest()
    # rows in key byte order, rows of one key as given: key, 0x00, u64 length, WKB
    flat = shapely.Polygon([(40, 0), (50, 0), (50, 10)])
    ordered = [("Z", flat), ("a", rows[1][1]), ("a", rows[3][1]), ("é", rows[0][1])]
    stream = b""
    for key, geom in ordered:
        wkb = _iso_wkb_polygon(geom)
        stream += key.encode() + b"\x00" + len(wkb).to_bytes(8, "little") + wkb
    assert result.report.ingress_versions["countries"] == hashlib.sha256(stream).hexdigest()
    grid_json = (
        '{"crs":"EPSG:4326","grid":{"ncols":720,"nrows":200,'
        '"transform":[0.5,0.0,-180.25,0.0,-0.5,60.0]}}'
    )
    assert (
        result.report.ingress_versions["raster"] == hashlib.sha256(grid_json.encode()).hexdigest()
    )


def test_the_same_data_twice_gives_the_same_hash_and_bytes(tmp_path: Path) -> None:
    first = build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "a")
    # other containers, other key order, same rows per key in the same order
    again = build(
        tuple(reversed(SMALL_WORLD_CODES)),
        iter(sorted(PAIRS, key=lambda p: p[0], reverse=True)),
        Grid.from_transform(720, 200, SMALL_WORLD_GRID.transform),
        tmp_path / "b",
    )
    assert again.parameter_hash == first.parameter_hash
    _same_partitions(again, first)
    for name in ("run_report",):  # the evidence's identity fields agree too
        a = json.loads(first.paths[name].read_text())
        b = json.loads(again.paths[name].read_text())
        assert a["ingress_versions"] == b["ingress_versions"]
        assert a["determinism_receipt"] == b["determinism_receipt"]
    # republished under the same root: a no-op
    assert build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "a").outcome == (
        "identical"
    )


def test_key_lists_from_numpy_pandas_and_pyarrow_are_the_list(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas", reason="a pandas Series is one of the key forms")
    import pyarrow as pa

    codes = list(SMALL_WORLD_CODES)
    want = build(codes, PAIRS, SMALL_WORLD_GRID, tmp_path / "list").parameter_hash
    for i, keys in enumerate([np.array(codes), pd.Series(codes), pa.array(codes)]):
        assert build(keys, PAIRS, SMALL_WORLD_GRID, tmp_path / str(i)).parameter_hash == want
    with pytest.raises(InputError, match=r"1 null or empty code\(s\) at row\(s\) 2"):
        build(pd.Series(["AA", None]), PAIRS, SMALL_WORLD_GRID, tmp_path / "na")


def test_rows_of_one_key_in_another_order_are_other_data(tmp_path: Path) -> None:
    cc = [(c, g) for c, g in PAIRS if c == "CC"]
    assert len(cc) == 2
    a = build(["CC"], cc, SMALL_WORLD_GRID, tmp_path / "a")
    b = build(["CC"], cc[::-1], SMALL_WORLD_GRID, tmp_path / "b")
    assert a.report.ingress_versions["countries"] != b.report.ingress_versions["countries"]


def test_region_mode_without_a_key_list_is_the_list_of_its_keys(tmp_path: Path) -> None:
    rows = [("r2", shapely.box(0, 0, 5, 5)), ("r1", shapely.box(5, 0, 10, 5))]
    derived = build(None, rows, SMALL_WORLD_GRID, tmp_path / "a", key_column="region")
    listed = build(["r1", "r2"], rows, SMALL_WORLD_GRID, tmp_path / "b", key_column="region")
    assert derived.report.ingress_versions["iso"] == hashlib.sha256(b"r1\nr2\n").hexdigest()
    assert derived.parameter_hash == listed.parameter_hash


# -- bad input: the file's error, one line, nothing published ----------------------------

BOWTIE = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
with np.errstate(invalid="ignore"):  # shapely warns when it builds a NaN ring
    NAN = shapely.Polygon([(0, 0), (math.nan, 0), (10, 10)])
BOX, FAR_BOX = shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)


@pytest.mark.parametrize(
    ("codes", "rows", "error"),
    [
        (["AA"], [("AA", None)], GeometryInvalidError),
        (["AA"], [("AA", shapely.Point(1, 1))], GeometryInvalidError),
        (["AA"], [("AA", NAN)], GeometryInvalidError),
        (["AA"], [("AA", BOWTIE)], GeometryInvalidError),
        (["AA"], [("AA", BOX), ("BB", FAR_BOX)], IsoForeignKeyError),
        (["aa"], [("aa", BOX)], InputError),
        (["AA", "AA"], [("AA", BOX)], InputError),
        ([], [("AA", BOX)], InputError),
        (["AA"], [("A", BOX)], InputError),
        (["AA"], [(None, BOX)], InputError),
        (["AA"], [], InputError),
    ],
    ids=["null", "point", "nan", "bowtie", "foreign", "lower", "dup", "empty-list", "bad-code",
         "null-code", "no-rows"],
)  # fmt: skip
def test_bad_layer_or_list_fails_as_the_file_would(codes, rows, error, tmp_path: Path) -> None:
    with pytest.raises(error) as memory:
        build(codes, rows, SMALL_WORLD_GRID, tmp_path / "memory")
    iso = write_iso(tmp_path / "iso.csv", codes, fmt="csv")
    layer = write_countries(tmp_path / "layer.parquet", rows)
    raster = write_grid(tmp_path / "grid.tif", 720, 200, SMALL_WORLD_GRID.transform)
    with pytest.raises(TileIndexError) as from_file:
        build(iso, layer, raster, tmp_path / "file")
    assert type(from_file.value) is error
    assert memory.value.event_code == from_file.value.event_code
    message = str(memory.value)
    assert "\n" not in message
    if "layer.parquet" in str(from_file.value) or "iso.csv" in str(from_file.value):
        assert "(in memory: " in message  # named where the file's message names its path
    assert not (tmp_path / "memory" / "data").exists()


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ([("r", b"\x01\x03")], "not a shapely geometry"),
        ([("r", "POLYGON ((0 0, 1 0, 1 1, 0 0))")], "not a shapely geometry"),
        ([("r", shapely.box(0, 0, 1, 1), "extra")], "not a (key, geometry) pair"),
        (["r"], "not a (key, geometry) pair"),
        (42, "got int"),
        ([("\ud800", shapely.box(0, 0, 1, 1))], "lone surrogate"),
        ([("a\tb", shapely.box(0, 0, 1, 1))], "control character"),
        ([("", shapely.box(0, 0, 1, 1))], "the key is empty"),
    ],
    ids=["wkb-bytes", "wkt", "triple", "bare-key", "int", "surrogate", "control", "empty-key"],
)
def test_wrong_layer_types_are_one_line_input_errors(rows, fragment, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        build(None, rows, SMALL_WORLD_GRID, tmp_path / "out", key_column="region")
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("iso", [42, b"AA", {"AA": 1}], ids=["int", "bytes", "mapping"])
def test_a_key_list_that_is_no_sequence_of_keys(iso, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ISO list: got"):
        build(iso, PAIRS, SMALL_WORLD_GRID, tmp_path / "out")


def test_a_grid_of_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="grid raster: got tuple; pass the path"):
        build(list(SMALL_WORLD_CODES), PAIRS, (720, 200), tmp_path / "out")


def test_a_grid_value_that_the_contract_rejects(tmp_path: Path) -> None:
    south_up = Grid(720, 200, 0.5, -180.25, 0.5, -40.0)  # built directly, never checked
    with pytest.raises(RasterMismatchError, match=r"in memory: Grid\): grid rows run south-up"):
        build(list(SMALL_WORLD_CODES), PAIRS, south_up, tmp_path / "out")


@pytest.mark.parametrize(
    ("crs", "transform", "error", "fragment"),
    [
        ("EPSG:3857", SMALL_WORLD_GRID.transform, CrsMismatchError, "not EPSG:4326"),
        (None, SMALL_WORLD_GRID.transform, CrsMismatchError, "no CRS"),
        ("EPSG:4326", (0.5, 0.1, -180.25, 0.0, -0.5, 60.0), RasterMismatchError, "rotated"),
        ("EPSG:4326", None, RasterMismatchError, "no geotransform"),
    ],
    ids=["3857", "no-crs", "rotated", "no-transform"],
)
def test_a_rasterio_dataset_fails_as_its_file(crs, transform, error, fragment, tmp_path) -> None:
    raster = write_grid(tmp_path / "grid.tif", 720, 200, transform, crs=crs)
    iso = write_iso(tmp_path / "iso.parquet", list(SMALL_WORLD_CODES))
    layer = write_countries(tmp_path / "layer.parquet", PAIRS)
    with pytest.raises(error, match=fragment):
        build(iso, layer, raster, tmp_path / "file")
    with (
        pytest.warns(rasterio.errors.NotGeoreferencedWarning)
        if transform is None
        else contextlib.nullcontext(),
        rasterio.open(raster) as ds,
        pytest.raises(error, match=fragment) as err,
    ):
        build(iso, layer, ds, tmp_path / "memory")
    assert "rasterio dataset" in str(err.value)
    assert not (tmp_path / "memory").exists()


def test_a_closed_rasterio_dataset(small_world, tmp_path: Path) -> None:
    iso, countries, raster = small_world
    with rasterio.open(raster) as ds:
        pass
    with pytest.raises(InputError, match="the dataset is closed"):
        build(iso, countries, ds, tmp_path / "out")


@pytest.mark.parametrize(
    ("crs", "error", "fragment"),
    [
        (None, CrsMismatchError, "no CRS"),
        ("EPSG:3857", CrsMismatchError, "not EPSG:4326"),
        ("OGC:CRS84", None, None),
    ],
    ids=["none", "3857", "crs84"],
)
def test_a_geodataframe_crs(crs, error, fragment, tmp_path: Path) -> None:
    gpd = pytest.importorskip("geopandas", reason="geopandas is an optional input type")
    frame = gpd.GeoDataFrame({"country_iso": ["AA"]}, geometry=[shapely.box(0, 0, 10, 10)], crs=crs)
    if error is None:  # CRS84 is EPSG:4326 with lon/lat axis order: the same data
        pairs = build(["AA"], [("AA", shapely.box(0, 0, 10, 10))], SMALL_WORLD_GRID, tmp_path / "p")
        result = build(["AA"], frame, SMALL_WORLD_GRID, tmp_path / "out")
        assert result.parameter_hash == pairs.parameter_hash
        return
    with pytest.raises(error, match=fragment):
        build(["AA"], frame, SMALL_WORLD_GRID, tmp_path / "out")


def test_frames_without_the_key_or_without_geometry(tmp_path: Path) -> None:
    gpd = pytest.importorskip("geopandas", reason="geopandas is an optional input type")
    pd = pytest.importorskip("pandas", reason="a plain DataFrame is refused by name")
    frame = gpd.GeoDataFrame({"iso": ["AA"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    with pytest.raises(InputError, match=r"column 'country_iso' is missing \(found: iso, geometry"):
        build(["AA"], frame, SMALL_WORLD_GRID, tmp_path / "out")
    with pytest.raises(InputError, match="got a DataFrame without geometry; make it a GeoData"):
        build(["AA"], pd.DataFrame({"country_iso": ["AA"]}), SMALL_WORLD_GRID, tmp_path / "out")
    unset = gpd.GeoDataFrame({"country_iso": ["AA"], "g": [shapely.box(0, 0, 1, 1)]})
    with pytest.raises(InputError, match="no active geometry column"):
        build(["AA"], unset, SMALL_WORLD_GRID, tmp_path / "out")


# -- progress -----------------------------------------------------------------------------


def test_the_progress_callable_is_monotone_and_ends_at_one(tmp_path: Path) -> None:
    calls: list[tuple[float, str]] = []
    result = build(
        list(SMALL_WORLD_CODES),
        PAIRS,
        SMALL_WORLD_GRID,
        tmp_path / "out",
        rows_per_row_group=256,
        row_groups_per_file=2,  # several part files
        progress=lambda fraction, message: calls.append((fraction, message)),
    )
    fractions = [f for f, _ in calls]
    assert all(isinstance(f, float) and 0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and fractions.count(1.0) == 1
    assert all(isinstance(m, str) and m for _, m in calls)
    units = sum(1 for _, m in calls if m.startswith("masked unit "))
    parts = sum(1 for _, m in calls if m.startswith("wrote part "))
    assert units == len(json.loads(_plan_line(result))["units"]) >= 4
    assert parts == math.ceil(result.rows_emitted / 512) > 1
    assert calls[0] == (0.0, f"planned {units} units for {len(SMALL_WORLD_CODES)} regions")
    assert result.parameter_hash in calls[-1][1]
    # an identical rerun ends at 1.0 too
    again: list[float] = []
    build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "out",
          rows_per_row_group=256, row_groups_per_file=2,
          progress=lambda f, m: again.append(f))  # fmt: skip
    assert again[-1] == 1.0 and again == sorted(again)


def _plan_line(result: tileindex.BuildResult) -> str:
    lines = result.paths["event_log"].read_text().splitlines()
    return next(line for line in lines if '"S1_PLAN"' in line)


def test_progress_and_telemetry_both_observe(tmp_path: Path) -> None:
    fractions: list[float] = []
    finished: list[object] = []

    class Finish(NullTelemetry):
        def on_finish(self, report: object) -> None:
            finished.append(report)

    result = build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "out",
                   telemetry=Finish(), progress=lambda f, m: fractions.append(f))  # fmt: skip
    assert finished == [result.report] and fractions[-1] == 1.0


def test_a_failed_build_never_reports_one(tmp_path: Path) -> None:
    calls: list[float] = []
    with pytest.raises(GeometryInvalidError):
        build(["AA"], [("AA", BOWTIE)], SMALL_WORLD_GRID, tmp_path / "out",
              progress=lambda f, m: calls.append(f))  # fmt: skip
    assert 1.0 not in calls


def test_progress_true_shows_the_cli_display_on_stderr(capfd, tmp_path: Path) -> None:
    build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "out", progress=True)
    out, err = capfd.readouterr()
    assert out == "" and "building 5 countries in 4 units" in err  # plain lines: no TTY


def test_no_progress_prints_nothing(capfd, tmp_path: Path) -> None:
    build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "out")
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("progress", ["yes", 1, 0.5])
def test_a_progress_that_is_neither_bool_nor_callable(progress, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="progress must be True, False or a callable"):
        build(list(SMALL_WORLD_CODES), PAIRS, SMALL_WORLD_GRID, tmp_path / "out", progress=progress)
    assert not (tmp_path / "out").exists()
