"""tileindex.to_xarray, write_mask and 'tileindex mask': masks of a window for array users
(docs/CONTRACT.md §10.4-§10.5)."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio
from click.testing import CliRunner

import tileindex
from tileindex.cli import main
from tileindex.errors import ConfigError, InputError, InputFileError
from tileindex.pipeline import build

from factories import SMALL_WORLD_GRID

xr = pytest.importorskip("xarray")
pytest.importorskip("dask.array")

mask_module = importlib.import_module("tileindex.mask")
G = SMALL_WORLD_GRID
BOX = (-1.0, -1.0, 31.0, 21.0)  # AA and its enclave BB with a rim


@pytest.fixture(scope="module")
def root(small_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mask") / "out"
    build(*small_world, out, rows_per_row_group=64, row_groups_per_file=4, coverage=True)
    return out


@pytest.fixture(scope="module")
def overlap_root(small_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mask-overlap") / "out"
    build(*small_world, out, predicate="any_overlap", rows_per_row_group=64, coverage=True)
    return out


def _window(bbox: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the cells whose box meets the open bbox, by §3's edges."""
    w, s, e, n = bbox
    cols = [c for c in range(G.ncols) if G.c + G.a * c < e and G.c + G.a * (c + 1) > w]
    rows = [r for r in range(G.nrows) if G.f + G.e * (r + 1) < n and G.f + G.e * r > s]
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _rows_in(index: tileindex.Index, window, dataset: str = "tile_index") -> pa.Table:
    r0, r1, c0, c1 = window
    t = index.to_table(dataset=dataset)
    row, col = np.divmod(t["tile_id"].to_numpy().astype(np.int64), G.ncols)
    keep = (row >= r0) & (row < r1) & (col >= c0) & (col < c1)
    return t.filter(pa.array(keep))


def test_id_mask_holds_each_cell_s_region_id(root: Path) -> None:
    index = tileindex.open(root)
    r0, r1, c0, c1 = win = _window(BOX)
    expect = np.zeros((r1 - r0, c1 - c0), dtype=np.uint32)
    rows = _rows_in(index, win)
    for key, tile in zip(rows["country_iso"].to_pylist(), rows["tile_id"].to_pylist(), strict=True):
        r, c = divmod(tile, G.ncols)
        expect[r - r0, c - c0] = index.keys.index(key) + 1
    assert {int(v) for v in np.unique(expect)} == {0, 1, 2}  # none, AA, BB
    got = tileindex.to_xarray(index, BOX, kind="id", chunks=16)
    assert got.dtype == np.uint32 and got.dims == ("lat", "lon")
    assert got.chunks == (tuple(_sizes(r1 - r0, 16)), tuple(_sizes(c1 - c0, 16)))
    np.testing.assert_array_equal(got.values, expect)


