"""tileindex.lookup and ``tileindex lookup`` (docs/CONTRACT.md §10.4-§10.5): every
region holding a point by the center rule (closed shell, open holes), checked against a
brute force on the original polygons, through the API, the stream and the CLI."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry.base import BaseGeometry

import tileindex
from tileindex.cli import main
from tileindex.contract import key_sort_key
from tileindex.errors import ConfigError, InputError, InputFileError, OutputError
from tileindex.lookup import PointLookup, lookup, lookup_batches, lookup_points_file
from tileindex.pipeline import build

from factories import (
    SMALL_WORLD_COUNTRIES,
    SMALL_WORLD_GRID,
    make_inputs,
    make_tiling,
    write_countries,
    write_grid,
)

# -- the oracle ---------------------------------------------------------------------------------


def _in_polygon(polygon: shapely.Polygon, x: float, y: float) -> bool:
    """The center rule on one polygon part: in or on the shell, in or on no hole."""
    p = shapely.Point(x, y)
    if not shapely.intersects(shapely.Polygon(polygon.exterior), p):
        return False
    return not any(shapely.intersects(shapely.Polygon(h), p) for h in polygon.interiors)


def brute_force(
    layer: Mapping[str, Sequence[BaseGeometry]], lon: Sequence[float], lat: Sequence[float]
) -> list[tuple[int, str | None]]:
    """(point, key) rows from the original polygon rows (given beyond ±180 or not): a
    point counts for a key if some part of some row holds it at its longitude or at the
    same place 360 degrees east or west. The rows of a key here never overlap, so the
    union's parts hold exactly the points some row's parts hold."""
    rows: list[tuple[int, str | None]] = []
    for i, (x, y) in enumerate(zip(lon, lat, strict=True)):
        x = x - 360.0 if x > 180.0 else x + 360.0 if x < -180.0 else x
        hits = set()
        for key, geoms in layer.items():
            for geom in geoms:
                for part in shapely.get_parts(geom):
                    if any(_in_polygon(part, x + s, y) for s in (0.0, 360.0, -360.0)):
                        hits.add(key)
        rows += [(i, k) for k in sorted(hits, key=key_sort_key)] or [(i, None)]
    return rows


def _rows(table: pa.Table, key_column: str) -> list[tuple[int, str | None]]:
    return list(zip(table["point"].to_pylist(), table[key_column].to_pylist(), strict=True))


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world_index(small_world, tmp_path_factory: pytest.TempPathFactory) -> tileindex.Index:
    out = tmp_path_factory.mktemp("lookup-world") / "out"
    build(*small_world, out)
    return tileindex.open(out)


@pytest.fixture(scope="module")
def tiling(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("lookup-tiling")
    layer = make_tiling(folder, 12)
    build(None, layer.regions, layer.raster, folder / "out", key_column="region_id")
    return layer, tileindex.open(folder / "out")


def _vertices(layer: Mapping[str, Sequence[BaseGeometry]]) -> list[tuple[float, float]]:
    xy = np.concatenate([shapely.get_coordinates(g) for gs in layer.values() for g in gs])
    return [(float(x), float(y)) for x, y in xy]


def _edge_points(layer: Mapping[str, Sequence[BaseGeometry]]) -> list[tuple[float, float]]:
    """Midpoints and quarter points of every ring segment (on the segment or within a
    rounding step of it: the oracle decides either way)."""
    out = []
    for gs in layer.values():
        for g in gs:
            for part in shapely.get_parts(g):
                for ring in (part.exterior, *part.interiors):
                    xy = shapely.get_coordinates(ring)
                    for (x1, y1), (x2, y2) in itertools.pairwise(xy):
                        for t in (0.25, 0.5):
                            out.append((x1 + t * (x2 - x1), y1 + t * (y2 - y1)))
    return out


def _grid_points(grid, rows: Sequence[int], cols: Sequence[int]) -> list[tuple[float, float]]:
    """Cell corners, edge midpoints and centres, in the §3 formulas' float64 values."""
    out = []
    for r in rows:
        for c in cols:
            x0, x1 = grid.raw_x_edges(np.array([c]))
            y1, y0 = grid.lat_bounds(np.array([r]))
            xc, yc = float(grid.centroid_lon(np.array([c]))[0]), float(grid.centroid_lat([r])[0])
            for x in (float(x0[0]), xc):
                for y in (float(y0[0]), yc):
                    out.append((x, y))
            out.append((float(x1[0]), float(y1[0])))
    return out


