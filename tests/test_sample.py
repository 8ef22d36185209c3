"""tileindex.sample and 'tileindex sample': weighted cells, uniform points inside the
cell's part of the region, reproducible from a seed (docs/CONTRACT.md §10.4-§10.5)."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tileindex
from tileindex.cli import main
from tileindex.contract import DatasetDictionary
from tileindex.errors import ConfigError, InputError, InputFileError
from tileindex.executors import get_executor
from tileindex.pipeline import build
from tileindex.rowgroups import read_key_runs, row_groups

from factories import SMALL_WORLD_COUNTRIES, SMALL_WORLD_GRID

REGIONS = ["AA", "BB", "CC", "FJ"]  # ZZ has no cell
SAMPLE = importlib.import_module("tileindex.sample")
_VALUES_TEMPLATE = "data/layer1/1B/tile_values/parameter_hash={parameter_hash}/"


@pytest.fixture(scope="module")
def root(small_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "out"
    build(*small_world, out, rows_per_row_group=64, row_groups_per_file=4, coverage=True)
    return out


@pytest.fixture(scope="module")
def overlap_root(small_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """any_overlap: the cells split by BB's outline belong to AA and BB both."""
    out = tmp_path_factory.mktemp("sample-overlap") / "out"
    build(*small_world, out, predicate="any_overlap", coverage=True)
    return out


def _value_of(tile_id: np.ndarray) -> np.ndarray:
    """The test's synthetic value raster: 1..6 by tile id, null where tile_id % 7 == 0."""
    return (tile_id % 7).astype(np.float64)


def _with_values(root: Path, copy: Path, value: np.ndarray | None = None) -> tileindex.Index:
    """A copy of the index with a tile_values dataset (as 'tileindex values' publishes:
    key, tile_id, value float64 nullable, the keys and order of tile_index), opened with a
    dataset dictionary that names it; ``value`` by row, default :func:`_value_of`."""
    shutil.copytree(root, copy)
    builtin = DatasetDictionary.load()
    templates = {**builtin.templates, "tile_values": _VALUES_TEMPLATE}
    dictionary = DatasetDictionary(templates, "the test's dictionary")
    index = tileindex.Index(copy, tileindex.open(copy).parameter_hash, dictionary)
    folder = index.path("tile_values")
    folder.mkdir(parents=True)
    rows = index.to_table(columns=["country_iso", "tile_id"])
    ids = rows["tile_id"].to_numpy()
    table = pa.table(
        {
            "country_iso": rows["country_iso"],
            "tile_id": rows["tile_id"],
            "value": pa.array(
                _value_of(ids) if value is None else value, pa.float64(), mask=ids % 7 == 0
            ),
        }
    )
    pq.write_table(table, folder / "part-00000.parquet", row_group_size=50)
    return index


@pytest.fixture(scope="module")
def values_root(root: Path, tmp_path_factory: pytest.TempPathFactory) -> tileindex.Index:
    return _with_values(root, tmp_path_factory.mktemp("sample-values") / "out")


@pytest.fixture(scope="module")
def pool() -> Iterator[Executor]:
    """Two worker processes, started once for the tests that compare worker counts."""
    executor, _ = get_executor("process", 2)
    with executor:
        yield executor


# -- helpers written for the tests, independent of the module ----------------------------


def _chi2_pvalue(observed: np.ndarray, expected: np.ndarray) -> float:
    stat = float(((observed - expected) ** 2 / expected).sum())
    dof = observed.size - 1
    try:
        from scipy.stats import chi2
    except ImportError:  # Wilson-Hilferty: the upper tail of chi2(dof) at stat
        from math import erfc, sqrt

        z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / sqrt(2 / (9 * dof))
        return 0.5 * erfc(z / sqrt(2))
    return float(chi2.sf(stat, dof))


def _counts(points: pa.Table, cells: np.ndarray) -> np.ndarray:
    drawn, n = np.unique(points["tile_id"].to_numpy(), return_counts=True)
    assert np.isin(drawn, cells).all(), "a point in a cell that is not the region's"
    out = np.zeros(cells.size)
    out[np.searchsorted(cells, drawn)] = n
    return out