def _sizes(n: int, k: int) -> list[int]:
    return [k] * (n // k) + ([n % k] if n % k else [])


def test_coordinates_are_the_published_centroids(root: Path) -> None:
    index = tileindex.open(root)
    r0, r1, c0, c1 = win = _window(BOX)
    got = tileindex.to_xarray(index, BOX)
    np.testing.assert_array_equal(got["lat"].values, G.f + G.e * (np.arange(r0, r1) + 0.5))
    np.testing.assert_array_equal(got["lon"].values, G.c + G.a * (np.arange(c0, c1) + 0.5))
    rows = _rows_in(index, win)
    row, col = np.divmod(rows["tile_id"].to_numpy().astype(np.int64), G.ncols)
    np.testing.assert_array_equal(got["lat"].values[row - r0], rows["centroid_lat"].to_numpy())
    np.testing.assert_array_equal(got["lon"].values[col - c0], rows["centroid_lon"].to_numpy())


def test_coordinates_across_the_antimeridian_are_wrapped(root: Path) -> None:
    index = tileindex.open(root)
    got = tileindex.to_xarray(index, (-181.0, -20.0, -179.0, -15.0))
    assert got["lon"].values[0] == pytest.approx(-180.0)  # column 0 spans -180.25..-179.75
    assert ((got["lon"].values >= -180) & (got["lon"].values <= 180)).all()


def test_overlapping_regions_refuse_id_and_get_a_3d_boolean_mask(overlap_root: Path) -> None:
    index = tileindex.open(overlap_root)
    with pytest.raises(InputError, match=r"several regions.*use kind='boolean'"):
        tileindex.to_xarray(index, BOX, kind="id").compute()
    r0, _, c0, _ = win = _window(BOX)
    got = tileindex.to_xarray(index, BOX, kind="boolean", chunks=20)
    assert got.dims == ("region", "lat", "lon") and got.dtype == bool
    assert list(got["region"].values) == ["AA", "BB"]  # the geometries that meet the box
    assert list(got["id"].values) == [1, 2]
    values = got.values
    rows = _rows_in(index, win)
    expect = np.zeros_like(values)
    for key, tile in zip(rows["country_iso"].to_pylist(), rows["tile_id"].to_pylist(), strict=True):
        r, c = divmod(tile, G.ncols)
        expect[["AA", "BB"].index(key), r - r0, c - c0] = True
    np.testing.assert_array_equal(values, expect)
    assert (values[0] & values[1]).sum() > 0  # cells of both, on BB's outline


def test_fraction_mask_holds_the_coverage_fractions(root: Path) -> None:
    index = tileindex.open(root)
    r0, _, c0, _ = win = _window(BOX)
    got = tileindex.to_xarray(index, BOX, kind="fraction", chunks=32, keys=["BB", "AA"])
    assert list(got["region"].values) == ["AA", "BB"] and got.dtype == np.float64
    expect = np.zeros(got.shape)
    rows = _rows_in(index, win, "tile_coverage")
    for key, tile, f in zip(
        rows["country_iso"].to_pylist(),
        rows["tile_id"].to_pylist(),
        rows["coverage_fraction"].to_pylist(),
        strict=True,
    ):
        r, c = divmod(tile, G.ncols)
        expect[["AA", "BB"].index(key), r - r0, c - c0] = f
    np.testing.assert_array_equal(got.values, expect)


def test_chunks_read_lazily_only_the_row_groups_of_their_rows(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tileindex.open(root)
    read: list[tuple[int, int]] = []
    real = mask_module.read_row_groups

    def spy(groups, *args, **kwargs):
        read.extend((g.tile_min, g.tile_max) for g in groups)
        return real(groups, *args, **kwargs)

    monkeypatch.setattr(mask_module, "read_row_groups", spy)
    got = tileindex.to_xarray(index, BOX, kind="id", chunks=8)
    assert read == []  # nothing read before a chunk is computed
    r0, _, c0, _ = _window(BOX)
    got.isel(lat=slice(0, 8), lon=slice(0, 8)).compute()
    lo, hi = r0 * G.ncols + c0, (r0 + 7) * G.ncols + c0 + 7
    assert read and all(tmax >= lo and tmin <= hi for tmin, tmax in read)
    everything = mask_module.row_groups(index.path("tile_index"), "country_iso")
    assert len(read) < len(everything)


def test_bad_boxes_and_kinds_are_refused(root: Path, small_world, tmp_path: Path) -> None:
    index = tileindex.open(root)
    with pytest.raises(ConfigError, match=r"holds no cell of the grid, which spans lon -180.25"):
        tileindex.to_xarray(index, (0, 65, 10, 70))
    with pytest.raises(ConfigError, match="inverted or empty"):
        tileindex.to_xarray(index, (10, 0, 5, 5))
    with pytest.raises(ConfigError, match="inverted or empty"):
        tileindex.to_xarray(index, (0, 5, 5, 0))
    with pytest.raises(ConfigError, match=r"kind 'ids' is unknown; valid kinds are id"):
        tileindex.to_xarray(index, BOX, kind="ids")
    plain = tmp_path / "plain"
    build(*small_world, plain)
    with pytest.raises(InputFileError, match=r"needs tile_coverage.*rebuild with --coverage"):
        tileindex.to_xarray(tileindex.open(plain), BOX, kind="fraction")


# -- GeoTIFF --------------------------------------------------------------------------------


def test_geotiff_pixels_georeferencing_and_id_table(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tif"
    result = CliRunner().invoke(
        main, ["mask", str(root), "--bbox", "-1,-1,31,21", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    index = tileindex.open(root)
    r0, r1, c0, c1 = _window(BOX)
    with rasterio.open(out) as src:
        pixels = src.read(1)
        assert src.crs.to_epsg() == 4326 and src.dtypes == ("uint32",) and src.nodata == 0
        assert (src.width, src.height) == (c1 - c0, r1 - r0)
        # pixel (0, 0)'s corner is the window's first cell's corner, cells are the grid's
        assert (src.transform.c, src.transform.f) == (G.c + G.a * c0, G.f + G.e * r0)
        assert src.xy(0, 0) == (G.c + G.a * (c0 + 0.5), G.f + G.e * (r0 + 0.5))
        assert (src.transform.a, src.transform.e) == (G.a, G.e)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    np.testing.assert_array_equal(pixels, tileindex.to_xarray(index, BOX).values)
    with open(tmp_path / "m.ids.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [(int(r["id"]), r["key"]) for r in table] == list(enumerate(index.keys, start=1))


def test_geotiff_of_coverage_has_a_band_per_region(root: Path, tmp_path: Path) -> None:
    index = tileindex.open(root)
    result = tileindex.write_mask(index, BOX, tmp_path / "f.tif", coverage=True, chunks=16)
    assert result.band_keys == ("AA", "BB") and result.bands == 2
    with rasterio.open(tmp_path / "f.tif") as src:
        assert src.descriptions == ("AA", "BB") and src.dtypes == ("float64", "float64")
        bands = src.read()
    np.testing.assert_array_equal(bands, tileindex.to_xarray(index, BOX, kind="fraction").values)
    with open(tmp_path / "f.ids.csv", newline="") as fh:
        assert list(csv.reader(fh)) == [["band", "id", "key"], ["1", "1", "AA"], ["2", "2", "BB"]]


@pytest.mark.parametrize(
    ("bbox", "message"),
    [("0,65,10,70", "holds no cell of the grid"), ("10,0,5,5", "inverted or empty")],
)
def test_cli_bad_bbox_is_one_line_and_writes_nothing(
    root: Path, tmp_path: Path, bbox: str, message: str
) -> None:
    out = tmp_path / "m.tif"
    result = CliRunner().invoke(main, ["mask", str(root), "--bbox", bbox, "--out", str(out)])
    assert result.exit_code == 1 and result.output.startswith("error: ")
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_overlapping_ids_write_nothing(overlap_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tif"
    result = CliRunner().invoke(
        main, ["mask", str(overlap_root), "--bbox", "-1,-1,31,21", "--out", str(out)]
    )
    assert result.exit_code == 1 and "a coverage mask (--coverage" in result.output
    assert list(tmp_path.iterdir()) == []
