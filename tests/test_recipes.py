"""The read recipes of ``docs/recipes.md`` (docs/CONTRACT.md §10.4), run exactly as
written with DuckDB and Polars on a real small ``any_overlap --coverage`` build, each
result checked against values derived here from the partitions with pyarrow."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import shapely

from tileindex.contract import DatasetDictionary
from tileindex.grid import Grid
from tileindex.layout import part_files, pick_parameter_hash
from tileindex.pipeline import build

from factories import ONE_DEGREE, make_inputs

duckdb = pytest.importorskip("duckdb")  # the test extra (pyproject.toml) brings it
pl = pytest.importorskip("polars")

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
_BLOCK = re.compile(r"<!-- recipe: (\S+) -->\s*```(sql|python)\n(.*?)```", re.S)
GRID = Grid.from_transform(360, 180, ONE_DEGREE)
REL = 1e-12  # DuckDB and math.fsum may sum in different orders

# On the 1° grid: CH and DE share the column 8..9 at lat 47..48 half and half (a tie);
# IT overlaps CH (countries may overlap, §6.4); LS is a triangle off the grid lines.
COUNTRIES = {
    "CH": [shapely.box(5.0, 45.0, 8.5, 48.0)],
    "DE": [shapely.box(8.5, 47.0, 12.0, 50.0)],
    "IT": [shapely.box(7.25, 43.0, 10.0, 46.75)],
    "LS": [shapely.Polygon([(27.1, -28.3), (29.6, -29.1), (28.2, -30.7)])],
}


def recipes() -> dict[str, tuple[str, str]]:
    found = {name: (lang, body) for name, lang, body in _BLOCK.findall(RECIPES.read_text())}
    assert found, f"no recipe blocks in {RECIPES}"
    return found


def tid(lon_west: float, lat_north: float) -> int:
    """The tile_id of the 1° cell whose north-west corner is (lon_west, lat_north)."""
    return int(GRID.tile_id(int(90 - lat_north), int(lon_west + 180))[()])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("recipes")
    iso, countries, raster = make_inputs(tmp, COUNTRIES)
    out = tmp / "out"
    # small row groups and files: the recipes' globs must read every part
    build(
        iso,
        countries,
        raster,
        out,
        predicate="any_overlap",
        coverage=True,
        rows_per_row_group=8,
        row_groups_per_file=2,
    )
    return out


def _table(root: Path, dataset: str) -> pa.Table:
    paths = DatasetDictionary.load()
    folder = paths.path(dataset, root, pick_parameter_hash(root, paths))
    return ds.dataset(part_files(folder), format="parquet").to_table()


@pytest.fixture(scope="module")
def index(root: Path) -> list[dict[str, Any]]:
    return _table(root, "tile_index").to_pylist()


@pytest.fixture(scope="module")
def coverage(root: Path) -> list[dict[str, Any]]:
    return _table(root, "tile_coverage").to_pylist()


def run(root: Path, name: str, **variables: str) -> list[tuple[Any, ...]]:
    """Run the recipe ``name`` exactly as docs/recipes.md writes it, after the doc's own
    root block with this build's root in place of its example path."""
    blocks = recipes()
    con = duckdb.connect()
    lang, setup = blocks["root"]
    con.execute(setup.replace("'tileindex-out'", f"'{root}'"))
    for var, value in variables.items():
        con.execute(f"SET VARIABLE {var} = '{value}'")
    lang, sql = blocks[name]
    assert lang == "sql"
    return con.sql(sql).fetchall()


def test_every_recipe_block_is_run_by_a_test() -> None:
    assert set(recipes()) == {
        "root", "read_one_key", "cells_per_key", "polars_read_one_key",
        "assign_largest_fraction", "area_weights", "area_per_key", "values_per_key",
    }  # fmt: skip


def test_root_block_only_sets_the_root_variable() -> None:
    lang, body = recipes()["root"]
    assert (lang, body.strip()) == ("sql", "SET VARIABLE root = 'tileindex-out';")


def test_build_has_several_parts_so_the_globs_are_exercised(root: Path) -> None:
    paths = DatasetDictionary.load()
    for dataset in ("tile_index", "tile_coverage"):
        folder = paths.path(dataset, root, pick_parameter_hash(root, paths))
        assert len(part_files(folder)) > 2


def test_read_one_key_returns_exactly_that_keys_rows_in_order(
    root: Path, index: list[dict[str, Any]]
) -> None:
    cols = ("tile_id", "raster_row", "raster_col", "centroid_lon", "centroid_lat",
            "pixel_area_m2")  # fmt: skip
    expected = [tuple(r[c] for c in cols) for r in index if r["country_iso"] == "CH"]
    got = run(root, "read_one_key")
    assert got == expected
    # CH is 3.5 x 3 degrees from 5E 45N: 4 columns x 3 rows of 1° cells overlap it
    assert {t for t, *_ in got} == {tid(x, y) for x in range(5, 9) for y in (46, 47, 48)}


def test_cells_per_key_counts_and_sums_every_key(root: Path, index: list[dict[str, Any]]) -> None:
    per: dict[str, list[float]] = defaultdict(list)
    for r in index:
        per[r["country_iso"]].append(r["pixel_area_m2"])
    got = run(root, "cells_per_key")
    assert [k for k, *_ in got] == sorted(COUNTRIES)
    for key, cells, km2 in got:
        assert cells == len(per[key])
        assert km2 == pytest.approx(math.fsum(per[key]) / 1e6, rel=REL)