def _center_rule(code: str, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The point rule from the inputs themselves: in some polygon's closed shell and not in
    or on its holes; FJ given beyond +180 is tested at lon and lon + 360."""
    out = np.zeros(lon.size, dtype=bool)
    for poly in SMALL_WORLD_COUNTRIES[code]:
        shell = shapely.Polygon(poly.exterior)
        holes = [shapely.Polygon(h) for h in poly.interiors]
        for shift in (0.0, 360.0):
            pts = shapely.points(lon + shift, lat)
            inside = shapely.covers(shell, pts)
            for hole in holes:
                inside &= ~shapely.intersects(hole, pts)
            out |= inside
    return out


def _in_cell(points: pa.Table) -> np.ndarray:
    """Whether each point lies in the closed box of its cell (§3 formulas, unwrapped)."""
    g = SMALL_WORLD_GRID
    row, col = np.divmod(points["tile_id"].to_numpy().astype(np.int64), g.ncols)
    x0, x1 = g.c + g.a * col, g.c + g.a * (col + 1)
    y0, y1 = g.f + g.e * (row + 1), g.f + g.e * row
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    inx = ((x0 <= lon) & (lon <= x1)) | ((x0 <= lon + 360) & (lon + 360 <= x1))
    inx |= (x0 <= lon - 360) & (lon - 360 <= x1)
    return inx & (y0 <= lat) & (lat <= y1)


# -- the draw -------------------------------------------------------------------------------


def test_cells_are_drawn_with_the_area_weights(root: Path) -> None:
    index = tileindex.open(root)
    rows = index.to_table("CC", columns=["tile_id", "pixel_area_m2"])
    cells, area = rows["tile_id"].to_numpy(), rows["pixel_area_m2"].to_numpy()
    n = 40_000
    points = tileindex.sample(index, n, per_region=True, keys=["CC"], seed=11)
    observed = _counts(points, cells)
    assert _chi2_pvalue(observed, n * area / area.sum()) > 1e-3


def test_cells_are_drawn_with_area_times_coverage(root: Path) -> None:
    index = tileindex.open(root)
    rows = index.to_table("AA", columns=["tile_id", "pixel_area_m2"])
    cov = index.to_table("AA", dataset="tile_coverage", columns=["tile_id", "coverage_fraction"])
    assert rows["tile_id"].equals(cov["tile_id"])
    weight = rows["pixel_area_m2"].to_numpy() * cov["coverage_fraction"].to_numpy()
    assert np.unique(cov["coverage_fraction"].to_numpy()).size > 1  # the weights differ
    n = 60_000
    points = tileindex.sample(index, n, per_region=True, weights="coverage", keys="AA", seed=3)
    cells = rows["tile_id"].to_numpy()
    observed = _counts(points, cells)
    assert _chi2_pvalue(observed, n * weight / weight.sum()) > 1e-3


def test_cells_are_drawn_with_the_values_and_null_weighs_nothing(values_root) -> None:
    index = values_root
    cells = index.to_table("BB", columns=["tile_id"])["tile_id"].to_numpy()
    weight = _value_of(cells)  # 0 where the value is null
    n = 30_000
    points = tileindex.sample(index, n, per_region=True, weights="values", keys="BB", seed=5)
    observed = _counts(points, cells)
    assert observed[cells % 7 == 0].sum() == 0
    keep = weight > 0
    assert _chi2_pvalue(observed[keep], n * weight[keep] / weight.sum()) > 1e-3
    # the test has power: the same draw is far from uniform over the weighted cells
    assert _chi2_pvalue(observed[keep], np.full(keep.sum(), n / keep.sum())) < 1e-12


def test_n_in_total_splits_by_the_regions_total_weight(root: Path) -> None:
    index = tileindex.open(root)
    area = index.to_table(columns=["country_iso", "pixel_area_m2"]).group_by("country_iso")
    totals = area.aggregate([("pixel_area_m2", "sum")]).sort_by("country_iso")
    expect = totals["pixel_area_m2_sum"].to_numpy()
    n = 50_000
    points = tileindex.sample(index, n, seed=2)
    assert points.num_rows == n
    keys, n_key = np.unique(points["country_iso"].to_numpy(False), return_counts=True)
    got = {k: 0 for k in REGIONS} | dict(zip(keys.tolist(), n_key.tolist(), strict=True))
    assert totals["country_iso"].to_pylist() == REGIONS
    observed = np.array([got[k] for k in REGIONS], dtype=float)
    assert _chi2_pvalue(observed, n * expect / expect.sum()) > 1e-3


def test_per_region_counts_are_exact_and_in_order(root: Path) -> None:
    index = tileindex.open(root)
    points = tileindex.sample(index, 37, per_region=True, keys=REGIONS, seed=4)
    keys = points["country_iso"].to_pylist()
    assert keys == [k for k in REGIONS for _ in range(37)]
    assert points.schema.names == ["country_iso", "tile_id", "lon", "lat"]
    assert [f.type for f in points.schema] == [pa.string(), pa.uint64(), pa.float64(), pa.float64()]
    for k in REGIONS:  # within a region: tile id order
        ids = points.filter(pc.equal(points["country_iso"], k))["tile_id"].to_numpy()
        assert (np.diff(ids.astype(np.int64)) >= 0).all()


# -- the points -----------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["area", "coverage"])
def test_every_point_lies_in_its_region_and_its_cell(root: Path, weights: str) -> None:
    index = tileindex.open(root)
    points = tileindex.sample(index, 3000, per_region=True, keys=REGIONS, weights=weights)
    assert _in_cell(points).all()
    for k in REGIONS:
        mine = points.filter(pc.equal(points["country_iso"], k))
        lon, lat = mine["lon"].to_numpy(), mine["lat"].to_numpy()
        assert ((lon >= -180) & (lon <= 180)).all()
        assert _center_rule(k, lon, lat).all(), k


def test_points_of_a_split_cell_fall_on_their_side(overlap_root: Path) -> None:
    index = tileindex.open(overlap_root)
    bb = shapely.box(10, 5, 15, 10)
    cov = index.to_table("AA", dataset="tile_coverage")
    split = cov.filter(pc.less(cov["coverage_fraction"], 1.0))["tile_id"].to_numpy()
    both = np.intersect1d(split, index.to_table("BB")["tile_id"].to_numpy())
    assert both.size == 20  # the cells cut by BB's west and east edges, in both regions
    for key, inside in (("AA", False), ("BB", True)):
        n = 40_000 if key == "AA" else 2_000
        pts = tileindex.sample(index, n, per_region=True, keys=key, weights="coverage")
        pts = pts.filter(pc.is_in(pts["tile_id"], pa.array(both, pa.uint64())))
        assert pts.num_rows > 100
        xy = shapely.points(pts["lon"].to_numpy(), pts["lat"].to_numpy())
        # AA's hole is open: its points are off BB's closed box; BB's are in it
        assert (shapely.intersects(bb, xy) == inside).all(), key


def test_the_sliver_fallback_gives_points_in_region_and_cell(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no rejection round: every drawn cell is triangulated
    monkeypatch.setattr(importlib.import_module("tileindex.sample"), "_MAX_TRIES", 0)
    index = tileindex.open(root)
    points = tileindex.sample(index, 300, per_region=True, keys=["AA", "CC", "FJ"])
    assert points.num_rows == 900 and _in_cell(points).all()
    for k in ("AA", "CC", "FJ"):
        mine = points.filter(pc.equal(points["country_iso"], k))
        assert _center_rule(k, mine["lon"].to_numpy(), mine["lat"].to_numpy()).all()


def test_within_cells_agree_with_the_coverage_module(root: Path) -> None:
    """The kernel-window shortcut that skips the point test, against coverage.cells_within
    (another exact method), on every cell of each region, the sliver-only cells of CC too."""
    from tileindex.coverage import cells_within
    from tileindex.geometry import country_geometry

    index = tileindex.open(root)
    shortcut = importlib.import_module("tileindex.sample")._cells_within
    for code in ("AA", "CC", "FJ"):
        region = country_geometry(code, SMALL_WORLD_COUNTRIES[code])
        tiles = index.to_table(code)["tile_id"].to_numpy().astype(np.int64)
        row, col = np.divmod(tiles, SMALL_WORLD_GRID.ncols)
        expect = cells_within(SMALL_WORLD_GRID, region, row, col)
        assert 0 < expect.sum() < tiles.size
        np.testing.assert_array_equal(shortcut(SMALL_WORLD_GRID, region, row, col), expect)
        edge = ~expect  # only cells with no within cell in their window: no runs at all
        got = shortcut(SMALL_WORLD_GRID, region, row[edge][:1], col[edge][:1])
        assert not got.any()


# -- reproducibility ------------------------------------------------------------------------


def test_same_seed_same_table_other_seed_other_table(root: Path) -> None:
    index = tileindex.open(root)
    a = tileindex.sample(index, 500, seed=9)
    assert a.equals(tileindex.sample(index, 500, seed=9))
    assert not a.equals(tileindex.sample(index, 500, seed=10))


def test_a_region_draws_the_same_points_whatever_else_is_drawn(root: Path) -> None:
    index = tileindex.open(root)
    everything = tileindex.sample(index, 200, per_region=True, keys=REGIONS, seed=1)
    for key in ("CC", "FJ"):
        alone = tileindex.sample(index, 200, per_region=True, keys=[key], seed=1)
        assert alone.equals(everything.filter(pc.equal(everything["country_iso"], key)))


def test_the_layout_of_the_partition_does_not_change_the_points(
    root: Path, small_world, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    build(*small_world, other, rows_per_row_group=7, row_groups_per_file=3, coverage=True)
    for weights in ("area", "coverage"):
        a = tileindex.sample(tileindex.open(root), 700, weights=weights, seed=6)
        b = tileindex.sample(tileindex.open(other), 700, weights=weights, seed=6)
        assert a.equals(b), weights


def test_workers_do_not_change_the_table(
    root: Path, pool: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # jobs of about 300 rows: the small world's regions spread over several jobs (and
    # AA, the largest, alone), run on two processes in whatever order they finish
    monkeypatch.setattr(SAMPLE, "_JOB_ROWS", 300)
    index = tileindex.open(root)
    groups = row_groups(index.path("tile_index"), "country_iso")
    assert len(SAMPLE._job_ranges(SAMPLE._rows_per_key(groups, REGIONS))) >= 3
    for kwargs in (
        {"n": 4000, "weights": "coverage"},
        {"n": 300, "per_region": True, "keys": REGIONS, "weights": "area"},
    ):
        serial = tileindex.sample(index, seed=12, **kwargs)  # type: ignore[arg-type]
        parallel = tileindex.sample(index, seed=12, executor=pool, **kwargs)  # type: ignore[arg-type]
        assert parallel.equals(serial), kwargs
        assert parallel.num_rows == (1200 if "keys" in kwargs else 4000)


def test_cli_writes_the_same_bytes_for_any_worker_count(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SAMPLE, "_JOB_ROWS", 300)  # several jobs, so two processes start
    files = []
    for workers in ("1", "2"):
        out = tmp_path / f"p{workers}.parquet"
        args = ["sample", str(root), "--n", "3000", "--weights", "coverage", "--seed", "5"]
        result = CliRunner().invoke(main, [*args, "--workers", workers, "--out", str(out)])
        assert result.exit_code == 0, result.output
        files.append(out.read_bytes())
    assert files[0] == files[1]
    assert pq.read_table(tmp_path / "p2.parquet").num_rows == 3000


@pytest.mark.parametrize("batch_rows", [3, 64, 1000])
def test_the_reading_batch_does_not_change_the_points(root: Path, batch_rows: int) -> None:
    """Chunking: the rows of weights are read ``batch_rows`` at a time (cut inside row
    groups, or spanning them); each region's running sum goes on across the cuts."""
    index = tileindex.open(root)
    for weights in ("area", "coverage"):
        expect = tileindex.sample(index, 600, weights=weights, seed=13)
        got = tileindex.sample(index, 600, weights=weights, seed=13, batch_rows=batch_rows)
        assert got.equals(expect), weights


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.lists(st.sampled_from([*REGIONS, "ZZ"]), min_size=1, unique=True).map(sorted),
    batch_rows=st.integers(2, 300),
)
def test_key_runs_are_the_rows_of_the_keys_in_order(root: Path, keys, batch_rows) -> None:
    index = tileindex.open(root)
    groups = row_groups(index.path("tile_index"), "country_iso")
    pieces = list(read_key_runs(groups, ["tile_id"], "country_iso", keys, batch_rows))
    assert all(0 < p.num_rows <= batch_rows for _, p in pieces)
    assert all(pc.all(pc.equal(p["country_iso"].cast(pa.string()), k)).as_py() for k, p in pieces)
    got = np.concatenate([p["tile_id"].to_numpy() for _, p in pieces] or [np.empty(0, np.uint64)])
    expect = index.to_table(keys, columns=["tile_id"])["tile_id"].to_numpy()
    np.testing.assert_array_equal(got, expect)


