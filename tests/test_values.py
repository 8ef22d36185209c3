"""tileindex.values: a raster on the index's grid attached as tile_values and per-region
statistics (docs/CONTRACT.md §10.4). Expected values are derived in each test from the
cell's row and column (or from the published tables) with exact rational arithmetic."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import Affine

import tileindex
from test_contract_doc import ARROW_TYPES, NULLABLE, tables
from tileindex.cli import main
from tileindex.cli import values as cli_values
from tileindex.contract import region_values_schema, tile_values_schema
from tileindex.errors import (
    ConfigError,
    CrsMismatchError,
    ImmutablePartitionError,
    InputError,
    RasterMismatchError,
)
from tileindex.grid import Grid
from tileindex.layout import part_files
from tileindex.pipeline import build
from tileindex.report import exact_sum
from tileindex.values import scaled_sum

from factories import SMALL_WORLD_COUNTRIES, SMALL_WORLD_GRID, make_inputs, make_tiling

values_module = importlib.import_module("tileindex.values")  # the function shadows the module
GRID = SMALL_WORLD_GRID
DATA = Path(__file__).parent / "data"
NE_RASTER = DATA / "ne_shaded_relief_720x360_red.tif"
# the pixels of NE_RASTER (band 1 of cartopy's Natural Earth image, tests/data/README.md)
NE_PIXELS_SHA256 = "40edb00f949c58b5cd497dc356aab247db6569615f3daae40500cdb6d760efd8"


@pytest.fixture(scope="module")
def built(small_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small world with coverage, in many small parts and row groups; copy it before
    attaching values (see ``root``)."""
    out = tmp_path_factory.mktemp("values-index") / "out"
    build(*small_world, out, rows_per_row_group=64, row_groups_per_file=4, coverage=True)
    return out