def _special_points(layer, grid, rows, cols) -> list[tuple[float, float]]:
    return _vertices(layer) + _edge_points(layer) + _grid_points(grid, rows, cols)


def _points_strategy(special: list[tuple[float, float]], box: tuple[float, float, float, float]):
    west, south, east, north = box
    anywhere = st.tuples(
        st.floats(west, east, allow_nan=False, allow_infinity=False),
        st.floats(south, north, allow_nan=False, allow_infinity=False),
    )
    # a special point shifted by 360 degrees (lon given as 190 for -170) is the same point
    shifted = st.sampled_from(special).map(
        lambda p: (p[0] + 360.0 if p[0] <= 0 else p[0] - 360.0, p[1])
    )
    return st.lists(st.one_of(st.sampled_from(special), shifted, anywhere), max_size=60)


# -- the small world: enclave, hole, sliver, two rows, ±180 -------------------------------------

_WORLD_SPECIAL = [
    *_special_points(
        SMALL_WORLD_COUNTRIES,
        SMALL_WORLD_GRID,
        rows=[0, 59, 60, 69, 70, 80, 90, 149, 150, 151, 199],
        cols=[0, 1, 119, 120, 359, 360, 361, 380, 390, 710, 718, 719],
    ),
    # the dateline from both sides, and the grid's west edge (its overhang wraps to 179.75)
    *[(180.0, -16.0), (-180.0, -16.0), (179.9, -16.0), (-180.1, -16.0), (-180.25, -16.0)],
]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(points=_points_strategy(_WORLD_SPECIAL, (-540.0, -90.0, 540.0, 90.0)))
def test_lookup_equals_the_brute_force_on_the_small_world(world_index, points) -> None:
    lon = [p[0] for p in points]
    lat = [p[1] for p in points]
    got = lookup(world_index, lon, lat)
    assert got.schema == pa.schema(
        [pa.field("point", pa.int64(), nullable=False), pa.field("country_iso", pa.string())]
    )
    assert _rows(got, "country_iso") == brute_force(SMALL_WORLD_COUNTRIES, lon, lat)


def test_every_special_point_of_the_small_world_and_its_360_shift(world_index) -> None:
    """Each vertex, edge point, hole edge point, cell corner and centre once, as given
    and 360 degrees away (hypothesis above mixes them with random points)."""
    points = _WORLD_SPECIAL + [(x + 360.0 if x <= 0 else x - 360.0, y) for x, y in _WORLD_SPECIAL]
    lon = [p[0] for p in points]
    lat = [p[1] for p in points]
    assert _rows(lookup(world_index, lon, lat), "country_iso") == brute_force(
        SMALL_WORLD_COUNTRIES, lon, lat
    )


def test_named_points_of_the_small_world(world_index) -> None:
    cases = {
        (5.0, 5.0): ["AA"],  # inside the host
        (12.5, 7.5): ["BB"],  # inside the enclave (the host's hole)
        (10.0, 7.0): ["BB"],  # on the enclave's outline: the enclave only
        (10.0, 5.0): ["BB"],  # on a hole vertex
        (0.0, 0.0): ["AA"],  # an exterior vertex
        (30.0, 10.0): ["AA"],  # on an exterior edge
        (-50.0, 34.0): ["CC"],  # the seam of CC's two rows
        (-49.95, 32.0): ["CC"],  # inside the sliver row
        (180.0, -16.0): ["FJ"],  # FJ was given as 177..182.3 and is cut at the dateline
        (-180.0, -16.0): ["FJ"],
        (182.0, -16.0): ["FJ"],  # lon 182 is -178
        (-178.0, -16.0): ["FJ"],
        (-170.0, -16.0): [None],
        (190.0, -16.0): [None],  # -170
        (0.0, 85.0): [None],  # off the grid (north of 60): still answered
        (-30.0, 0.0): [None],  # sea
    }
    lon = [x for x, _ in cases]
    lat = [y for _, y in cases]
    got = lookup(world_index, lon, lat)
    expect = [(i, k) for i, keys in enumerate(cases.values()) for k in keys]
    assert _rows(got, "country_iso") == expect