def test_the_first_refusal_in_key_order_is_raised(root: Path, tmp_path: Path, monkeypatch) -> None:
    """Bad weights in BB and CC, in jobs of their own: the error names BB whichever job
    runs or finishes first (CC, the larger, starts first)."""
    monkeypatch.setattr(SAMPLE, "_JOB_ROWS", 1)
    rows = tileindex.open(root).to_table(columns=["country_iso", "tile_id"])
    bad = np.isin(rows["country_iso"].to_numpy(False), ["BB", "CC"])
    value = np.where(bad, -1.0, 1.0)
    index = _with_values(root, tmp_path / "bad", value)
    with pytest.raises(InputError, match=r"tile_values of 'BB' has value -1.0 at tile_id"):
        tileindex.sample(index, 10, weights="values", keys=["BB", "CC"])


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_rows", [0, -1, 2.5, True])
def test_batch_rows_must_be_a_positive_integer(root: Path, batch_rows: object) -> None:
    with pytest.raises(ConfigError, match=r"batch_rows .* is not a positive integer"):
        tileindex.sample(tileindex.open(root), 5, batch_rows=batch_rows)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_n_must_be_a_positive_integer(root: Path, n: object) -> None:
    with pytest.raises(ConfigError, match="is not a positive integer"):
        tileindex.sample(tileindex.open(root), n)  # type: ignore[arg-type]