@pytest.fixture(scope="module")
def built_plain(small_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("values-plain") / "out"
    build(*small_world, out, rows_per_row_group=100, row_groups_per_file=3)
    return out


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(built, copy)
    return copy


def write_raster(
    path: Path,
    data: np.ndarray,
    grid: Grid = GRID,
    nodata: float | None = None,
    crs: str | None = "EPSG:4326",
    block: int = 64,
) -> Path:
    profile = {
        "driver": "GTiff",
        "width": grid.ncols,
        "height": grid.nrows,
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": Affine(*grid.transform),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)
    return path


def _cells(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(grid.nrows), np.arange(grid.ncols), indexing="ij")


def _read(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in part_files(folder)])


def _by_key(table: pa.Table, key: str = "country_iso") -> dict[str, dict]:
    return {row[key]: row for row in table.to_pylist()}


def _index_rows(index: tileindex.Index) -> dict[str, list[tuple[int, int]]]:
    """Every key's (raster_row, raster_col), straight from tile_index."""
    t = index.to_table(columns=[index.key_column, "raster_row", "raster_col"]).to_pylist()
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in t:
        out[row[index.key_column]].append((row["raster_row"], row["raster_col"]))
    return out


# -- known sums ------------------------------------------------------------------------------


def test_integer_values_give_their_exact_sums_per_region(root: Path, tmp_path: Path) -> None:
    rows, cols = _cells(GRID)
    data = ((rows * 7 + cols * 3) % 1000).astype(np.uint16)
    raster = write_raster(tmp_path / "ints.tif", data)

    result = tileindex.values(root, raster)

    index = tileindex.open(root)
    assert result.outcome == "published" and result.weighted  # the fixture has coverage
    assert result.rows == index.report["rows_emitted"] and result.null_rows == 0
    stats = _by_key(pq.read_table(result.paths["region_values"]))
    assert list(stats) == list(index.keys)  # every visited key, ZZ (no rows) included
    for key, cells in _index_rows(index).items():
        expect = [(r * 7 + c * 3) % 1000 for r, c in cells]
        assert stats[key]["count"] == len(expect)
        assert stats[key]["sum"] == sum(expect)
        assert stats[key]["mean"] == float(Fraction(sum(expect), len(expect)))
        assert (stats[key]["min"], stats[key]["max"]) == (min(expect), max(expect))
    assert stats["ZZ"] == {
        **stats["ZZ"],
        "count": 0,
        "sum": 0.0,
        "mean": None,
        "min": None,
        "max": None,
    }


def test_tile_values_hold_each_cells_value_in_the_layout_of_tile_index(
    root: Path, tmp_path: Path
) -> None:
    rows, cols = _cells(GRID)
    data = (rows * GRID.ncols + cols).astype(np.int32)  # the tile id itself
    result = tileindex.values(root, write_raster(tmp_path / "ids.tif", data))
    index = tileindex.open(root)
    index_parts = part_files(index.path("tile_index"))
    value_parts = part_files(result.paths["tile_values"])
    assert [p.name for p in value_parts] == [p.name for p in index_parts]
    assert len(index_parts) > 3  # the fixture's small parts: several files to mirror
    for ip, vp in zip(index_parts, value_parts, strict=True):
        im, vm = pq.ParquetFile(ip).metadata, pq.ParquetFile(vp).metadata
        assert [im.row_group(i).num_rows for i in range(im.num_row_groups)] == [
            vm.row_group(i).num_rows for i in range(vm.num_row_groups)
        ]
    got = _read(result.paths["tile_values"])
    assert got.schema.equals(tile_values_schema())
    ids = index.to_table(columns=["country_iso", "tile_id"])
    assert got.select(["country_iso", "tile_id"]).equals(ids)
    assert got["value"].to_pylist() == [float(i) for i in ids["tile_id"].to_pylist()]
    assert "tile_values" in tileindex.open(root).datasets  # readable like the others


def test_binary_fractions_and_nodata(root: Path, tmp_path: Path) -> None:
    """Values k/8 (exact in float32 and in every sum), nodata over CC's whole box and a
    corner of AA: null values, not counted; a region with only nodata has count 0."""
    rows, cols = _cells(GRID)
    data = (((rows * GRID.ncols + cols) % 37) / 8 - 2).astype(np.float32)
    lon = GRID.c + GRID.a * (cols + 0.5)
    lat = GRID.f + GRID.e * (rows + 0.5)
    nodata_cells = ((lon > -61) & (lon < -49) & (lat > 29) & (lat < 41)) | (
        (lon < 5) & (lat < 5) & (lon > -1) & (lat > -1)
    )
    data[nodata_cells] = -9999
    result = tileindex.values(root, write_raster(tmp_path / "f.tif", data, nodata=-9999))

    index = tileindex.open(root)
    stats = _by_key(result.region_values)
    nulls = 0
    for key, cells in _index_rows(index).items():
        expect = [
            Fraction((r * GRID.ncols + c) % 37, 8) - 2 for r, c in cells if not nodata_cells[r, c]
        ]
        nulls += len(cells) - len(expect)
        assert stats[key]["count"] == len(expect), key
        assert stats[key]["sum"] == float(sum(expect, Fraction(0)))
        if expect:
            assert stats[key]["mean"] == float(sum(expect) / len(expect))
            assert stats[key]["min"] == float(min(expect))
    assert stats["CC"]["count"] == 0 and stats["CC"]["sum"] == 0.0
    assert stats["CC"]["mean"] is None and stats["CC"]["max"] is None
    assert stats["CC"]["weighted_count"] == 0.0 and stats["CC"]["weighted_mean"] is None
    assert result.null_rows == nulls > len(_index_rows(index)["CC"])
    got = _read(result.paths["tile_values"])
    assert got["value"].null_count == nulls


def test_sums_are_the_exact_sum_rounded_once(root: Path, tmp_path: Path) -> None:
    """Values with no exact binary form (0.1 steps) and a huge spread: the sum is the
    correctly rounded exact sum, which a float sum in some order need not be."""
    rows, cols = _cells(GRID)
    k = (rows * GRID.ncols + cols) % 1013
    data = np.where(k % 5 == 0, 1e15, k * 0.1) * np.where(k % 2, -1, 1)
    result = tileindex.values(root, write_raster(tmp_path / "x.tif", data.astype(np.float64)))
    stats = _by_key(result.region_values)
    for key, cells in _index_rows(tileindex.open(root)).items():
        exact = sum((Fraction(float(data[r, c])) for r, c in cells), Fraction(0))
        assert stats[key]["sum"] == float(exact), key
        assert stats[key]["mean"] == float(exact / len(cells)), key


def test_nan_is_null_without_a_nodata_value(root: Path, tmp_path: Path) -> None:
    data = np.ones(GRID.shape, dtype=np.float32)
    data[:, ::2] = np.nan
    result = tileindex.values(root, write_raster(tmp_path / "nan.tif", data))
    got = _read(result.paths["tile_values"])
    odd = [tid % GRID.ncols % 2 == 1 for tid in got["tile_id"].to_pylist()]
    assert [v is not None for v in got["value"].to_pylist()] == odd
    assert result.null_rows == odd.count(False)


def test_an_infinite_value_is_bad_input_and_nothing_is_published(
    root: Path, tmp_path: Path
) -> None:
    data = np.zeros(GRID.shape, dtype=np.float32)
    row, col = 100, 380  # AA's box (0..30 E, 0..20 N): lon 9.75, lat 9.75
    data[row, col] = np.inf
    with pytest.raises(InputError, match=rf"infinite value at row {row}, column {col}"):
        tileindex.values(root, write_raster(tmp_path / "inf.tif", data))
    assert "tile_values" not in tileindex.open(root).datasets
    assert list((root / ".tileindex-staging").iterdir()) == []


# -- weighted by coverage ------------------------------------------------------------------


def test_weighted_statistics_follow_the_published_tables(root: Path, tmp_path: Path) -> None:
    rows, cols = _cells(GRID)
    data = ((rows * 13 + cols * 5) % 101 * 0.37).astype(np.float64)
    data[rows % 9 == 0] = -1.0
    result = tileindex.values(root, write_raster(tmp_path / "w.tif", data, nodata=-1.0))
    assert result.weighted
    index = tileindex.open(root)
    tv = _read(result.paths["tile_values"])
    cov = _read(index.path("tile_coverage"))
    assert tv["tile_id"].equals(cov["tile_id"])
    wsum: dict[str, Fraction] = defaultdict(Fraction)
    wcount: dict[str, Fraction] = defaultdict(Fraction)
    for key, v, f in zip(
        tv["country_iso"].to_pylist(),
        tv["value"].to_pylist(),
        cov["coverage_fraction"].to_pylist(),
        strict=True,
    ):
        if v is not None:
            wsum[key] += Fraction(v * f)  # the float64 product, summed exactly
            wcount[key] += Fraction(f)
    stats = _by_key(result.region_values)
    assert set(wsum) == {"AA", "BB", "CC", "FJ"}
    for key in wsum:
        assert stats[key]["weighted_sum"] == float(wsum[key]), key
        assert stats[key]["weighted_count"] == float(wcount[key]), key
        assert stats[key]["weighted_mean"] == float(wsum[key] / wcount[key]), key


def test_without_coverage_there_are_no_weighted_columns(built_plain: Path, tmp_path: Path) -> None:
    root = tmp_path / "out"
    shutil.copytree(built_plain, root)
    data = np.full(GRID.shape, 2, dtype=np.uint8)
    result = tileindex.values(root, write_raster(tmp_path / "two.tif", data))
    assert not result.weighted
    table = pq.read_table(result.paths["region_values"])
    assert table.schema.equals(region_values_schema("country_iso", weighted=False))
    index = tileindex.open(root)
    for key, row in _by_key(table).items():
        n = index.to_table(key).num_rows
        assert (row["count"], row["sum"]) == (n, 2.0 * n)


# -- determinism, write-once -----------------------------------------------------------------


def _tree_bytes(*paths: Path) -> dict[str, bytes]:
    out = {}
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        out.update({f"{path.name}/{f.name}": f.read_bytes() for f in files if f.is_file()})
    return out


def test_any_workers_on_threads_or_processes_publish_the_same_bytes(
    built: Path, tmp_path: Path
) -> None:
    rows, cols = _cells(GRID)
    data = np.sin(rows * 0.37 + cols * 0.11) * 1e3  # every sum rounds somewhere
    raster = write_raster(tmp_path / "s.tif", data.astype(np.float64))
    published = []
    for workers, executor in ((1, None), (2, None), (3, None), (2, "process")):
        root = tmp_path / f"out{workers}{executor}"
        shutil.copytree(built, root)
        result = tileindex.values(root, raster, workers=workers, executor=executor)
        assert result.workers == workers
        published.append(_tree_bytes(result.paths["tile_values"], result.paths["region_values"]))
    assert all(p == published[0] for p in published[1:])
    assert len(published[0]) > 4


def test_a_dask_cluster_publishes_the_bytes_of_one_thread(built: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the optional extra tileindex[dask]")
    rows, cols = _cells(GRID)
    raster = write_raster(tmp_path / "s.tif", np.cos(rows * 0.21 - cols * 0.07) * 1e2)
    published = []
    for workers, executor in ((1, None), (2, "dask")):
        root = tmp_path / f"out{executor}"
        shutil.copytree(built, root)
        result = tileindex.values(root, raster, workers=workers, executor=executor)
        published.append(_tree_bytes(result.paths["tile_values"], result.paths["region_values"]))
    assert published[0] == published[1]


def test_several_workers_are_threads_of_this_process_and_one_is_this_thread(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, _ = _cells(GRID)
    raster = write_raster(tmp_path / "v.tif", (rows % 7).astype(np.float32))
    ran: list[str] = []
    original = values_module._values_part

    def spy(*args):  # type: ignore[no-untyped-def]
        ran.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(values_module, "_values_part", spy)
    names = {}
    for workers in (2, 1):
        root = tmp_path / f"out{workers}"
        shutil.copytree(built, root)
        result = tileindex.values(root, raster, workers=workers)
        names[workers], ran[:] = list(ran), []
        assert len(names[workers]) == len(part_files(result.paths["tile_values"])) > 1
    threads, main = names[2], names[1]
    assert all(name.startswith("tileindex-values") for name in threads), threads
    assert set(main) == {threading.current_thread().name}, main


def test_each_part_is_on_disk_before_its_task_ends(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a task fsyncs its finished part itself (as the build's tasks do), so the parts are
    # synced side by side, not one after another by the publish
    root = tmp_path / "out"
    shutil.copytree(built, root)
    rows, _ = _cells(GRID)
    raster = write_raster(tmp_path / "v.tif", (rows % 7).astype(np.float32))
    synced: list[tuple[str, int]] = []
    original = values_module.fsync_file

    def spy(path):  # type: ignore[no-untyped-def]
        synced.append((Path(path).name, pq.read_metadata(path).num_rows))  # a whole file
        return original(path)

    monkeypatch.setattr(values_module, "fsync_file", spy)
    result = tileindex.values(root, raster, workers=1)  # the tasks run in this process
    parts = part_files(result.paths["tile_values"])
    assert len(parts) > 1
    assert sorted(synced) == sorted((p.name, pq.read_metadata(p).num_rows) for p in parts)


def test_small_windows_bound_memory_and_change_nothing(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, cols = _cells(GRID)
    raster = write_raster(tmp_path / "v.tif", ((rows + cols) % 17).astype(np.float32))
    reference = tmp_path / "ref"
    shutil.copytree(root, reference)
    expect = tileindex.values(reference, raster)

    sizes: list[int] = []
    original = values_module._Strips._read

    def spy(self, data, mask, window):  # type: ignore[no-untyped-def]
        sizes.append(data.nbytes)  # the strip the window is read into
        return original(self, data, mask, window)

    bound = 3 * GRID.ncols * 4  # three rows of float32
    monkeypatch.setattr(values_module, "WINDOW_BYTES", bound)
    monkeypatch.setattr(values_module._Strips, "_read", spy)
    got = tileindex.values(root, raster)
    assert sizes and max(sizes) <= bound
    assert _tree_bytes(got.paths["tile_values"], got.paths["region_values"]) == _tree_bytes(
        expect.paths["tile_values"], expect.paths["region_values"]
    )


@pytest.mark.parametrize("user_setting", [None, "64"])
def test_the_raster_is_read_with_a_bounded_block_cache_unless_the_user_sets_one(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_setting: str | None
) -> None:
    # GDAL's default cache (5% of RAM) would be taken by every worker process
    if user_setting is None:
        monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    else:
        monkeypatch.setenv("GDAL_CACHEMAX", user_setting)
    rows, _ = _cells(GRID)
    raster = write_raster(tmp_path / "v.tif", (rows % 5).astype(np.float32))
    seen: list[object] = []
    original = values_module._Strips._read

    def spy(self, data, mask, window):  # type: ignore[no-untyped-def]
        seen.append(rasterio.env.getenv().get("GDAL_CACHEMAX") if rasterio.env.hasenv() else None)
        return original(self, data, mask, window)

    monkeypatch.setattr(values_module._Strips, "_read", spy)
    tileindex.values(root, raster)
    expected = values_module.CACHE_BYTES if user_setting is None else None
    assert seen and set(seen) == {expected}


def test_a_rerun_is_a_no_op_and_another_raster_is_e010(root: Path, tmp_path: Path) -> None:
    rows, cols = _cells(GRID)
    first = write_raster(tmp_path / "a.tif", (rows % 5).astype(np.uint8))
    other = write_raster(tmp_path / "b.tif", (cols % 5).astype(np.uint8))
    result = tileindex.values(root, first)
    before = _tree_bytes(result.paths["tile_values"], result.paths["region_values"])
    mtimes = {p: p.stat().st_mtime_ns for p in result.paths["tile_values"].iterdir()}

    again = tileindex.values(root, first, workers=2)
    assert again.outcome == "identical"
    assert {p: p.stat().st_mtime_ns for p in result.paths["tile_values"].iterdir()} == mtimes

    with pytest.raises(ImmutablePartitionError, match="already published") as err:
        tileindex.values(root, other)
    assert err.value.code == "E010_IMMUTABLE_PARTITION"
    assert _tree_bytes(result.paths["tile_values"], result.paths["region_values"]) == before
    assert list((root / ".tileindex-staging").iterdir()) == []


def test_a_kill_before_the_statistics_is_completed_by_the_rerun(root: Path, tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "a.tif", np.ones(GRID.shape, dtype=np.uint8))
    result = tileindex.values(root, raster)
    stats = result.paths["region_values"].read_bytes()
    result.paths["region_values"].unlink()  # as if killed between the two publishes
    again = tileindex.values(root, raster)
    assert again.outcome == "published"
    assert again.paths["region_values"].read_bytes() == stats


def test_the_index_is_untouched_and_still_validates(
    root: Path, small_world, tmp_path: Path
) -> None:
    def snapshot() -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and ".tileindex-staging" not in p.parts
        }

    before = snapshot()
    rows, _ = _cells(GRID)
    result = tileindex.values(root, write_raster(tmp_path / "u.tif", (rows % 3).astype(np.uint8)))
    after = snapshot()
    added = set(after) - set(before)
    assert {a.split("/")[3] for a in added if a.startswith("data/")} == {"tile_values"}
    assert {a for a in added if not a.startswith("data/")} == {
        result.paths["region_values"].relative_to(root).as_posix()
    }
    assert {k: after[k] for k in before} == before  # not one byte of the index changed
    iso, countries, raster = small_world
    report = tileindex.validate_partition(root, iso=iso, countries=countries, raster=raster)
    assert report.ok, report.findings


# -- refusals --------------------------------------------------------------------------------


def test_a_raster_on_another_grid_is_e002_naming_both(root: Path, tmp_path: Path) -> None:
    other = Grid.from_transform(360, 100, (1.0, 0.0, -180.25, 0.0, -1.0, 60.0))
    raster = write_raster(tmp_path / "coarse.tif", np.zeros(other.shape, np.uint8), grid=other)
    with pytest.raises(RasterMismatchError) as err:
        tileindex.values(root, raster)
    message = str(err.value)
    assert message.startswith("E002_RASTER_MISMATCH: values raster")
    assert "raster 360 x 100 cells, transform (1.0, 0.0, -180.25, 0.0, -1.0, 60.0)" in message
    assert "index 720 x 200 cells, transform (0.5, 0.0, -180.25, 0.0, -0.5, 60.0)" in message
    assert "gdalwarp" in message and "\n" not in message
    # same size, shifted by a hundredth of a cell
    shifted = Grid.from_transform(720, 200, (0.5, 0.0, -180.245, 0.0, -0.5, 60.0))
    raster = write_raster(tmp_path / "shift.tif", np.zeros(shifted.shape, np.uint8), grid=shifted)
    with pytest.raises(RasterMismatchError, match=r"-180\.245"):
        tileindex.values(root, raster)
    assert "tile_values" not in tileindex.open(root).datasets
    assert not (root / ".tileindex-staging").exists() or not any(
        (root / ".tileindex-staging").iterdir()
    )


@pytest.mark.parametrize("crs", ["EPSG:32633", None])
def test_another_crs_or_none_is_e007(root: Path, tmp_path: Path, crs: str | None) -> None:
    raster = write_raster(tmp_path / "utm.tif", np.zeros(GRID.shape, np.uint8), crs=crs)
    with pytest.raises(CrsMismatchError) as err:
        tileindex.values(root, raster)
    assert err.value.code == "E007_CRS_MISMATCH"
    assert ("EPSG:32633" if crs else "no CRS") in str(err.value)
    assert "tile_values" not in tileindex.open(root).datasets


def test_a_missing_or_unreadable_raster_is_one_line_bad_input(root: Path, tmp_path: Path) -> None:
    with pytest.raises(tileindex.InputFileError, match=r"values raster .*no such file"):
        tileindex.values(root, tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a raster at all")
    with pytest.raises(InputError, match=r"values raster .*not a readable raster"):
        tileindex.values(root, junk)


def test_a_key_column_named_like_a_statistic_is_refused(tmp_path: Path) -> None:
    tiling = make_tiling(tmp_path, 4, key_column="sum")
    out = tmp_path / "out"
    build(tiling.keys, tiling.regions, tiling.raster, out, key_column="sum")
    data = np.zeros(tiling.grid.shape, dtype=np.uint8)
    raster = write_raster(tmp_path / "z.tif", data, grid=tiling.grid)
    with pytest.raises(ConfigError, match="key column 'sum' is also the name of a values column"):
        tileindex.values(out, raster)


# -- region mode, the CLI, the documents ---------------------------------------------------


def test_region_mode_names_the_key_column(tmp_path: Path) -> None:
    tiling = make_tiling(tmp_path, 12)
    out = tmp_path / "out"
    build(
        tiling.keys,
        tiling.regions,
        tiling.raster,
        out,
        key_column="region_id",
        predicate="any_overlap",
        coverage=True,
    )
    rows, cols = _cells(tiling.grid)
    data = (rows % 3 + cols % 4).astype(np.int16)
    result = tileindex.values(out, write_raster(tmp_path / "r.tif", data, grid=tiling.grid))
    table = result.region_values
    assert table.column_names[0] == "region_id"
    assert table["region_id"].to_pylist() == list(tiling.codes)
    index = tileindex.open(out)
    for key, cells in _index_rows(index).items():
        row = _by_key(table, "region_id")[key]
        assert row["sum"] == sum(r % 3 + c % 4 for r, c in cells)
    # the layer tiles its 20 x 10 degree window, 20,000 cells of 0.1 degree, with no
    # nodata: the coverage weights of all regions add up to the window's area in cells
    assert sum(table["weighted_count"].to_pylist()) == pytest.approx(20_000, abs=1e-6)
    weights, counts = table["weighted_count"].to_pylist(), table["count"].to_pylist()
    assert all(w <= n for w, n in zip(weights, counts, strict=True))


def test_the_cli_publishes_and_refuses_in_one_line(root: Path, tmp_path: Path) -> None:
    assert cli_values.attach_values is tileindex.values  # a thin CLI over the API
    raster = write_raster(tmp_path / "c.tif", np.ones(GRID.shape, dtype=np.uint8))
    args = ["values", "--out", str(root), "--raster", str(raster), "--workers", "1"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "published" and doc["weighted"] is True
    assert doc["rows"] == tileindex.open(root).report["rows_emitted"]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "identical" in again.stdout

    other = Grid.from_transform(10, 10, (1.0, 0.0, 0.0, 0.0, -1.0, 10.0))
    bad = write_raster(tmp_path / "bad.tif", np.zeros(other.shape, np.uint8), grid=other)
    refused = CliRunner().invoke(main, ["values", "--out", str(root), "--raster", str(bad)])
    assert refused.exit_code == 1
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: E002_RASTER_MISMATCH: values raster")
    assert json.loads(lines[1])["code"] == "E002_RASTER_MISMATCH"


@pytest.mark.parametrize(
    ("table", "schema"),
    [
        ("columns/tile_values", tile_values_schema()),
        ("columns/region_values", region_values_schema(weighted=True)),
    ],
)
def test_the_contract_tables_are_the_published_schemas(
    root: Path, tmp_path: Path, table: str, schema: pa.Schema
) -> None:
    doc = tables(Path(__file__).resolve().parents[1] / "docs" / "CONTRACT.md")
    documented = pa.schema(
        [
            pa.field(r["column"], ARROW_TYPES[r["type"]], nullable=NULLABLE[r["nullable"]])
            for r in doc[table]
        ]
    )
    assert documented.equals(schema)
    result = tileindex.values(root, write_raster(tmp_path / "d.tif", np.ones(GRID.shape, np.uint8)))
    published = (
        pq.read_schema(part_files(result.paths["tile_values"])[0])
        if table == "columns/tile_values"
        else pq.read_schema(result.paths["region_values"])
    )
    assert published.remove_metadata().equals(documented)


# -- exact sums ------------------------------------------------------------------------------


def test_scaled_sum_is_exact_for_any_magnitudes() -> None:
    rng = np.random.default_rng(7)
    v = np.concatenate(
        [
            rng.normal(size=1000) * 10.0 ** rng.integers(-300, 300, size=1000),
            [5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 0.0],
            -np.ldexp(1.0, np.arange(-1074, 1023, 97)),
        ]
    )
    exact = sum((Fraction(float(x)) for x in v), Fraction(0))
    assert Fraction(scaled_sum(v), 2**1200) == exact
    assert scaled_sum(v) / 2**1200 == float(exact) == exact_sum(v)
    assert scaled_sum(rng.permutation(v)) == scaled_sum(v)
    assert scaled_sum(np.array([], dtype=np.float64)) == 0


# -- a real raster ---------------------------------------------------------------------------


def test_a_real_raster_natural_earth_shaded_relief(tmp_path: Path) -> None:
    """Band 1 of the Natural Earth shaded relief image cartopy ships (tests/data/README.md)
    on its own 0.5-degree grid, with the small world's countries."""
    with rasterio.open(NE_RASTER) as ds:
        pixels = ds.read(1)
        grid = Grid.from_transform(ds.width, ds.height, tuple(ds.transform)[:6])
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == NE_PIXELS_SHA256
    assert (grid.ncols, grid.nrows) == (720, 360) and int(pixels.sum(dtype=np.int64)) == 39615688
    inputs = make_inputs(
        tmp_path,
        SMALL_WORLD_COUNTRIES,
        ncols=grid.ncols,
        nrows=grid.nrows,
        transform=grid.transform,
    )
    out = tmp_path / "out"
    build(*inputs, out, predicate="any_overlap", coverage=True)
    result = tileindex.values(out, NE_RASTER, workers=2)
    index = tileindex.open(out)
    stats = _by_key(result.region_values)
    for key, cells in _index_rows(index).items():
        expect = [int(pixels[r, c]) for r, c in cells]
        assert stats[key]["sum"] == sum(expect) and stats[key]["count"] == len(expect)
        assert stats[key]["max"] == max(expect)
    tv = _read(result.paths["tile_values"])
    ids = np.asarray(tv["tile_id"].to_numpy(), dtype=np.int64)
    assert tv["value"].to_pylist() == pixels.ravel()[ids].astype(float).tolist()


def test_values_never_imports_pandas(built: Path, tmp_path: Path) -> None:
    # pyarrow imports pandas (half a second) on its first conversion to or from NumPy or
    # Python lists; values runs on Arrow buffers (tileindex.arrays) and pays none of it
    root = tmp_path / "out"
    shutil.copytree(built, root)
    rows, _ = _cells(GRID)
    raster = write_raster(tmp_path / "v.tif", (rows % 7).astype(np.float32))
    code = (
        "import sys, tileindex\n"
        f"tileindex.values({str(root)!r}, {str(raster)!r}, workers=2)\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