def test_points_inside_certain_cells_get_no_exact_test(world_index, monkeypatch) -> None:
    """Centres of cells wholly inside AA (within) or clear of every country are answered
    from the index: the exact test sees none of them, only the boundary cell's point."""
    finder = PointLookup.from_index(world_index)
    seen: list[int] = []
    original = PointLookup.exact_pairs

    def counting(self, x, y):
        seen.append(len(x))
        return original(self, x, y)

    monkeypatch.setattr(PointLookup, "exact_pairs", counting)
    grid = world_index.grid
    cols = np.arange(364, 418)  # x 2 .. 29 (AA spans 0 .. 30)
    rows = np.arange(84, 116)  # y 18 .. 2
    lon = np.repeat(grid.centroid_lon(cols), rows.size)
    lat = np.tile(grid.centroid_lat(rows), cols.size)
    inside_hole = (lon > 9.5) & (lon < 15.5) & (lat > 4.5) & (lat < 10.5)
    lon, lat = lon[~inside_hole], lat[~inside_hole]
    sea = (-30.0 + 0.1 * np.arange(100), np.full(100, -20.1))
    boundary = ([0.1], [10.1])  # AA's west edge runs through this cell
    x = np.concatenate([lon, sea[0], boundary[0]])
    y = np.concatenate([lat, sea[1], boundary[1]])
    got = finder.table(x, y)
    assert got["country_iso"].to_pylist() == ["AA"] * lon.size + [None] * 100 + ["AA"]
    assert seen == [1]