def test_unknown_weights_name_lists_the_valid_ones(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"weights 'pop' is unknown; valid weights are area"):
        tileindex.sample(tileindex.open(root), 5, weights="pop")


def test_a_region_without_weight_is_refused_per_region(root: Path) -> None:
    with pytest.raises(InputError, match=r"'ZZ' has total weight 0 .*pass keys= without it"):
        tileindex.sample(tileindex.open(root), 5, per_region=True)


def test_missing_weight_datasets_name_the_fix(small_world, root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"needs tile_values.*'tileindex values"):
        tileindex.sample(tileindex.open(root), 5, weights="values")
    plain = tmp_path / "plain"
    build(*small_world, plain)
    with pytest.raises(InputFileError, match=r"needs tile_coverage.*rebuild with --coverage"):
        tileindex.sample(tileindex.open(plain), 5, weights="coverage")


# -- the command ----------------------------------------------------------------------------


def test_cli_writes_the_api_table(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "points.parquet"
    args = ["sample", str(root), "--n", "40", "--per-region", "--weights", "coverage"]
    args += ["--seed", "8", "--region", "AA", "--region", "FJ", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    expect = tileindex.sample(
        tileindex.open(root), 40, per_region=True, weights="coverage", seed=8, keys=["AA", "FJ"]
    )
    assert pq.read_table(out).equals(expect)
    again = CliRunner().invoke(main, args)  # never clobbers
    assert again.exit_code == 1 and "already exists" in again.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0"], "n 0 is not a positive integer"),
        (["--n", "5", "--weights", "people"], "weights 'people' is unknown"),
        (["--n", "5", "--per-region"], "'ZZ' has total weight 0"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    root: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "p.parquet"
    result = CliRunner().invoke(main, ["sample", str(root), *extra, "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("error: ") and message in result.output
    assert "Traceback" not in result.output and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_root_with_no_or_several_partitions(small_world, tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    (tmp_path / "empty").mkdir()
    args = ["--n", "3", "--out", str(out)]
    result = CliRunner().invoke(main, ["sample", str(tmp_path / "empty"), *args])
    assert result.exit_code == 1 and "no tile_index partition under" in result.output
    two = tmp_path / "two"
    build(*small_world, two, predicate="center")
    build(*small_world, two, predicate="within")
    result = CliRunner().invoke(main, ["sample", str(two), *args])
    assert result.exit_code == 1 and "holds 2 tile_index partitions" in result.output
    assert not out.exists()