def test_polars_read_one_key_matches_the_partition(root: Path, index: list[dict[str, Any]]) -> None:
    lang, body = recipes()["polars_read_one_key"]
    assert lang == "python"
    namespace: dict[str, Any] = {}
    exec(body, namespace)
    frame = namespace["read_key"](str(root), "IT")
    cols = ["tile_id", "raster_row", "raster_col", "centroid_lon", "centroid_lat",
            "pixel_area_m2"]  # fmt: skip
    assert frame.columns == cols
    expected = [tuple(r[c] for c in cols) for r in index if r["country_iso"] == "IT"]
    assert frame.rows() == expected and expected


def test_assign_gives_each_cell_once_to_its_largest_fraction(
    root: Path, coverage: list[dict[str, Any]]
) -> None:
    by_cell: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for r in coverage:
        by_cell[r["tile_id"]].append((r["coverage_fraction"], r["country_iso"]))
    expected = []
    for t in sorted(by_cell):
        best = max(f for f, _ in by_cell[t])
        key = min((k for f, k in by_cell[t] if f == best), key=lambda k: k.encode())
        expected.append((t, key, best))
    got = run(root, "assign_largest_fraction")
    assert got == expected
    assert len({t for t, _, _ in got}) == len(got) == len(by_cell)
    # a shared cell where the other country holds more: 8..9 x 45..46 is half CH, all IT
    assert (tid(8, 46), "IT", 1.0) in got


def test_assign_breaks_a_tie_by_the_smallest_key(
    root: Path, coverage: list[dict[str, Any]]
) -> None:
    # 8..9 x 47..48: CH holds the west half, DE the east half, IT none of it
    cell = tid(8, 48)
    shares = {r["country_iso"]: r["coverage_fraction"] for r in coverage if r["tile_id"] == cell}
    assert shares == {"CH": 0.5, "DE": 0.5}
    assert (cell, "CH", 0.5) in run(root, "assign_largest_fraction")


def test_area_weights_are_fraction_times_area_and_shares_sum_to_one(
    root: Path, index: list[dict[str, Any]], coverage: list[dict[str, Any]]
) -> None:
    area = {(r["country_iso"], r["tile_id"]): r["pixel_area_m2"] for r in index}
    weight = {(r["country_iso"], r["tile_id"]): r["coverage_fraction"] * area[
        (r["country_iso"], r["tile_id"])] for r in coverage}  # fmt: skip
    totals: dict[str, float] = defaultdict(float)
    for (key, _), w in weight.items():
        totals[key] = math.fsum([totals[key], w])
    got = run(root, "area_weights")
    assert [(k, t) for k, t, _, _ in got] == sorted(weight)
    share_sums: dict[str, list[float]] = defaultdict(list)
    for key, t, w, share in got:
        assert w == weight[(key, t)]
        assert share == pytest.approx(weight[(key, t)] / totals[key], rel=REL)
        share_sums[key].append(share)
    for key, shares in share_sums.items():
        assert math.fsum(shares) == pytest.approx(1.0, rel=REL), key


def test_area_per_key_sums_fractions_times_areas(
    root: Path, index: list[dict[str, Any]], coverage: list[dict[str, Any]]
) -> None:
    area = {(r["country_iso"], r["tile_id"]): r["pixel_area_m2"] for r in index}
    got = {k: rest for k, *rest in run(root, "area_per_key")}
    assert sorted(got) == sorted(COUNTRIES)
    for key, (cells, full, full_km2, km2) in got.items():
        rows = [r for r in coverage if r["country_iso"] == key]
        whole = [area[(key, r["tile_id"])] for r in rows if r["coverage_fraction"] == 1.0]
        assert (cells, full) == (len(rows), len(whole))
        assert (full_km2 or 0.0) == pytest.approx(math.fsum(whole) / 1e6, rel=REL)
        weighted = [r["coverage_fraction"] * area[(key, r["tile_id"])] for r in rows]
        assert km2 == pytest.approx(math.fsum(weighted) / 1e6, rel=REL)
    # CH (5..8.5 x 45..48) holds the 3 x 3 cells of 5..8 x 45..48 whole
    assert got["CH"][1] == 9


def test_values_per_key_apportions_a_cell_value_by_fraction(
    root: Path, coverage: list[dict[str, Any]], tmp_path: Path
) -> None:
    cells = sorted({r["tile_id"] for r in coverage})
    values = {t: float(t % 7 + 1) for t in cells}
    path = tmp_path / "population.parquet"
    pq.write_table(pa.table({"tile_id": pa.array(cells, pa.uint64()),
                             "value": list(values.values())}), path)  # fmt: skip
    expected: dict[str, list[float]] = defaultdict(list)
    for r in coverage:
        expected[r["country_iso"]].append(r["coverage_fraction"] * values[r["tile_id"]])
    got = run(root, "values_per_key", cell_values=str(path))
    assert [k for k, _ in got] == sorted(expected)
    for key, value in got:
        assert value == pytest.approx(math.fsum(expected[key]), rel=REL)