def test_points_one_float_step_off_cell_edges(world_index) -> None:
    """Points one float64 step either side of cell edges and corners, and of ±180: where
    the row arithmetic and the column buckets may guess the neighbouring cell, which the
    comparison with the cell's own edges must catch."""
    base = _grid_points(
        SMALL_WORLD_GRID, rows=[0, 59, 60, 70, 150, 199], cols=[0, 1, 120, 360, 380, 718, 719]
    )
    base += [(180.0, -16.0), (-180.0, -16.0), (-180.25, -16.0), (10.0, 7.0), (0.0, 0.0)]
    points = [
        (float(np.nextafter(x, sx)), float(np.nextafter(y, sy)))
        for x, y in base
        for sx in (-np.inf, np.inf)
        for sy in (-np.inf, np.inf)
    ]
    points += [(float(np.nextafter(x, s)), y) for x, y in base for s in (-np.inf, np.inf)]
    lon = [p[0] for p in points]
    lat = [p[1] for p in points]
    assert _rows(lookup(world_index, lon, lat), "country_iso") == brute_force(
        SMALL_WORLD_COUNTRIES, lon, lat
    )


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_the_block_tables_give_every_cell_its_interval_code(data) -> None:
    """Every cell through the block tables (a shared code, or the interval of the row's
    first cell in the block and steps from there) gets the code a search of the interval
    starts gives it; a block is mixed exactly when its cells differ or need the exact
    test. Grids not a multiple of the block, intervals across rows and blocks."""
    from tileindex.grid import Grid
    from tileindex.lookup import _EXACT, _MIXED, _NONE, BLOCK, _block_table

    nrows = data.draw(st.integers(1, 3 * BLOCK + 3), label="nrows")
    ncols = data.draw(st.integers(1, 3 * BLOCK + 3), label="ncols")
    cells = nrows * ncols
    cuts = data.draw(st.lists(st.integers(1, cells), unique=True, max_size=40), label="cuts")
    starts = np.array([0, *sorted(cuts)], dtype=np.int64)
    drawn = data.draw(
        st.lists(
            st.sampled_from([_EXACT, -1, 0, 1, 7]), min_size=starts.size, max_size=starts.size
        ),
        label="codes",
    )
    codes = np.asarray(drawn, dtype=np.int32)
    keep = np.r_[True, codes[1:] != codes[:-1]]  # as _intervals gives them: merged
    starts, codes = starts[keep], codes[keep]
    grid = Grid.from_transform(ncols, nrows, (0.5, 0.0, 0.0, 0.0, -0.5, 45.0))
    blocks, block_rows = _block_table(grid, starts, codes)

    tile = np.arange(cells, dtype=np.int64)
    expect = codes[np.searchsorted(starts, tile, side="right") - 1]
    r, c = np.divmod(tile, ncols)
    code = blocks[r // BLOCK, c // BLOCK]
    assert _EXACT not in blocks
    shared = code >= _NONE
    assert (code[shared] == expect[shared]).all()
    m = _MIXED - code[~shared]
    j = block_rows[m * BLOCK + r[~shared] % BLOCK]
    first = r[~shared] * ncols + (c[~shared] // BLOCK) * BLOCK
    assert (j == np.searchsorted(starts, first, side="right") - 1).all()
    # mixed exactly when the block's cells differ or one needs the exact test
    for br in range(blocks.shape[0]):
        for bc in range(blocks.shape[1]):
            inside = (r // BLOCK == br) & (c // BLOCK == bc)
            differ = np.unique(expect[inside]).size > 1 or _EXACT in expect[inside]
            assert (blocks[br, bc] < _NONE) == differ
    # the ids of the mixed blocks are 0, 1, ... in row-major order, BLOCK rows each
    ids = _MIXED - blocks[blocks < _NONE]
    assert (ids == np.arange(ids.size)).all() and block_rows.size == ids.size * BLOCK


# -- a tiling layer: shared borders on grid lines, through centres and off the grid -------------


def test_lookup_equals_the_brute_force_on_a_tiling(tiling) -> None:
    layer, index = tiling
    polygons = dict(zip(layer.codes, ([p] for p in layer.polygons), strict=True))
    grid = layer.grid
    special = _special_points(
        polygons, grid, rows=range(0, grid.nrows, 7), cols=range(0, grid.ncols, 9)
    )
    rng = np.random.default_rng(5)
    west, south, east, north = layer.window
    lon = [p[0] for p in special] + list(rng.uniform(west - 1, east + 1, 3000))
    lat = [p[1] for p in special] + list(rng.uniform(south - 1, north + 1, 3000))
    got = lookup(index, lon, lat)
    expect = brute_force(polygons, lon, lat)
    assert _rows(got, "region_id") == expect
    # shared borders through the generated points: some point is in two regions
    points = [p for p, _ in expect]
    assert len(points) > len(set(points))


def test_keys_of_one_point_come_in_utf8_byte_order(tmp_path: Path) -> None:
    # three regions meeting at (1, 1): the corner point belongs to all of them
    layer = {
        "a": [shapely.box(0, 0, 1, 1)],
        "Z": [shapely.box(1, 0, 2, 1)],
        "\U0001f600": [shapely.box(0, 1, 1, 2)],
        "\ue000": [shapely.box(1, 1, 2, 2)],
    }
    rows = [(k, g) for k, gs in layer.items() for g in gs]
    regions = write_countries(tmp_path / "regions.parquet", rows, iso_column="zone")
    raster = write_grid(tmp_path / "grid.tif", 4, 4, (0.5, 0.0, 0.0, 0.0, -0.5, 2.0))
    build(None, regions, raster, tmp_path / "out", key_column="zone")
    got = lookup(tileindex.open(tmp_path / "out"), [1.0, 0.5], [1.0, 0.5])
    # bytes: Z (5A) < a (61) < U+E000 (EE ..) < U+1F600 (F0 ..)
    assert got["zone"].to_pylist() == ["Z", "a", "\ue000", "\U0001f600", "a"]
    assert got["point"].to_pylist() == [0, 0, 0, 0, 1]


def test_overlapping_and_nested_regions(tmp_path: Path) -> None:
    """A layer whose regions overlap: cells wholly inside one region and meeting another
    must not be answered by the first alone."""
    layer = {
        "O1": [shapely.box(0.0, 0.0, 10.0, 10.0)],
        "O2": [shapely.box(5.2, 5.2, 15.0, 15.0)],  # overlaps O1, edges off the grid lines
        "IN": [shapely.Polygon([(2, 2), (4.3, 2.1), (3.1, 4.4)])],  # inside O1
        "HO": [shapely.box(1, 1, 9, 9).difference(shapely.box(3, 3, 7, 7))],  # O1 again, holed
    }
    rows = [(k, g) for k, gs in layer.items() for g in gs]
    regions = write_countries(tmp_path / "regions.parquet", rows, iso_column="zone")
    raster = write_grid(tmp_path / "grid.tif", 40, 40, (0.5, 0.0, -2.0, 0.0, -0.5, 18.0))
    build(None, regions, raster, tmp_path / "out", key_column="zone")
    index = tileindex.open(tmp_path / "out")
    grid = index.grid
    special = _special_points(layer, grid, rows=range(0, 40, 3), cols=range(0, 40, 3))
    rng = np.random.default_rng(11)
    lon = [p[0] for p in special] + list(rng.uniform(-3, 19, 4000))
    lat = [p[1] for p in special] + list(rng.uniform(-3, 19, 4000))
    got = lookup(index, lon, lat)
    assert _rows(got, "zone") == brute_force(layer, lon, lat)
    assert set(got["zone"].to_pylist()) == {"HO", "IN", "O1", "O2", None}


def test_regions_partly_off_the_grid(tmp_path: Path) -> None:
    layer = {
        "XA": [shapely.box(15.0, 5.0, 25.0, 15.0)],  # reaches past the grid's east and north
        "XB": [
            shapely.Polygon(
                [(30, -5), (40, -5), (40, 5), (30, 5)], [[(32, -2), (32, 2), (36, 2), (36, -2)]]
            )
        ],
    }
    iso, countries, raster = make_inputs(
        tmp_path, layer, ncols=20, nrows=10, transform=(1.0, 0.0, 0.0, 0.0, -1.0, 10.0)
    )
    build(iso, countries, raster, tmp_path / "out")
    index = tileindex.open(tmp_path / "out")
    lon = [22.0, 25.0, 15.0, 16.5, 33.0, 32.0, 31.0, 45.0, 20.0, 20.0]
    lat = [12.0, 15.0, 5.0, 6.5, 0.0, 0.0, 0.0, 0.0, 10.0, 5.0]
    got = lookup(index, lon, lat)
    assert _rows(got, "country_iso") == brute_force(layer, lon, lat)
    assert got["country_iso"].to_pylist() == [
        "XA",
        "XA",
        "XA",
        "XA",
        None,
        None,
        "XB",
        None,
        "XA",
        "XA",
    ]


# -- streaming and shape of the answer ----------------------------------------------------------


def test_tiny_batches_and_streams_give_the_same_table(world_index) -> None:
    lon = [p[0] for p in _WORLD_SPECIAL]
    lat = [p[1] for p in _WORLD_SPECIAL]
    whole = lookup(world_index, lon, lat)
    assert lookup(world_index, lon, lat, batch_size=3).equals(whole)
    assert lookup(world_index, lon, lat, batch_size=1).equals(whole)
    stream = [(lon[i : i + 7], lat[i : i + 7]) for i in range(0, len(lon), 7)]
    assert pa.concat_tables(lookup_batches(world_index, stream)).equals(whole)
    points = whole["point"].to_pylist()
    assert sorted(set(points)) == list(range(len(lon)))  # every point at least once
    assert points == sorted(points)


def test_no_points_is_an_empty_table(world_index) -> None:
    got = lookup(world_index, [], [])
    assert got.num_rows == 0 and got.column_names == ["point", "country_iso"]


@pytest.mark.parametrize(
    ("lon", "lat", "bad"),
    [
        ([1.0, float("nan")], [0.0, 0.0], "point 1 (lon=nan"),
        ([1.0, 2.0, 3.0], [0.0, 0.0, 91.0], "point 2 (lon=3.0, lat=91.0)"),
        ([float("inf")], [0.0], "point 0 (lon=inf"),
        ([0.0, 600.0], [0.0, 0.0], "point 1 (lon=600.0"),
        ([0.0], [float("-inf")], "point 0"),
    ],
)
def test_nan_and_out_of_range_points_are_refused(world_index, lon, lat, bad) -> None:
    with pytest.raises(InputError, match=r"^" + re.escape(bad)) as err:
        lookup(world_index, lon, lat)
    assert "drop or fix" in str(err.value) and "\n" not in str(err.value)


def test_bad_arguments(world_index) -> None:
    with pytest.raises(InputError, match="differ in length"):
        lookup(world_index, [1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        lookup(world_index, [1.0], [1.0], batch_size=0)
    with pytest.raises(ConfigError, match=r"needs an index from tileindex.open\(root\)"):
        lookup("out/", [1.0], [1.0])  # type: ignore[arg-type]


# -- the CLI ------------------------------------------------------------------------------------


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_end_to_end_parquet_and_csv(world_index, tmp_path: Path) -> None:
    root = str(world_index.root)
    pts = pa.table(
        {
            "name": ["host", "border", "sea", "fiji"],
            "x": [5.0, 10.0, -30.0, 182.0],
            "y": [5.0, 7.0, 0.0, -16.0],
        }
    )
    pq.write_table(pts, tmp_path / "p.parquet")
    r = _run(
        "lookup",
        root,
        "--points",
        str(tmp_path / "p.parquet"),
        "--out",
        str(tmp_path / "o.parquet"),
        "--lon-column",
        "x",
        "--lat-column",
        "y",
    )
    assert r.exit_code == 0, r.output
    got = pq.read_table(tmp_path / "o.parquet")
    assert got.column_names == ["name", "x", "y", "country_iso"]
    assert got["name"].to_pylist() == ["host", "border", "sea", "fiji"]
    assert got["country_iso"].to_pylist() == ["AA", "BB", None, "FJ"]
    (tmp_path / "p.csv").write_text("id,lon,lat\n1,5,5\n2,-30,0\n3,12,7\n", encoding="utf-8")
    r = _run(
        "lookup",
        root,
        "--points",
        str(tmp_path / "p.csv"),
        "--out",
        str(tmp_path / "c.parquet"),
        "--drop-unmatched",
        "--batch-size",
        "1",
    )
    assert r.exit_code == 0, r.output
    got = pq.read_table(tmp_path / "c.parquet")
    assert got["id"].to_pylist() == [1, 3] and got["country_iso"].to_pylist() == ["AA", "BB"]
    assert "3 points, 2 rows, 1 in no region (dropped)" in r.output


def test_cli_one_row_per_region_of_a_point(tiling, tmp_path: Path) -> None:
    layer, index = tiling
    polygons = dict(zip(layer.codes, ([p] for p in layer.polygons), strict=True))
    xy = _vertices(polygons)
    pts = pa.table({"lon": [p[0] for p in xy], "lat": [p[1] for p in xy]})
    pq.write_table(pts, tmp_path / "v.parquet")
    r = _run(
        "lookup",
        str(index.root),
        "--points",
        str(tmp_path / "v.parquet"),
        "--out",
        str(tmp_path / "o.parquet"),
    )
    assert r.exit_code == 0, r.output
    got = pq.read_table(tmp_path / "o.parquet")
    expect = brute_force(polygons, pts["lon"].to_pylist(), pts["lat"].to_pylist())
    assert got["region_id"].to_pylist() == [k for _, k in expect]
    assert got["lon"].to_pylist() == [pts["lon"][i].as_py() for i, _ in expect]


def _refused(r, *words: str) -> None:
    assert r.exit_code == 1, r.output
    first = r.output.strip().splitlines()[0]
    assert first.startswith("error: ")
    for w in words:
        assert w in first, first


def test_cli_bad_inputs_write_nothing(world_index, small_world, tmp_path: Path) -> None:
    root = str(world_index.root)
    out = tmp_path / "o.parquet"
    (tmp_path / "cols.csv").write_text("id,x,y\n1,2,3\n", encoding="utf-8")
    _refused(
        _run("lookup", root, "--points", str(tmp_path / "cols.csv"), "--out", str(out)),
        "no column 'lon', 'lat'",
        "its columns: id, x, y",
        "--lon-column",
    )
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really parquet")
    _refused(
        _run("lookup", root, "--points", str(tmp_path / "junk.parquet"), "--out", str(out)),
        "junk.parquet",
        "not a readable parquet or CSV file",
    )
    _refused(
        _run("lookup", root, "--points", str(tmp_path / "missing.csv"), "--out", str(out)),
        "missing.csv does not exist",
    )
    # a NaN in the third batch: nothing is written, although two batches were answered
    (tmp_path / "nan.csv").write_text("lon,lat\n1,1\n2,2\n3,3\n4,4\nnan,5\n", encoding="utf-8")
    _refused(
        _run(
            "lookup",
            root,
            "--points",
            str(tmp_path / "nan.csv"),
            "--out",
            str(out),
            "--batch-size",
            "2",
        ),
        "nan.csv: row 5 (lon=nan, lat=5.0)",
        "drop or fix",
    )
    (tmp_path / "far.csv").write_text("lon,lat\n1,95\n", encoding="utf-8")
    _refused(
        _run("lookup", root, "--points", str(tmp_path / "far.csv"), "--out", str(out)),
        "row 1 (lon=1.0, lat=95.0)",
    )
    (tmp_path / "text.csv").write_text("lon,lat\neast,1\n", encoding="utf-8")
    _refused(
        _run("lookup", root, "--points", str(tmp_path / "text.csv"), "--out", str(out)),
        "column 'lon' is string, not numeric",
    )
    (tmp_path / "key.csv").write_text("lon,lat,country_iso\n1,1,XX\n", encoding="utf-8")
    _refused(
        _run("lookup", root, "--points", str(tmp_path / "key.csv"), "--out", str(out)),
        "already has a column 'country_iso'",
    )
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # roots: none, empty, several partitions
    good = tmp_path / "good.csv"
    good.write_text("lon,lat\n1,1\n", encoding="utf-8")
    _refused(
        _run("lookup", str(tmp_path / "nowhere"), "--points", str(good), "--out", str(out)),
        "does not exist",
    )
    (tmp_path / "empty").mkdir()
    _refused(
        _run("lookup", str(tmp_path / "empty"), "--points", str(good), "--out", str(out)),
        "no tile_index partition under",
    )
    two = tmp_path / "two"
    build(*small_world, two, predicate="center")
    build(*small_world, two, predicate="within")
    _refused(
        _run("lookup", str(two), "--points", str(good), "--out", str(out)),
        "holds 2 tile_index partitions",
        "--parameter-hash",
    )
    assert not out.exists()
    # an existing output is not replaced without --overwrite
    out.write_bytes(b"keep")
    _refused(_run("lookup", root, "--points", str(good), "--out", str(out)), "--overwrite")
    assert out.read_bytes() == b"keep"
    assert (
        _run("lookup", root, "--points", str(good), "--out", str(out), "--overwrite").exit_code == 0
    )


def test_api_file_lookup_refuses_an_existing_output(world_index, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("lon,lat\n", encoding="utf-8")
    result = lookup_points_file(world_index, tmp_path / "p.csv", tmp_path / "o.parquet")
    assert (result.points, result.rows) == (0, 0)
    got = pq.read_table(tmp_path / "o.parquet")
    assert got.num_rows == 0 and got.column_names == ["lon", "lat", "country_iso"]
    with pytest.raises(OutputError, match="exists"):
        lookup_points_file(world_index, tmp_path / "p.csv", tmp_path / "o.parquet")
    with pytest.raises(InputFileError, match="does not exist"):
        lookup_points_file(world_index, tmp_path / "nope.parquet", tmp_path / "x.parquet")


@settings(max_examples=60, deadline=None)
@given(
    edges=st.lists(st.floats(-200, 200, allow_nan=False), min_size=1, max_size=40, unique=True),
    values=st.lists(st.floats(-300, 300, allow_nan=False), max_size=40),
)
def test_the_locator_is_searchsorted(edges, values) -> None:
    from tileindex.lookup import _Locator

    e = np.sort(np.asarray(edges, dtype=np.float64))
    v = np.asarray(values + edges, dtype=np.float64)  # values on the edges too
    expect = np.searchsorted(e, v, side="right") - 1
    assert (_Locator.of(e).find(v) == expect).all()


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(2, 3000),
    west=st.floats(-540, 180),
    step=st.floats(1e-4, 1.0),
    at=st.lists(st.floats(0, 1), max_size=50),
)
def test_the_locator_guesses_right_on_evenly_spaced_edges(n, west, step, at) -> None:
    """A grid's column edges (``c + a*k``): the one-step guess is the answer everywhere,
    on the edges, one float step either side of them and between them, so points are
    sent to the exact test only where the cells' edges are uneven (the ±180 cut)."""
    from tileindex.lookup import _Locator

    e = west + step * np.arange(n, dtype=np.float64)
    inner = e[0] + np.asarray(at, dtype=np.float64) * (e[-1] + step - e[0])
    v = np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e[1:], -np.inf), inner])
    expect = np.searchsorted(e, v, side="right") - 1
    assert (_Locator.of(e).guess(v) == expect).all()
